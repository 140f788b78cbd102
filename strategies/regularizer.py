"""Output regularizer of von Oswald et al. 2020, Eq. 2.

``L_reg = beta / (T - 1) * sum_{t' < T} || h(e_t', Theta_h + Delta Theta_h) - h*(e_t') ||^2``

The targets ``h*(e_t')`` come from one of the classes in :mod:`strategies.regularizer_targets`:
recorded outputs (``targets="stored"``, ``fast=False``), the head snapshot that gives the same
values from a Gram matrix of the output head (``targets="stored"``, ``fast=True``; by default,
``fast="auto"``, wherever the head contract allows it and it costs fewer multiply-adds per step
than the recorded outputs, :func:`gram_is_cheaper`), or a frozen copy (``targets="online"``).
All earlier tasks (or a random subset of ``subset`` of them, averaged with ``beta / subset``) are
evaluated in ONE batched hypernetwork call. ``Delta Theta_h`` is the optional look-ahead (:func:`lookahead_delta`).
"""

from __future__ import annotations

import math
from typing import Dict, List, Literal, Optional, Union

import torch
from torch import nn
from torch.func import functional_call

from cl_moo import Hypernetwork

from .regularizer_targets import TARGET_KINDS, FrozenCopy, HeadSnapshot, StoredOutputs

RegularizerTargets = Union[StoredOutputs, HeadSnapshot, FrozenCopy]

TargetMode = Literal["stored", "online"]


class _Apply(nn.Module):
    """Evaluates ``fn(hnet)`` as ``forward`` so ``functional_call`` can swap in ``theta + delta``."""

    def __init__(self, hnet: Hypernetwork, fn) -> None:
        super().__init__()
        self.hnet = hnet
        self.fn = fn

    def forward(self) -> torch.Tensor:
        return self.fn(self.hnet)


