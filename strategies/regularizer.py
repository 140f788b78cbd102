"""Output regularizer of von Oswald et al. 2020, Eq. 2.

``L_reg = beta / (T - 1) * sum_{t' < T} || h(e_t', Theta_h + Delta Theta_h) - h*(e_t') ||^2``

``h*(e_t')`` are the hypernetwork's outputs for earlier tasks, either stored before training
the new task (``targets="stored"``, memory: one weight set per earlier task) or recomputed at
every step from a frozen copy of the hypernetwork (``targets="online"``, memory: one copy of
the hypernetwork). All earlier tasks (or a random subset of ``subset`` of them, averaged with
``beta / subset``) are evaluated in ONE batched hypernetwork call.
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

from cl_moo import Hypernetwork

TargetMode = Literal["stored", "online"]


class _FlatOutputs(nn.Module):
    """Exposes ``hnet.forward_flat`` as ``forward`` so ``functional_call`` can evaluate it."""

    def __init__(self, hnet: Hypernetwork) -> None:
        super().__init__()
        self.hnet = hnet

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.hnet.forward_flat(cond)


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

    def __init__(self, *, beta: float, targets: TargetMode = "stored", subset: Optional[int] = None) -> None:
        if beta < 0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        if targets not in ("stored", "online"):
            raise ValueError(f"targets must be 'stored' or 'online', got {targets!r}")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be >= 1 or None (all earlier tasks), got {subset}")
        self.beta = beta
        self.mode = targets
        self.subset = subset
        self.tasks: List[int] = []
        self.stored: Optional[torch.Tensor] = None
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
            self.stored = hnet.forward_flat(embeddings.detach()).detach()
            hnet.train(was_training)
        else:
            self.frozen = copy.deepcopy(hnet).eval()
            for p in self.frozen.parameters():
                p.requires_grad_(False)

    def memory_bytes(self) -> int:
        """Memory held for the targets (stored outputs, or the frozen copy's parameters)."""
        if self.stored is not None:
            return self.stored.numel() * self.stored.element_size()
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
        index = torch.arange(len(self.tasks))
        if self.subset is not None and self.subset < len(self.tasks):
            index = torch.randperm(len(self.tasks), generator=generator)[: self.subset]
        conds = embeddings.detach()[index.to(embeddings.device)]
        if delta:
            params = {
                f"hnet.{n}": (p + delta[p]) if p in delta else p for n, p in hnet.named_parameters()
            }
            outputs = functional_call(_FlatOutputs(hnet), params, (conds,))
        else:
            outputs = hnet.forward_flat(conds)
        if self.stored is not None:
            wanted = self.stored[index.to(self.stored.device)]
        else:
            assert self.frozen is not None
            with torch.no_grad():
                wanted = self.frozen.forward_flat(conds)
        return self.beta / len(index) * (outputs - wanted).pow(2).sum()

    def state_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "stored": self.stored,
            "frozen": None if self.frozen is None else self.frozen.state_dict(),
        }

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.tasks = list(state["tasks"])
        self.stored = state["stored"]
        self.frozen = None
        if state["frozen"] is not None:
            self.frozen = copy.deepcopy(hnet).eval()
            self.frozen.load_state_dict(state["frozen"])
            for p in self.frozen.parameters():
                p.requires_grad_(False)
