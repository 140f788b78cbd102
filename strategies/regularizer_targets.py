"""What the output regularizer compares against: the targets ``h*(e_t')`` of von Oswald et al. 2020, Eq. 2.

Three kinds, one class each, all with the same small interface (``snapshot``, ``sq_error``,
``memory_bytes``, ``state_dict``, ``load_state_dict``):

* :class:`StoredOutputs` - the hypernetwork's outputs for the earlier tasks, recorded before the
  new task (the paper's default). Memory: one weight set per earlier task.
* :class:`HeadSnapshot` - the same targets kept implicitly: ``y_i = W_0 a0_i + b_0`` for every
  head piece, so only the head ``(W_0, b_0)`` and its inputs ``a0_i`` are stored, and
  ``||W a_i + b - y_i||^2 = z_i^T (M^T M) z_i`` with ``M = [W, W - W_0, b - b_0]`` and
  ``z_i = [a_i - a0_i; a0_i; 1]``: one (2 d_k + 1)-square Gram matrix per piece, so a step costs
  about the same for 1 or 100 earlier tasks, with no cancellation. Needs the head contract and
  no residual ``theta_0``.
* :class:`FrozenCopy` - a frozen copy of the hypernetwork that recomputes the targets at every
  step (``targets="online"``). Memory: one hypernetwork.
"""

from __future__ import annotations

import copy
from typing import List, Optional

import torch
from torch import nn

from cl_moo import Hypernetwork


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _rows(index: Optional[torch.Tensor], t: torch.Tensor) -> torch.Tensor:
    return t if index is None else t[index]


class StoredOutputs:
    """Recorded outputs ``h(e_t')`` of every earlier task, as ``forward_parts`` pieces."""

    kind = "stored"

    def __init__(self) -> None:
        self.outputs: List[torch.Tensor] = []

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor) -> None:
        self.outputs = [p.detach() for p in hnet.forward_parts(embeddings)]

    def sq_error(self, hnet: Hypernetwork, conds: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        return sum(
            nn.functional.mse_loss(o, _rows(index, w), reduction="sum")
            for o, w in zip(hnet.forward_parts(conds), self.outputs)
        )

    def memory_bytes(self) -> int:
        return _bytes(self.outputs)

    def state_dict(self) -> dict:
        return {"outputs": self.outputs}

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.outputs = list(state["outputs"])


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


def snapshot_sq_error(
    a: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    a0: torch.Tensor,
    weight0: torch.Tensor,
    bias0: torch.Tensor,
) -> torch.Tensor:
    """``sum_i ||(W a_i + b) - (W_0 a0_i + b_0)||^2`` from one Gram matrix (module docstring)."""
    m = torch.cat([weight, weight - weight0, (bias - bias0).unsqueeze(1)], dim=1)
    z = torch.cat([a - a0, a0, a.new_ones(a.shape[0], 1)], dim=1)
    return ((z @ _Gram.apply(m)) * z).sum()


class HeadSnapshot:
    """Head ``(W_0, b_0)`` and head inputs ``a0`` of every earlier task (module docstring)."""

    kind = "head_snapshot"

    def __init__(self) -> None:
        self.weight0: Optional[torch.Tensor] = None
        self.bias0: Optional[torch.Tensor] = None
        self.inputs0: List[torch.Tensor] = []  # per head piece: (T, n, d_k)

    @staticmethod
    def applies(hnet: Hypernetwork) -> bool:
        """The closed form needs the outputs to be the head's alone (no residual ``theta_0``)."""
        return hnet.theta0 is None

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor) -> None:
        head = hnet.output_head()
        self.weight0, self.bias0 = head.weight.detach().clone(), head.bias.detach().clone()
        pieces = hnet.head_pieces(hnet.encoder(hnet.check_conditions(embeddings)))
        self.inputs0 = [p.inputs.detach().clone() for p in pieces]

    def sq_error(self, hnet: Hypernetwork, conds: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        head = hnet.output_head()
        total = 0.0
        for piece, a0 in zip(hnet.head_pieces(hnet.encoder(hnet.check_conditions(conds))), self.inputs0):
            a, r = piece.inputs, piece.rows
            a0 = _rows(index, a0)
            total = total + snapshot_sq_error(
                a.reshape(-1, a.shape[-1]),
                head.weight[r],
                head.bias[r],
                a0.reshape(-1, a0.shape[-1]),
                self.weight0[r],
                self.bias0[r],
            )
        return total

    def memory_bytes(self) -> int:
        return _bytes([self.weight0, self.bias0, *self.inputs0]) if self.weight0 is not None else 0

    def state_dict(self) -> dict:
        return {"weight0": self.weight0, "bias0": self.bias0, "inputs0": self.inputs0}

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.weight0, self.bias0, self.inputs0 = state["weight0"], state["bias0"], list(state["inputs0"])


class FrozenCopy:
    """A frozen copy of the hypernetwork; targets recomputed at every step (``targets="online"``)."""

    kind = "frozen_copy"

    def __init__(self) -> None:
        self.frozen: Optional[Hypernetwork] = None

    def _freeze(self, hnet: Hypernetwork) -> Hypernetwork:
        frozen = copy.deepcopy(hnet).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        return frozen

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor) -> None:
        self.frozen = self._freeze(hnet)

    def sq_error(self, hnet: Hypernetwork, conds: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        assert self.frozen is not None
        with torch.no_grad():
            wanted = self.frozen.forward_parts(conds)
        return sum(nn.functional.mse_loss(o, w, reduction="sum") for o, w in zip(hnet.forward_parts(conds), wanted))

    def memory_bytes(self) -> int:
        return _bytes(list(self.frozen.parameters())) if self.frozen is not None else 0

    def state_dict(self) -> dict:
        return {"frozen": None if self.frozen is None else self.frozen.state_dict()}

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.frozen = self._freeze(hnet)
        self.frozen.load_state_dict(state["frozen"])


TARGET_KINDS = {cls.kind: cls for cls in (StoredOutputs, HeadSnapshot, FrozenCopy)}