def check_lookahead_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Refuses optimizers whose step :func:`lookahead_delta` cannot predict exactly."""
    kind = type(optimizer)
    if kind not in (torch.optim.Adam, torch.optim.SGD):
        raise TypeError(
            f"look-ahead predicts the step of torch.optim.Adam and plain torch.optim.SGD only, not "
            f"{kind.__name__}; turn lookahead off or use one of those"
        )
    for group in optimizer.param_groups:
        bad = {
            k: group.get(k)
            for k in ("weight_decay", "amsgrad", "maximize", "momentum", "nesterov", "dampening")
            if group.get(k)
        }
        if bad:
            raise TypeError(
                f"look-ahead cannot predict a {kind.__name__} step with {bad}; turn lookahead off or drop those options"
            )


@torch.no_grad()
def lookahead_delta(optimizer: torch.optim.Optimizer) -> Dict[nn.Parameter, torch.Tensor]:
    """The update ``optimizer.step()`` would make now, without touching its state.

    Supports Adam (bias-corrected first/second moments, von Oswald et al. App. C) and SGD.
    """
    delta: Dict[nn.Parameter, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if type(optimizer) is torch.optim.Adam:
                beta1, beta2 = group["betas"]
                state = optimizer.state.get(p, {})
                step = float(state.get("step", 0)) + 1
                m = state["exp_avg"] * beta1 + (1 - beta1) * g if "exp_avg" in state else (1 - beta1) * g
                v = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g if "exp_avg_sq" in state else (1 - beta2) * g * g
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                delta[p] = -group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
            elif type(optimizer) is torch.optim.SGD and not group.get("momentum"):
                delta[p] = -group["lr"] * g
            else:
                raise TypeError(
                    f"look-ahead supports Adam and plain SGD, not {type(optimizer).__name__}; "
                    "turn lookahead off or use one of those"
                )
    return delta


@torch.no_grad()
def gram_is_cheaper(hnet: Hypernetwork, conds: torch.Tensor) -> bool:
    """Whether :class:`HeadSnapshot` costs fewer multiply-adds per step (forward and backward) than
    :class:`StoredOutputs` for these conditions. Per head piece of ``rows`` rows, width ``d`` and
    ``apps`` applications (conditions times chunks): the Gram matrix, its quadratic forms and their
    backward, ``rows (2 d + 1)(3 d + 2) + 3 apps (2 d + 1)^2``, against the head's outputs and their
    backward, ``3 apps rows d``; a residual ``theta_0`` adds the products of each application with the
    head, ``n rows (4 d + 2)`` for ``n`` applications per condition. An MLP head (``d`` = 100) with 10
    conditions: the recorded outputs come out ~20x cheaper (measured on a CPU: ~6x); 100 chunked tasks:
    the Gram. The count leaves out memory traffic, which the recorded outputs have more of (they write
    and read ``apps x rows`` values), so near the break-even point they may be kept a task or two
    longer than the faster choice; both forms give the same penalty."""
    gram = stored = 0
    for piece in hnet.head_pieces(hnet.encoder(hnet.check_conditions(conds))):
        rows = len(range(*piece.rows.indices(hnet.output_head().out_features)))
        apps, d = piece.inputs.shape[0] * piece.inputs.shape[1], piece.inputs.shape[-1]
        gram += rows * (2 * d + 1) * (3 * d + 2) + 3 * apps * (2 * d + 1) ** 2
        if hnet.theta0 is not None:
            gram += piece.inputs.shape[1] * rows * (4 * d + 2)
        stored += 3 * apps * rows * d
    return gram < stored


class OutputRegularizer:
    """Keeps the hypernetwork's outputs for earlier tasks fixed (von Oswald et al. 2020, Eq. 2).

    ``fast``: ``"auto"`` (the cheaper of the Gram head snapshot and the recorded outputs, decided at
    each snapshot), ``True`` (the Gram head snapshot wherever the head contract allows it) or
    ``False`` (recorded outputs); all three give the same penalty.
    """

    def __init__(
        self,
        *,
        beta: float,
        targets: TargetMode = "stored",
        subset: Optional[int] = None,
        fast: Union[bool, Literal["auto"]] = "auto",
    ) -> None:
        if not isinstance(beta, (int, float)) or beta < 0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        if targets not in ("stored", "online"):
            raise ValueError(f"targets must be 'stored' or 'online', got {targets!r}")
        if subset is not None and (not isinstance(subset, int) or subset < 1):
            raise ValueError(f"subset must be an integer >= 1 or None (all earlier tasks), got {subset}")
        if fast not in (True, False, "auto"):
            raise ValueError(f"fast must be True, False or 'auto', got {fast!r}")
        self.beta = beta
        self.fast = fast
        self.mode = targets
        self.subset = subset
        self.tasks: List[int] = []
        self.targets: Optional[RegularizerTargets] = None

    @property
    def active(self) -> bool:
        return self.beta > 0 and len(self.tasks) > 0

    def _target_class(self, hnet: Hypernetwork, embeddings: torch.Tensor):
        if self.mode == "online":
            return FrozenCopy
        if not self.fast:
            return StoredOutputs
        if self.fast == "auto":
            per_step = embeddings[: self.subset] if self.subset is not None else embeddings
            return HeadSnapshot if gram_is_cheaper(hnet, per_step) else StoredOutputs
        return HeadSnapshot

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor, tasks: List[int]) -> None:
        """Records targets for ``tasks`` (call before training a new task), in eval mode."""
        self.tasks = list(tasks)
        self.targets = None
        if not self.tasks:
            return
        was_training = hnet.training
        hnet.eval()
        self.targets = self._target_class(hnet, embeddings)()
        self.targets.snapshot(hnet, embeddings.detach())
        hnet.train(was_training)

    def memory_bytes(self) -> int:
        """Memory held for the targets."""
        return 0 if self.targets is None else self.targets.memory_bytes()

    def penalty(
        self,
        hnet: Hypernetwork,
        embeddings: torch.Tensor,
        delta: Optional[Dict[nn.Parameter, torch.Tensor]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """``beta / k * sum_i ||h(e_i, theta + delta) - h*_i||^2`` over k earlier tasks (one call).

        ``embeddings`` are the earlier tasks' embeddings, in the order of ``snapshot``'s tasks.
        """
        assert self.targets is not None, "snapshot() before penalty()"
        n = len(self.tasks)
        index: Optional[torch.Tensor] = None  # None: every earlier task (no gather needed)
        if self.subset is not None and self.subset < n:
            index = torch.randperm(n, generator=generator)[: self.subset].to(embeddings.device)
        conds = embeddings.detach() if index is None else embeddings.detach()[index]
        targets = self.targets

        def sq_error(h: Hypernetwork) -> torch.Tensor:
            return targets.sq_error(h, conds, index)

        if delta:
            params = {f"hnet.{name}": (p + delta[p]) if p in delta else p for name, p in hnet.named_parameters()}
            total = functional_call(_Apply(hnet, sq_error), params, ())
        else:
            total = sq_error(hnet)
        return self.beta / len(conds) * total

    def state_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "kind": None if self.targets is None else self.targets.kind,
            "targets": None if self.targets is None else self.targets.state_dict(),
        }

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.tasks = list(state["tasks"])
        self.targets = None
        if state.get("kind") is not None:
            self.targets = TARGET_KINDS[state["kind"]]()
            self.targets.load_state_dict(state["targets"], hnet)
