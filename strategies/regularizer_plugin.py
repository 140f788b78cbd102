"""The output regularizer as an Avalanche plugin (von Oswald et al. 2020, Eq. 2 and App. C), for
both strategies that keep earlier outputs: :class:`strategies.hnet_cl.HypernetworkStrategy` (one
condition per earlier task, its embedding) and :class:`strategies.phn_cl.ContinualParetoStrategy`
(K conditions ``[e_s, r_k]`` per earlier task).

It joins Avalanche's training loop through its hooks, so penalties other plugins add to
``strategy.loss`` (EWC, LwF, SI, ...) reach the same backward pass:

* ``before_training_exp``: record the targets ``h*(e_t')`` of every trained task but the current one.
* without look-ahead, ``before_backward``: ``strategy.loss += L_reg(Theta_h)``.
* with look-ahead, ``after_backward``: the gradients of ``strategy.loss`` (task loss and every
  plugin's penalty) give the step ``Delta Theta_h`` the optimizer is about to take
  (:func:`lookahead_delta`); then ``L_reg(Theta_h + Delta Theta_h)`` is back-propagated on top.

The plugin is placed first among the strategy's plugins, so gradient-changing plugins that act
in ``after_backward`` see the regularizer's gradient.

What it asks of the strategy: ``snapshot_earlier_tasks()`` (record the targets), ``check_finite(value,
name)``, ``optimizer`` (look-ahead), and what to regularize: ``strategy.regularized_outputs()`` ->
``(hypernetwork, conditions)`` in the order of the recorded targets where the strategy has it, else
the task-conditioned model's ``model.hnet`` and ``model.embeddings(regularizer.tasks)``.
"""

from __future__ import annotations

from typing import Any, Tuple, Union

import torch
from avalanche.core import SupervisedPlugin

from .regularizer import OutputRegularizer, lookahead_delta


def regularized_outputs(strategy: Any, regularizer: OutputRegularizer) -> Tuple[Any, torch.Tensor]:
    """``(hypernetwork, conditions)`` whose outputs ``regularizer`` keeps: the strategy's
    ``regularized_outputs()`` where it has one (:class:`ContinualParetoStrategy`), else the
    task-conditioned model's hypernetwork and the embeddings of the regularizer's tasks
    (:class:`HypernetworkStrategy`)."""
    ask = getattr(strategy, "regularized_outputs", None)
    if ask is not None:
        return ask()
    model = strategy.model
    return model.hnet, model.embeddings(regularizer.tasks)


class OutputRegularizerPlugin(SupervisedPlugin):
    """Adds an :class:`OutputRegularizer`'s penalty to the strategy's loss (module docstring).

    Args:
        regularizer: the regularizer (strength ``beta``, target kind, task subset) whose
            ``penalty`` is added; its targets are recorded through ``strategy.snapshot_earlier_tasks()``.
        lookahead: penalise the outputs after the step the optimizer is about to take,
            ``L_reg(Theta_h + Delta Theta_h)`` (von Oswald et al. 2020, Eq. 2 with App. C's look-ahead),
            added in ``after_backward``; False: ``L_reg(Theta_h)`` added to the loss in ``before_backward``.
    """

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
        hnet, conditions = regularized_outputs(strategy, self.regularizer)
        reg = self.regularizer.penalty(hnet, conditions, delta)
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
