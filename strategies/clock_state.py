"""Avalanche's training clock in a strategy's ``state_dict()`` (shared by every strategy)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

# the counters of ``strategy.clock`` (Avalanche's ``Clock`` plugin: the steps of its metrics and loggers)
CLOCK_COUNTERS = (
    "train_iterations",
    "train_exp_counter",
    "train_exp_epochs",
    "train_exp_iterations",
    "train_epoch_iterations",
    "total_iterations",
)


def clock_state(clock: Any) -> Dict[str, int]:
    """The counters of ``clock`` as plain ints."""
    return {name: int(getattr(clock, name)) for name in CLOCK_COUNTERS}


def load_clock_state(clock: Any, state: Optional[Mapping[str, Any]]) -> None:
    """Sets ``clock``'s counters from :func:`clock_state`'s dict (None: a state saved before it was kept)."""
    for name, value in (state or {}).items():
        if name in CLOCK_COUNTERS:
            setattr(clock, name, int(value))
