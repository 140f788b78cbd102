"""The output regularizer as an Avalanche plugin (von Oswald et al. 2020, Eq. 2 and App. C).

It joins Avalanche's training loop through its hooks, so penalties other plugins add to
``strategy.loss`` (EWC, LwF, SI, ...) reach the same backward pass:

* ``before_training_exp``: record the targets ``h*(e_t')`` of every trained task but the current one.
* without look-ahead, ``before_backward``: ``strategy.loss += L_reg(Theta_h)``.
* with look-ahead, ``after_backward``: the gradients of ``strategy.loss`` (task loss and every
  plugin's penalty) give the step ``Delta Theta_h`` the optimizer is about to take
  (:func:`lookahead_delta`); then ``L_reg(Theta_h + Delta Theta_h)`` is back-propagated on top.

The plugin is placed first among the strategy's plugins, so gradient-changing plugins that act
in ``after_backward`` see the regularizer's gradient.
"""

from __future__ import annotations

from typing import Any, Union

import torch
from avalanche.core import SupervisedPlugin

from .regularizer import OutputRegularizer, lookahead_delta


class OutputRegularizerPlugin(SupervisedPlugin):
    """Adds the output regularizer of a :class:`HypernetworkStrategy` to its loss."""

    def __init__(self, regularizer: OutputRegularizer, *, lookahead: bool = False) -> None:
        super().__init__()
        self.regularizer = regularizer
        self.lookahead = lookahead
        self.last_penalty: Union[torch.Tensor, float] = 0.0  # on the device: read as last_value when needed

    @property
    def last_value(self) -> float:
        """The last iteration's penalty (read from the device when asked for)."""
        return float(self.last_penalty)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        strategy.snapshot_earlier_tasks()

    def _penalty(self, strategy: Any, delta=None) -> torch.Tensor:
        model = strategy.model
        reg = self.regularizer.penalty(model.hnet, model.embeddings(self.regularizer.tasks), delta)
        strategy.check_finite(reg, "regularizer")
        return reg

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        self.last_penalty = 0.0
        if self.regularizer.active and not self.lookahead:
            reg = self._penalty(strategy)
            strategy.loss = strategy.loss + reg
            self.last_penalty = reg.detach()

    def after_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.regularizer.active and self.lookahead:
            reg = self._penalty(strategy, lookahead_delta(strategy.optimizer))
            reg.backward()
            self.last_penalty = reg.detach()
            strategy.loss = strategy.loss.detach() + reg.detach()
