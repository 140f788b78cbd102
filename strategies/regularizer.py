"""Output regularizer of von Oswald et al. 2020, Eq. 2.

``L_reg = beta / (T - 1) * sum_{t' < T} || h(e_t', Theta_h + Delta Theta_h) - h*(e_t') ||^2``

``h*(e_t')`` are the hypernetwork's outputs for earlier tasks, either stored before training
the new task (``targets="stored"``, memory: one weight set per earlier task) or recomputed at
every step from a frozen copy of the hypernetwork (``targets="online"``, memory: one copy of
the hypernetwork). All earlier tasks (or a random subset of ``subset`` of them, averaged with
``beta / subset``) are evaluated in ONE batched hypernetwork call.

Fast path (stored targets, linear output head, no MIP residual): with ``a_i`` the head inputs,
``W, b`` the head and ``y_i`` the stored targets,
``sum_i ||W a_i + b - y_i||^2 = sum_i a_i^T (W^T W) a_i + 2 a_i.(W^T b) + ||b||^2
- 2 a_i.(W^T y_i) - 2 b.y_i + ||y_i||^2``: one matrix product with the stored targets
forward and one backward, and the hypernetwork's outputs for earlier tasks are never formed.
Gradients equal the direct form's (float32 cancellation affects only the reported value,
about 1e-3 relative); ``fast=False`` uses the direct form everywhere.
``Delta Theta_h`` is the optional look-ahead: the step the optimizer is about to take on the
task loss alone (:func:`lookahead_delta`), computed without changing the optimizer's state.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Literal, Optional

import torch
from torch import nn
from torch.func import functional_call

from cl_moo import ChunkedHypernetwork, Hypernetwork, MLPHypernetwork

TargetMode = Literal["stored", "online"]


class _Apply(nn.Module):
    """Evaluates ``fn(hnet)`` as ``forward`` so ``functional_call`` can swap in ``theta + delta``."""

    def __init__(self, hnet: Hypernetwork, fn) -> None:
        super().__init__()
        self.hnet = hnet
        self.fn = fn

    def forward(self) -> torch.Tensor:
        return self.fn(self.hnet)


def head_problems(hnet: Hypernetwork, conds: torch.Tensor) -> List[tuple]:
    """``(inputs a_i, head weight rows, head bias rows)`` matching ``forward_parts``' layout."""
    hidden = hnet.last_hidden(hnet.encoder(hnet.check_conditions(conds)))
    head = hnet.output_head()
    if isinstance(hnet, ChunkedHypernetwork):
        rem = hnet.num_weights - (hnet.num_chunks - 1) * hnet.chunk_size
        last = (hidden[:, -1], head.weight[:rem], head.bias[:rem])
        if hnet.num_chunks == 1:
            return [last]
        full = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        return [(full, head.weight, head.bias), last]
    return [(hidden, head.weight, head.bias)]


def gram_sq_error(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, y: torch.Tensor,
                  y_sum: torch.Tensor, y_sqnorm: torch.Tensor) -> torch.Tensor:
    """``sum_i ||W a_i + b - y_i||^2`` without forming ``W a_i`` (see the module docstring)."""
    gram = weight.T @ weight
    quad = ((a @ gram) * a).sum() + 2 * (a @ (weight.T @ bias)).sum() + a.shape[0] * bias.dot(bias)
    cross = (a * (y @ weight)).sum() + bias.dot(y_sum)
    return quad - 2 * cross + y_sqnorm


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
            if isinstance(optimizer, torch.optim.Adam):
                beta1, beta2 = group["betas"]
                state = optimizer.state.get(p, {})
                step = float(state.get("step", 0)) + 1
                m = state["exp_avg"] * beta1 + (1 - beta1) * g if "exp_avg" in state else (1 - beta1) * g
                v = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g if "exp_avg_sq" in state else (1 - beta2) * g * g
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                delta[p] = -group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
            elif isinstance(optimizer, torch.optim.SGD) and not group.get("momentum"):
                delta[p] = -group["lr"] * g
            else:
                raise TypeError(
                    f"look-ahead supports Adam and plain SGD, not {type(optimizer).__name__}; "
                    "turn lookahead off or use one of those"
                )
    return delta


