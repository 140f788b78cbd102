"""Output regularizer of von Oswald et al. 2020, Eq. 2.

``L_reg = beta / (T - 1) * sum_{t' < T} || h(e_t', Theta_h + Delta Theta_h) - h*(e_t') ||^2``

``h*(e_t')`` are the hypernetwork's outputs for earlier tasks, either recorded before training
the new task (``targets="stored"``; memory: a copy of the output head plus its inputs, see the
fast path below, or one weight set per earlier task without it) or recomputed at every step
from a frozen copy of the hypernetwork (``targets="online"``; memory: one copy of the
hypernetwork). All earlier tasks (or a random subset of ``subset`` of them, averaged with
``beta / subset``) are evaluated in ONE batched hypernetwork call.

Fast path (stored targets, linear output head, no MIP residual). The stored targets are the
hypernetwork's own outputs at snapshot time, ``y_i = W_0 a0_i + b_0`` (head ``W_0, b_0``, head
inputs ``a0_i``), so instead of ``y_i`` the snapshot keeps ``W_0, b_0, a0_i``. With the current
head ``W, b`` and inputs ``a_i``, ``e_i = W a_i + b - y_i = W da_i + D a0_i + db`` where
``da_i = a_i - a0_i``, ``D = W - W_0``, ``db = b - b_0``, i.e. ``e_i = M z_i`` with
``M = [W, D, db]`` and ``z_i = [da_i; a0_i; 1]``, and ``||e_i||^2 = z_i^T (M^T M) z_i``: one
(2 d_k + 1)-square Gram matrix of the head, so a step costs about the same for 1 or 100 earlier
tasks, every term is built from small differences (no cancellation), and the
memory is one head copy plus ``d_k`` numbers per chunk and task instead of one weight set per
task. ``fast=False`` uses the direct form everywhere (tested to give the same values and
gradients).
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
        rem = hnet.last_chunk_size
        last = (hidden[:, -1], head.weight[:rem], head.bias[:rem])
        if hnet.num_chunks == 1:
            return [last]
        full = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        return [(full, head.weight, head.bias), last]
    return [(hidden, head.weight, head.bias)]


class _Gram(torch.autograd.Function):
    """``G = M^T M`` with the one-product backward ``dM = M (dG + dG^T)`` (autograd would do two)."""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(m)
        return m.T @ m

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (m,) = ctx.saved_tensors
        return m @ (grad + grad.T)


def snapshot_sq_error(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      a0: torch.Tensor, weight0: torch.Tensor, bias0: torch.Tensor) -> torch.Tensor:
    """``sum_i ||(W a_i + b) - (W_0 a0_i + b_0)||^2`` from one Gram matrix (module docstring).

    ``e_i = M z_i`` with ``M = [W, W - W_0, b - b_0]`` and ``z_i = [a_i - a0_i; a0_i; 1]``, so
    ``sum_i ||e_i||^2 = sum((Z G) * Z)`` with ``G = M^T M`` ((2 d_k + 1) squared): one pass over
    the head in the forward and one in the backward, whatever the number of rows ``z_i``.
    """
    m = torch.cat([weight, weight - weight0, (bias - bias0).unsqueeze(1)], dim=1)
    z = torch.cat([a - a0, a0, a.new_ones(a.shape[0], 1)], dim=1)
    return ((z @ _Gram.apply(m)) * z).sum()


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
        self.head0: Optional[tuple] = None  # fast path: head (W_0, b_0) at snapshot time
        self.inputs0: Optional[List[torch.Tensor]] = None  # fast path: head inputs a0, (T, rows, d_k)
        self.frozen: Optional[Hypernetwork] = None

    @property
    def active(self) -> bool:
        return self.beta > 0 and len(self.tasks) > 0

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor, tasks: List[int]) -> None:
        """Records targets for ``tasks`` (call before training a new task)."""
        self.tasks = list(tasks)
        self.stored, self.frozen, self.head0, self.inputs0 = None, None, None, None
        if not self.tasks:
            return
        if self.mode == "stored":
            was_training = hnet.training
            hnet.eval()
            if self._fast_path(hnet):
                head = hnet.output_head()
                self.head0 = (head.weight.detach().clone(), head.bias.detach().clone())
                self.inputs0 = [a.detach().reshape(len(self.tasks), -1, a.shape[-1])
                                for a, _, _ in head_problems(hnet, embeddings.detach())]
            else:
                self.stored = [p.detach() for p in hnet.forward_parts(embeddings.detach())]
            hnet.train(was_training)
        else:
            self.frozen = copy.deepcopy(hnet).eval()
            for p in self.frozen.parameters():
                p.requires_grad_(False)

    def memory_bytes(self) -> int:
        """Memory held for the targets (stored outputs, or the frozen copy's parameters)."""
        if self.head0 is not None:
            tensors = list(self.head0) + list(self.inputs0 or [])
            return sum(t.numel() * t.element_size() for t in tensors)
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
            if self.head0 is not None and self._fast_path(h):
                weight0, bias0 = self.head0
                total = 0.0
                for i, (a, weight, bias) in enumerate(head_problems(h, conds)):
                    a0 = self.inputs0[i] if index is None else self.inputs0[i][index]
                    rows = weight.shape[0]
                    total = total + snapshot_sq_error(a, weight, bias, a0.reshape(-1, a0.shape[-1]),
                                                      weight0[:rows], bias0[:rows])
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
            self.fast and self.mode == "stored" and hnet.theta0 is None
            and isinstance(hnet, (ChunkedHypernetwork, MLPHypernetwork))
        )

    def state_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "stored": self.stored,
            "head0": self.head0,
            "inputs0": self.inputs0,
            "frozen": None if self.frozen is None else self.frozen.state_dict(),
        }

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.tasks = list(state["tasks"])
        self.stored = state["stored"]
        self.head0, self.inputs0 = state.get("head0"), state.get("inputs0")
        self.frozen = None
        if state["frozen"] is not None:
            self.frozen = copy.deepcopy(hnet).eval()
            self.frozen.load_state_dict(state["frozen"])
            for p in self.frozen.parameters():
                p.requires_grad_(False)
