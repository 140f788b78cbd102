"""The progress of a whole run: ``stages`` x ``per_stage`` work units (tasks x iterations, epochs x batches).

On a terminal, one tqdm bar for the whole run, with the current stage in its description
(``task 3/10 iteration 200/500``) and the overall ETA; when the output is not a terminal (a log
file), a plain line every ``every_s`` seconds instead, so the log stays small::

    progress: task 5/10 iteration 250/500, overall 45% (2250/5000 iterations), elapsed 2m05s, ETA 2m33s, loss 0.1234

A resumed run starts at the units already done: the position is the run's, the rate (and so the
ETA) only this process's. Lines printed through :func:`outside_bars` do not break the bar.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Optional, TextIO

from tqdm import tqdm

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}, ETA {remaining}{postfix}]"


def format_seconds(seconds: float) -> str:
    """``45s``, ``3m10s``, ``2h05m``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@contextlib.contextmanager
def outside_bars(stream: Optional[TextIO] = None) -> Iterator[None]:
    """While inside, the progress bars are cleared, so a line printed to ``stream`` (stdout) stands alone."""
    with tqdm.external_write_mode(file=stream):
        yield


class RunProgress:
    """Done/total work units of a run, elapsed time and overall ETA, as a bar (terminal) or periodic lines.

    ``done``: units finished before this process (resume). ``enabled=False``: silent. ``stream``: where
    to write (default: stderr); ``every_s``: seconds between plain lines (0: every update);
    ``clock``: seconds, for tests.
    """

    def __init__(self, stages: int, per_stage: int, *, done: int = 0, stage_name: str = "task",
                 unit_name: str = "iteration", enabled: bool = True, stream: Optional[TextIO] = None,
                 every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stages, self.per_stage = max(1, int(stages)), max(1, int(per_stage))
        self.total = self.stages * self.per_stage
        self.done = self.start = min(int(done), self.total)
        self.stage_name, self.unit_name, self.enabled = stage_name, unit_name, enabled
        self.units = unit_name + ("es" if unit_name.endswith(("s", "ch", "sh", "x")) else "s")  # batch -> batches
        self.stream = sys.stderr if stream is None else stream
        self.every_s, self.clock = float(every_s), clock
        self.t0 = self.last_line = clock()
        self.last_done = self.done  # the units shown by the last plain line
        self.postfix: dict = {}
        self.bar: Optional[tqdm] = None
        self.closed = False
        if enabled and _is_terminal(self.stream):
            self.bar = tqdm(total=self.total, initial=self.done, file=self.stream, desc=self.position(),
                            unit=self.units, bar_format=BAR_FORMAT, smoothing=0, dynamic_ncols=True)

    def position(self) -> str:
        """``task 3/10 iteration 200/500``: the stage in progress (the last one finished, at its end)."""
        stage = (self.done - 1) // self.per_stage if self.done > 0 else 0
        return (f"{self.stage_name} {stage + 1}/{self.stages} "
                f"{self.unit_name} {self.done - stage * self.per_stage}/{self.per_stage}")

    def eta_s(self) -> Optional[float]:
        """Seconds left at this process's average rate; None before the first unit."""
        elapsed, units = self.clock() - self.t0, self.done - self.start
        if units <= 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / units

    def line(self) -> str:
        """The plain progress line."""
        eta = self.eta_s()
        extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}" for k, v in self.postfix.items())
        return (f"progress: {self.position()}, overall {100 * self.done / self.total:.0f}% "
                f"({self.done}/{self.total} {self.units}), elapsed {format_seconds(self.clock() - self.t0)}, "
                f"ETA {'?' if eta is None else format_seconds(eta)}{extra}")

    def update(self, n: int = 1, **postfix: Any) -> None:
        """``n`` more units done; ``postfix`` (e.g. ``loss=0.12``) is shown beside them."""
        if not self.enabled or self.closed:
            return
        self.done = min(self.done + n, self.total)
        self.postfix = postfix or self.postfix  # values read every few steps stay shown in between
        if self.bar is not None:
            self.bar.set_description_str(self.position(), refresh=False)
            if postfix:
                self.bar.set_postfix_str(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in postfix.items()), refresh=False)
            self.bar.update(n)
            return
        now = self.clock()
        if now - self.last_line >= self.every_s:
            self.last_line, self.last_done = now, self.done
            self._write(self.line())

    def close(self) -> None:
        """Ends the bar, or writes a last plain line when units were done since the last one."""
        if not self.enabled or self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.done != self.last_done:
            self._write(self.line())

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ProgressPlugin:
    """A Pareto strategy's plugin: one unit of ``progress`` per training iteration, with its loss."""

    def __init__(self, progress: RunProgress) -> None:
        self.progress = progress

    def after_training_iteration(self, strategy: Any) -> None:
        self.progress.update(loss=float(strategy.last_loss))


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