class OutputRegularizer:
    """Keeps the hypernetwork's outputs for earlier tasks fixed (von Oswald et al. 2020, Eq. 2)."""

    def __init__(
        self, *, beta: float, targets: TargetMode = "stored", subset: Optional[int] = None, fast: bool = True
    ) -> None:
        if beta < 0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        if targets not in ("stored", "online"):
            raise ValueError(f"targets must be 'stored' or 'online', got {targets!r}")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be >= 1 or None (all earlier tasks), got {subset}")
        self.beta = beta
        self.fast = fast
        self.mode = targets
        self.subset = subset
        self.tasks: List[int] = []
        self.stored: Optional[List[torch.Tensor]] = None  # hnet.forward_parts of earlier tasks
        self.frozen: Optional[Hypernetwork] = None

    @property
    def active(self) -> bool:
        return self.beta > 0 and len(self.tasks) > 0

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor, tasks: List[int]) -> None:
        """Records targets for ``tasks`` (call before training a new task)."""
        self.tasks = list(tasks)
        self.stored, self.frozen = None, None
        if not self.tasks:
            return
        if self.mode == "stored":
            was_training = hnet.training
            hnet.eval()
            self.stored = [p.detach() for p in hnet.forward_parts(embeddings.detach())]
            # per task and part: sum of target rows and squared norm (for the fast path)
            self._row_sums = [self._rows(hnet, i, p).sum(1) for i, p in enumerate(self.stored)]
            self._sqnorms = [p.pow(2).sum(1) for p in self.stored]
            hnet.train(was_training)
        else:
            self.frozen = copy.deepcopy(hnet).eval()
            for p in self.frozen.parameters():
                p.requires_grad_(False)

    def memory_bytes(self) -> int:
        """Memory held for the targets (stored outputs, or the frozen copy's parameters)."""
        if self.stored is not None:
            return sum(p.numel() * p.element_size() for p in self.stored)
        if self.frozen is not None:
            return sum(p.numel() * p.element_size() for p in self.frozen.parameters())
        return 0

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
        n = len(self.tasks)
        index: Optional[torch.Tensor] = None  # None: every earlier task (no gather needed)
        if self.subset is not None and self.subset < n:
            index = torch.randperm(n, generator=generator)[: self.subset].to(embeddings.device)
        conds = embeddings.detach() if index is None else embeddings.detach()[index]

        def sq_error(h: Hypernetwork) -> torch.Tensor:
            if self._fast_path(h):
                total = 0.0
                for i, (a, weight, bias) in enumerate(head_problems(h, conds)):
                    rows = self._rows(h, i, self.stored[i] if index is None else self.stored[i][index])
                    y_sum = (self._row_sums[i] if index is None else self._row_sums[i][index]).sum(0)
                    y_sq = (self._sqnorms[i] if index is None else self._sqnorms[i][index]).sum()
                    total = total + gram_sq_error(a, weight, bias, rows.reshape(-1, rows.shape[-1]), y_sum, y_sq)
                return total
            outputs = h.forward_parts(conds)
            if self.stored is not None:
                wanted = self.stored if index is None else [w[index] for w in self.stored]
            else:
                assert self.frozen is not None
                with torch.no_grad():
                    wanted = self.frozen.forward_parts(conds)
            return sum(nn.functional.mse_loss(o, w, reduction="sum") for o, w in zip(outputs, wanted))

        if delta:
            params = {f"hnet.{name}": (p + delta[p]) if p in delta else p for name, p in hnet.named_parameters()}
            total = functional_call(_Apply(hnet, sq_error), params, ())
        else:
            total = sq_error(hnet)
        return self.beta / len(conds) * total

    def _fast_path(self, hnet: Hypernetwork) -> bool:
        return (
            self.fast and self.stored is not None and hnet.theta0 is None
            and isinstance(hnet, (ChunkedHypernetwork, MLPHypernetwork))
        )

    @staticmethod
    def _rows(hnet: Hypernetwork, part: int, stored: torch.Tensor) -> torch.Tensor:
        """Stored part ``(T, n)`` as ``(T, rows per task, row width)`` matching :func:`head_problems`."""
        if isinstance(hnet, ChunkedHypernetwork) and hnet.num_chunks > 1 and part == 0:
            return stored.view(stored.shape[0], hnet.num_chunks - 1, hnet.chunk_size)
        return stored.unsqueeze(1)

    def state_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "stored": self.stored,
            "frozen": None if self.frozen is None else self.frozen.state_dict(),
        }

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.tasks = list(state["tasks"])
        self.stored = state["stored"]
        if self.stored is not None:
            self._row_sums = [self._rows(hnet, i, p).sum(1) for i, p in enumerate(self.stored)]
            self._sqnorms = [p.pow(2).sum(1) for p in self.stored]
        self.frozen = None
        if state["frozen"] is not None:
            self.frozen = copy.deepcopy(hnet).eval()
            self.frozen.load_state_dict(state["frozen"])
            for p in self.frozen.parameters():
                p.requires_grad_(False)
