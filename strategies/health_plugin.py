"""Training-health monitors of :class:`HypernetworkStrategy`, as an Avalanche plugin (on by default).

Every ``every`` training iterations (no host sync in between: the task loss and the label
counts are summed on the device):

* **dead units**: one extra no-grad forward of the current mini-batch through the current task's
  generated network; a ReLU layer with at least ``dead_fraction`` of its units dead
  (:class:`cl_moo.health.DeadUnitProbe`) at two checks in a row, or at the task's last iteration, is
  reported (generated units can come back to life, as the shared hypernetwork moves: one dead
  check alone is not a verdict). Cause seen here: an Adam step that moves the generated weights by
  more than their own scale (large task embeddings, high lr).
* **loss at chance**: at the end of each task, the mean task loss of its last window against the
  loss of the best input-independent prediction (:func:`cl_moo.health.constant_prediction_loss`);
  at or above ``chance_ratio`` of it, the task learned nothing from its inputs.

After every evaluation experience:

* **forgetting spike**: an earlier task's accuracy more than ``forgetting_drop`` below its value
  right after it was trained (an MSE more than ``mse_rise`` times its value and more than
  ``forgetting_drop`` higher, for squared-error tasks).

Each finding is warned once (:class:`cl_moo.health.HealthWarning`) with the setting to change and
kept in :attr:`log` (``strategy.health_log``, the ``health`` section of a run's ``metrics.json``);
``on_scalar(tag, value, step)`` receives every measured value (the runner logs them to TensorBoard).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from cl_moo.health import DeadUnitProbe, HealthLog, constant_prediction_loss

ScalarSink = Callable[[str, float, int], None]
# how the messages name the settings to change (the runner passes its config keys instead)
API_NAMES = {
    "lr": "lr",
    "emb_std": "build_cl_model(emb_std=...)",
    "beta": "beta",
    "lookahead": "lookahead=True",
    "iterations": "train_iterations",
}


def loss_kind(criterion: Any) -> Optional[str]:
    """``"cross_entropy"`` / ``"mse"`` for the criteria whose chance loss is known, else None (no chance
    or forgetting verdict): plain mean-reduced losses only, since class weights, label smoothing or a
    sum reduction change the loss's scale or its minimum."""
    if getattr(criterion, "reduction", None) != "mean":
        return None
    if isinstance(criterion, nn.CrossEntropyLoss):
        plain = criterion.weight is None and not criterion.label_smoothing
        return "cross_entropy" if plain else None
    if isinstance(criterion, nn.MSELoss):
        return "mse"
    return None


def _labelled(strategy: Any, targets: torch.Tensor) -> torch.Tensor:
    """``targets`` without the labels a cross-entropy ignores (``ignore_index``)."""
    ignore = getattr(strategy._criterion, "ignore_index", None)
    return targets if ignore is None else targets[targets != ignore]


