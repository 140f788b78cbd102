"""Continual learning with hypernetworks (von Oswald et al. 2020) as an Avalanche strategy.

Per training iteration on task T (paper Sec. 3 and App. C):

1. ``theta_T = h(e_T)``; task loss ``L_task(theta_T)`` on the mini-batch; backward.
2. If earlier tasks exist: optional look-ahead ``Delta Theta_h`` (the step the optimizer is about
   to take), then the output regularizer (Eq. 2) over earlier tasks in one batched call; backward.
3. Step two Adam optimizers: one for the hypernetwork (and any target parameters it does not
   generate), one for the current task embedding. Earlier embeddings are frozen.

Avalanche re-adds every model parameter to the optimizer at each experience
(``make_optimizer``); this strategy rebuilds its two optimizers instead, so earlier task
embeddings never receive updates.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin, default_evaluator
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from cl_moo.optim import make_adam

from .cl_model import TaskConditionedHypernetwork
from .regularizer import OutputRegularizer, TargetMode, lookahead_delta


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class HypernetworkStrategy(SupervisedTemplate):
    """Task-conditioned hypernetwork with output regularization, as a ``SupervisedTemplate``.

    Use it like any Avalanche strategy: ``strategy.train(experience)``,
    ``strategy.eval(test_stream)``, with Avalanche plugins, evaluators and loggers. Experiences
    must carry task labels (e.g. ``with_task_labels`` benchmarks); each training experience
    belongs to one task.
    """

    def __init__(
        self,
        *,
        model: TaskConditionedHypernetwork,
        lr: float = 1e-3,
        emb_lr: Optional[float] = None,
        adam_betas: Sequence[float] = (0.9, 0.999),
        beta: float = 0.01,
        reg_targets: TargetMode = "stored",
        reg_subset: Optional[int] = None,
        lookahead: bool = False,
        task_inference: str = "given",
        train_iterations: Optional[int] = None,
        criterion: Callable = nn.CrossEntropyLoss(),
        train_mb_size: int = 32,
        train_epochs: int = 1,
        eval_mb_size: Optional[int] = 256,
        device: Union[str, torch.device] = "cpu",
        plugins: Optional[Sequence[BasePlugin]] = None,
        evaluator: Union[EvaluationPlugin, Callable[[], EvaluationPlugin]] = default_evaluator,
        eval_every: int = -1,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, TaskConditionedHypernetwork):
            raise TypeError(
                "model must be a TaskConditionedHypernetwork; build one from your nn.Module with "
                "strategies.build_cl_model(module, ...)"
            )
        if task_inference not in ("given", "entropy"):
            raise ValueError(f"task_inference must be 'given' or 'entropy', got {task_inference!r}")
        if train_iterations is not None and train_iterations < 1:
            raise ValueError(f"train_iterations must be >= 1 or None, got {train_iterations}")
        self.lr = lr
        self.emb_lr = lr if emb_lr is None else emb_lr
        self.adam_betas = tuple(adam_betas)
        self.regularizer = OutputRegularizer(beta=beta, targets=reg_targets, subset=reg_subset)
        self.lookahead = lookahead
        self.task_inference = task_inference
        self.train_iterations = train_iterations
        self.trained_tasks: List[int] = []
        self.current_task: Optional[int] = None
        self.emb_optimizer: Optional[torch.optim.Optimizer] = None
        self.last_task_loss = float("nan")
        self.last_reg_loss = 0.0
        self.total_iterations = 0
        self._iter_in_exp = 0
        optimizer = make_adam(self._shared_parameters(model), lr=lr, betas=self.adam_betas)
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=criterion,
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=plugins,
            evaluator=evaluator,
            eval_every=eval_every,
            **kwargs,
        )

    # ------------------------------------------------------------------ optimizers
    @staticmethod
    def _shared_parameters(model: TaskConditionedHypernetwork) -> List[nn.Parameter]:
        """Hypernetwork parameters plus the target's own learnable (non-generated) ones."""
        params = list(model.hnet.parameters())
        params += [p for p in model.target.parameters() if p.requires_grad]
        return params

    def make_optimizer(self, **kwargs: Any) -> None:
        """Fresh Adam for the hypernetwork and one for the current task embedding only."""
        model: TaskConditionedHypernetwork = self.model  # type: ignore[assignment]
        self.optimizer = make_adam(self._shared_parameters(model), lr=self.lr, betas=self.adam_betas)
        if self.current_task is not None:
            for i, emb in enumerate(model.task_embeddings):
                emb.requires_grad_(i == self.current_task)
            self.emb_optimizer = make_adam(
                [model.task_embeddings[self.current_task]], lr=self.emb_lr, betas=self.adam_betas
            )

    def check_model_and_optimizer(self, **kwargs: Any) -> None:
        self.model = self.model_adaptation()
        self.make_optimizer(**kwargs)

    def model_adaptation(self, model: Optional[nn.Module] = None) -> nn.Module:
        """Adds task embeddings for the experience's task labels (one new task per experience)."""
        model = self.model if model is None else model
        assert self.experience is not None
        labels = getattr(self.experience, "task_labels", None)
        if not labels:
            raise ValueError(
                "HypernetworkStrategy needs experiences with task labels; build the benchmark "
                "with task labels (e.g. avalanche.benchmarks.scenarios.with_task_labels)"
            )
        model.ensure_tasks(max(labels) + 1)
        if self.is_training:
            if len(labels) != 1:
                raise ValueError(f"a training experience must hold one task, got task labels {labels}")
            self.current_task = int(labels[0])
        return model.to(self.device)

    # ------------------------------------------------------------------ training
    def snapshot_earlier_tasks(self) -> None:
        """Records the regularizer's targets for every trained task but the current one."""
        model: TaskConditionedHypernetwork = self.model  # type: ignore[assignment]
        earlier = [t for t in self.trained_tasks if t != self.current_task]
        embs = model.embeddings(earlier) if earlier else torch.empty(0, model.emb_dim, device=self.device)
        self.regularizer.snapshot(model.hnet, embs, earlier)

    def _before_training_exp(self, **kwargs: Any) -> None:
        super()._before_training_exp(**kwargs)
        self.snapshot_earlier_tasks()
        self._iter_in_exp = 0
        if self.train_iterations is not None:
            self.train_epochs = max(1, math.ceil(self.train_iterations / max(1, len(self.dataloader))))

    def _after_training_exp(self, **kwargs: Any) -> None:
        if self.current_task is not None and self.current_task not in self.trained_tasks:
            self.trained_tasks.append(self.current_task)
        super()._after_training_exp(**kwargs)

    def training_epoch(self, **kwargs: Any) -> None:
        assert self.current_task is not None and self.emb_optimizer is not None
        for self.mbatch in self.dataloader:
            if self._stop_training or (
                self.train_iterations is not None and self._iter_in_exp >= self.train_iterations
            ):
                break
            self._unpack_minibatch()
            self._before_training_iteration(**kwargs)
            self.training_iteration(**kwargs)
            self._after_training_iteration(**kwargs)

    def training_iteration(self, **kwargs: Any) -> None:
        """One step on ``self.mbatch``: task loss, regularizer (with look-ahead), two optimizers."""
        model: TaskConditionedHypernetwork = self.model  # type: ignore[assignment]
        assert self.current_task is not None and self.emb_optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        self.emb_optimizer.zero_grad(set_to_none=True)
        self.loss = self._make_empty_loss()

        self._before_forward(**kwargs)
        self.mb_output = model.target(model.weights(self.current_task), self.mb_x)
        self._after_forward(**kwargs)
        task_loss = self.criterion()
        self._check_finite(task_loss, "task loss")

        self._before_backward(**kwargs)
        task_loss.backward()
        reg_value = 0.0
        if self.regularizer.active:
            delta = lookahead_delta(self.optimizer) if self.lookahead else None
            earlier = model.embeddings(self.regularizer.tasks)
            reg = self.regularizer.penalty(model.hnet, earlier, delta)
            self._check_finite(reg, "regularizer")
            reg.backward()
            reg_value = float(reg.detach())
        self.loss = task_loss.detach() + reg_value
        self._after_backward(**kwargs)

        self._before_update(**kwargs)
        self.optimizer.step()
        self.emb_optimizer.step()
        self._after_update(**kwargs)
        self.last_task_loss = float(task_loss.detach())
        self.last_reg_loss = reg_value
        self._iter_in_exp += 1
        self.total_iterations += 1

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        if not torch.isfinite(value.detach()).all():
            raise NonFiniteLossError(
                f"{what} became {float(value.detach())} at iteration {self._iter_in_exp} of task "
                f"{self.current_task}: lower the learning rate (lr={self.lr}) or beta "
                f"(beta={self.regularizer.beta}), or check the inputs for NaN"
            )

    # ------------------------------------------------------------------ evaluation
    def forward(self) -> torch.Tensor:
        model: TaskConditionedHypernetwork = self.model  # type: ignore[assignment]
        if self.is_eval and self.task_inference == "entropy" and self.trained_tasks:
            _, logits = model.infer_task(self.mb_x, self.trained_tasks)
            return logits
        return model(self.mb_x, self.mb_task_id)

    # ------------------------------------------------------------------ checkpoints
    def cl_state_dict(self) -> dict:
        """Everything needed to continue after the last finished experience."""
        return {
            "model": self.model.state_dict(),
            "num_tasks": self.model.num_tasks,  # type: ignore[union-attr]
            "trained_tasks": list(self.trained_tasks),
            "total_iterations": self.total_iterations,
            "regularizer": self.regularizer.state_dict(),
        }

    def load_cl_state_dict(self, state: dict) -> None:
        model: TaskConditionedHypernetwork = self.model  # type: ignore[assignment]
        model.ensure_tasks(state["num_tasks"])
        model.load_state_dict(state["model"])
        self.trained_tasks = list(state["trained_tasks"])
        self.total_iterations = int(state["total_iterations"])
        self.regularizer.load_state_dict(state["regularizer"], model.hnet)
