"""The body of one Avalanche training iteration, for calls outside the template's own loop."""

from __future__ import annotations

from typing import Any


def iteration_body(strategy: Any) -> None:
    """Avalanche's ``SGDUpdate.training_epoch`` body on ``strategy.mbatch`` (already unpacked), from
    ``zero_grad`` to the update callbacks: forward, criterion, backward and optimizer step with every
    plugin callback between them (not the iteration callbacks, which the caller adds where it needs them)."""
    strategy.optimizer.zero_grad()
    strategy.loss = strategy._make_empty_loss()
    strategy._before_forward()
    strategy.mb_output = strategy.forward()
    strategy._after_forward()
    strategy.loss += strategy.criterion()
    strategy._before_backward()
    strategy.backward()
    strategy._after_backward()
    strategy._before_update()
    strategy.optimizer_step()
    strategy._after_update()