class TrainingHealthPlugin(SupervisedPlugin):
    """Dead units, loss at chance and forgetting spikes of a :class:`HypernetworkStrategy` (module docstring)."""

    def __init__(
        self,
        *,
        every: int = 50,
        dead_fraction: float = 0.9,
        chance_ratio: float = 0.9,
        forgetting_drop: float = 0.05,
        mse_rise: float = 2.0,
        on_scalar: Optional[ScalarSink] = None,
        names: Optional[Dict[str, str]] = None,
    ) -> None:
        super().__init__()
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"health_every must be an integer >= 1 (or None to turn the monitors off), got {every!r}")
        self.every, self.dead_fraction, self.chance_ratio = every, dead_fraction, chance_ratio
        self.forgetting_drop, self.mse_rise = forgetting_drop, mse_rise
        self.on_scalar = on_scalar
        self.names = {**API_NAMES, **(names or {})}
        self.log = HealthLog()
        # "<stream>/<task>" -> the task's metric on that stream at its first evaluation after training it
        self.just_trained: Dict[str, float] = {}
        self._probe: Optional[DeadUnitProbe] = None
        self._dead_streak: Dict[str, int] = {}  # consecutive checks with the layer dead
        self._reset_window()
        self._last_window: Optional[tuple] = None  # (loss sum, targets, iterations) of the last full window
        self._eval_sum: Optional[torch.Tensor] = None
        self._eval_count = 0
        self._training = False

    # ------------------------------------------------------------------ training
    def _reset_window(self) -> None:
        self._loss_sum: Optional[torch.Tensor] = None
        self._targets: list = []
        self._count = 0

    def before_training(self, strategy: Any, **kwargs: Any) -> None:
        self._training = True  # evaluations inside train() (eval_every, periodic) judge no task

    def after_training(self, strategy: Any, **kwargs: Any) -> None:
        self._training = False

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._reset_window()
        self._last_window = None
        self._dead_streak = {}
        if self._probe is None:
            self._probe = DeadUnitProbe(strategy.model.target.module)

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        task_loss = strategy.task_loss.detach()
        self._loss_sum = task_loss if self._loss_sum is None else self._loss_sum + task_loss
        self._targets.append(strategy.mb_y.detach())
        self._count += 1
        if strategy.total_iterations % self.every == 0:
            self._check_dead_units(strategy)
        if self._count >= self.every:
            self._window_done(strategy)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if strategy.mb_x is not None:
            self._check_dead_units(strategy, last=True)
        task = strategy.current_task
        for key in [k for k in self.just_trained if k.endswith(f"/{task}")]:
            del self.just_trained[key]  # a revisited task is judged from its new training
        # the verdict covers at least one window: a short tail joins the window before it
        loss_sum, targets, count = self._loss_sum, list(self._targets), self._count
        if self._last_window is not None and count < self.every:
            loss_sum = self._last_window[0] if loss_sum is None else loss_sum + self._last_window[0]
            targets, count = self._last_window[1] + targets, count + self._last_window[2]
        if self._count:
            self._window_done(strategy)
        kind = loss_kind(strategy._criterion)
        if loss_sum is None or not count or kind is None:
            return
        mean = float(loss_sum) / count
        chance = self._chance(strategy, kind, targets)
        if chance > 0 and mean >= self.chance_ratio * chance:
            task = strategy.current_task
            what = "label entropy" if kind == "cross_entropy" else "target variance"
            self.log.report(
                "loss_at_chance",
                f"task {task}",
                (
                    f"task {task} ended with its training loss at or above chance: {mean:.4g} over its last {count} "
                    f"iterations against {chance:.4g} for a prediction that ignores the input (the {what}): it learned "
                    f"nothing from its inputs. {self._lr_advice(strategy)}, train longer ({self.names['iterations']}), "
                    "or check that the labels depend on the inputs"
                ),
                step=strategy.total_iterations,
                value=mean / chance,
            )

    def _chance(self, strategy: Any, kind: str, targets: list) -> float:
        """The constant-prediction loss of the window's targets (0 when it is undefined: one class,
        constant targets)."""
        values = torch.cat(targets)
        if kind == "cross_entropy":
            values = _labelled(strategy, values)
            if not len(values):
                return 0.0
        outputs = strategy.mb_output.shape[-1] if kind == "cross_entropy" else None
        return float(constant_prediction_loss(kind, values, outputs))

    def _window_done(self, strategy: Any) -> None:
        """The window's mean task loss against its constant-prediction loss, to TensorBoard (one host sync)."""
        assert self._loss_sum is not None
        kind = loss_kind(strategy._criterion)
        step, task = strategy.total_iterations, strategy.current_task
        mean = float(self._loss_sum) / self._count
        if kind is not None:
            chance = self._chance(strategy, kind, self._targets)
            if chance > 0:
                self._scalar(f"health/loss_over_chance/task{task}", mean / chance, step)
        self._last_window = (self._loss_sum, list(self._targets), self._count)
        self._reset_window()

    def _lr_advice(self, strategy: Any) -> str:
        """'Lower lr (now X, e.g. X/10) or the task embeddings' scale (...)', in the caller's names."""
        lr = strategy.optimizer.param_groups[0]["lr"]
        std = float(strategy.model.emb_std)
        advice = f"Lower {self.names['lr']} (now {lr:g}, e.g. {lr / 10:g})"
        return advice + (
            f" or the task embeddings' scale ({self.names['emb_std']}, now {std:g}"
            + (", e.g. 0.1)" if std > 0.1 else ")")
        )

    def _check_dead_units(self, strategy: Any, *, last: bool = False) -> None:
        model, task = strategy.model, strategy.current_task
        if self._probe is None or not self._probe.layers or task is None:
            return
        was_training = model.training
        model.eval()  # no running-statistics update, no dropout draw: the probe never changes training
        try:
            with torch.no_grad(), self._probe.recording() as dead:
                model.forward_single_task(strategy.mb_x, task)
        finally:
            model.train(was_training)
        if not dead:
            return
        names = list(dead)
        values = torch.stack([dead[n] for n in names]).tolist()  # one host sync per check
        step = strategy.total_iterations
        for name, value in zip(names, values):
            if not last:
                self._scalar(f"health/dead_fraction/{name}", value, step)
            dead_now = value >= self.dead_fraction
            self._dead_streak[name] = self._dead_streak.get(name, 0) + 1 if dead_now else 0
            if dead_now and (last or self._dead_streak[name] >= 2):
                when = "at the task's last iteration" if last else "at two checks in a row"
                self.log.report(
                    "dead_units",
                    f"task {task}, {name}",
                    (
                        f"task {task}: {value:.0%} of the units of the generated network's ReLU '{name}' are dead (no "
                        f"input of the mini-batch activates them) {when} (iteration {step}): "
                        "the optimizer's steps move "
                        f"the generated weights by more than their own scale. {self._lr_advice(strategy)}"
                    ),
                    step=step,
                    value=value,
                )

    # ------------------------------------------------------------------ evaluation
    def before_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._eval_sum, self._eval_count = None, 0

    def after_eval_iteration(self, strategy: Any, **kwargs: Any) -> None:
        kind = loss_kind(strategy._criterion)
        out, y = strategy.mb_output.detach(), strategy.mb_y
        if kind == "cross_entropy":
            keep = y != strategy._criterion.ignore_index
            out, y = out[keep], y[keep]
            value = (out.argmax(-1) == y).sum()
        elif kind == "mse":
            value = (out - y.reshape(out.shape)).pow(2).reshape(len(out), -1).mean(1).sum()
        else:
            return
        self._eval_sum = value if self._eval_sum is None else self._eval_sum + value
        self._eval_count += len(out)

    def after_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        kind = loss_kind(strategy._criterion)
        if self._training or self._eval_sum is None or not self._eval_count or kind is None:
            return  # periodic evaluation inside training: no verdict on a task being trained
        labels = list(getattr(strategy.experience, "task_labels", []) or [])
        if len(labels) != 1:
            return  # an evaluation experience mixing tasks: no per-task verdict
        task = int(labels[0])
        if task not in strategy.trained_tasks:
            return
        stream = getattr(getattr(strategy.experience, "origin_stream", None), "name", "stream")
        key = f"{stream}/{task}"
        value = float(self._eval_sum) / self._eval_count
        if key not in self.just_trained:
            self.just_trained[key] = value
            return
        first = self.just_trained[key]
        after = strategy.trained_tasks[-1]
        if kind == "cross_entropy" and value < first - self.forgetting_drop:
            change = f"accuracy fell from {first:.4f} (just after training it) to {value:.4f}"
        elif kind == "mse" and value > self.mse_rise * first and value > first + self.forgetting_drop:
            change = f"MSE rose from {first:.4g} (just after training it) to {value:.4g}"
        else:
            return
        self.log.report(
            "forgetting",
            f"task {task}",
            (
                f"task {task}'s {change} on the {stream} stream after training task {after}: the output regularizer "
                "did not hold it. Raise "
                f"{self.names['beta']} (now {strategy.regularizer.beta:g}), lower {self.names['lr']} (now "
                f"{strategy.optimizer.param_groups[0]['lr']:g}) or use {self.names['lookahead']}"
            ),
            step=strategy.total_iterations,
            value=value,
        )

    # ------------------------------------------------------------------ records
    def _scalar(self, tag: str, value: float, step: int) -> None:
        if self.on_scalar is not None and math.isfinite(value):
            self.on_scalar(tag, value, step)

    def state_dict(self) -> Dict[str, Any]:
        return {"log": self.log.state_dict(), "just_trained": dict(self.just_trained)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.log.load_state_dict(state.get("log", {}))
        self.just_trained = {str(k): float(v) for k, v in state.get("just_trained", {}).items()}
