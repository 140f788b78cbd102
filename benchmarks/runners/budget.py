"""A time budget for one process of a run (``train.budget_s``): the run stops cleanly at a checkpoint
when the next unit of work (a task, an epoch, a separate LS model) would not end within the budget,
and the same command with ``resume=true`` continues it, on this machine or another one. This is how
a long run fits short GPU windows: each window runs the command once.

The next unit's length is estimated as the longest unit finished so far in this process (or recorded
by earlier processes of the run); a process always finishes at least one unit, so every call makes
progress even when one unit is longer than the budget (a warning says so).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, List, Optional

PAUSED_EXIT_STATUS = 75  # sysexits' EX_TEMPFAIL: "a temporary failure; the user is invited to retry"
LONGER = ", longer than the whole budget, so each call runs one"


class RunPaused(Exception):
    """The run stopped at a checkpoint because its time budget would not fit another unit."""

    def __init__(self, *, folder: Path, done: int, total: int, unit: str, budget_s: float, used_s: float,
                 next_s: float) -> None:
        self.folder, self.done, self.total, self.unit = Path(folder), done, total, unit
        self.budget_s, self.used_s, self.next_s = budget_s, used_s, next_s
        longer = f"{LONGER} {unit}" if next_s > budget_s else ""
        super().__init__(
            f"paused after {unit} {done}/{total}: this process used {used_s:.0f} s of train.budget_s={budget_s:g} "
            f"and the next {unit} takes about {next_s:.0f} s{longer}. {self.folder} holds the checkpoint; "
            f"continue with the same command plus resume=true (run_dir={self.folder}), here or on another machine")


class TimeBudget:
    """Wall-clock budget of this process, started at construction (so it covers building and loading)."""

    def __init__(self, budget_s: Optional[float], *, unit: str, recorded_s: Iterable[Optional[float]] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_s, self.unit, self.clock = budget_s, unit, clock
        self.start = self.last = clock()
        self.durations: List[float] = [float(s) for s in recorded_s if s is not None]

    def begin_units(self) -> None:
        """Call when the first unit starts: building and loading count against the budget (``start``) but
        not as part of a unit (the estimate of the next one)."""
        self.last = self.clock()

    def lap(self) -> float:
        """Ends the current unit: records and returns its duration (call before its checkpoint is written,
        so the checkpoint can keep :attr:`durations` for the run's next processes)."""
        now = self.clock()
        self.durations.append(now - self.last)
        self.last = now
        return self.durations[-1]

    def check(self, *, done: int, total: int, folder: Path) -> None:
        """Call right after the checkpoint of a finished unit: raises :class:`RunPaused` when another
        unit would end past the budget (never after the last unit)."""
        if self.budget_s is None or done >= total:
            return
        used, next_s = self.last - self.start, max(self.durations)
        if used + next_s > self.budget_s:
            raise RunPaused(folder=folder, done=done, total=total, unit=self.unit, budget_s=self.budget_s,
                            used_s=used, next_s=next_s)

    def unit_done(self, *, done: int, total: int, folder: Path) -> None:
        """:meth:`lap` then :meth:`check`, for a runner whose checkpoint records unit times itself."""
        self.lap()
        self.check(done=done, total=total, folder=folder)
