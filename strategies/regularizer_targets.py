"""What the output regularizer compares against: the targets ``h*(e_t')`` of von Oswald et al. 2020, Eq. 2.

Three kinds, one class each, all with the same small interface (``snapshot``, ``sq_error``,
``memory_bytes``, ``state_dict``, ``load_state_dict``):

* :class:`StoredOutputs` - the hypernetwork's outputs for the earlier tasks, recorded before the
  new task (the paper's default). Memory: one weight set per earlier task.
* :class:`HeadSnapshot` - the same targets kept implicitly: ``y_i = W_0 a0_i + b_0`` for every
  head piece, so only the head ``(W_0, b_0)`` and its inputs ``a0_i`` are stored, and
  ``||W a_i + b - y_i||^2 = z_i^T (M^T M) z_i`` with ``M = [W, W - W_0, b - b_0]`` and
  ``z_i = [a_i - a0_i; a0_i; 1]``: one (2 d_k + 1)-square Gram matrix per piece, so a step costs
  about the same for 1 or 100 earlier tasks, with no cancellation. With MIP's residual
  ``theta = theta_0 + Delta theta`` (Gonzalez Ortiz et al. 2024, Eq. 5) the outputs also differ by
  ``d_k = theta_0 - theta_0*`` at application ``k``, and ``||M z_i + d_k||^2 = z_i^T (M^T M) z_i +
  2 z_i . (d_k^T M) + ||d_k||^2``: the products ``d M`` are taken once per step, for every task.
* :class:`FrozenCopy` - a frozen copy of the hypernetwork that recomputes the targets at every
  step (``targets="online"``). Memory: one hypernetwork.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, List, Optional, Union, cast

import torch
from torch import nn

from cl_moo import Hypernetwork


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _rows(index: Optional[torch.Tensor], t: torch.Tensor) -> torch.Tensor:
    return t if index is None else t[index]


def _to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (through dicts, lists and tuples) moved to ``device``."""
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def _device(hnet: Hypernetwork) -> torch.device:
    """Where ``hnet``'s weights are: loaded targets are moved there (a state read with ``map_location="cpu"``
    continues on the GPU the hypernetwork is on)."""
    return hnet.output_head().weight.device


def _total(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum(terms)`` (the builtin: ``0 + t_1 + t_2 + ...``), a tensor for the one or more head pieces
    or output parts every hypernetwork has."""
    return cast(torch.Tensor, sum(terms))


class StoredOutputs:
    """Recorded outputs ``h(e_t')`` of every earlier task, as ``forward_parts`` pieces."""

    kind = "stored"

    def __init__(self) -> None:
        self.outputs: List[torch.Tensor] = []

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor) -> None:
        self.outputs = [p.detach() for p in hnet.forward_parts(embeddings)]

    def sq_error(self, hnet: Hypernetwork, conds: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        return _total(
            nn.functional.mse_loss(o, _rows(index, w), reduction="sum")
            for o, w in zip(hnet.forward_parts(conds), self.outputs)
        )

    def memory_bytes(self) -> int:
        return _bytes(self.outputs)

    def state_dict(self) -> dict:
        return {"outputs": self.outputs}

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.outputs = list(_to_device(state["outputs"], _device(hnet)))


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
    shift: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``sum_{c,k} ||(W a_ck + b) - (W_0 a0_ck + b_0) + d_k||^2`` from one Gram matrix (module docstring).

    ``a``, ``a0``: head inputs ``(C, n, d)`` of ``C`` conditions and ``n`` applications; ``shift``: the
    residual's change ``d = theta_0 - theta_0*`` at each application ``(n, rows)``, or None (no residual).
    """
    c, n, d = a.shape
    m = torch.cat([weight, weight - weight0, (bias - bias0).unsqueeze(1)], dim=1)
    z = torch.cat([a - a0, a0, a.new_ones(c, n, 1)], dim=2).reshape(c * n, 2 * d + 1)
    total = ((z @ _Gram.apply(m)) * z).sum()
    if shift is None:
        return total
    cross = (z.reshape(c, n, 2 * d + 1) * (shift @ m)).sum()
    return total + 2 * cross + c * shift.pow(2).sum()


class HeadSnapshot:
    """Head ``(W_0, b_0)`` and head inputs ``a0`` of every earlier task (module docstring)."""

    kind = "head_snapshot"

    def __init__(self) -> None:
        self.weight0: Optional[torch.Tensor] = None
        self.bias0: Optional[torch.Tensor] = None
        self.theta0: Optional[torch.Tensor] = None  # MIP's residual theta_0 at the snapshot (None: no residual)
        self.inputs0: List[torch.Tensor] = []  # per head piece: (T, n, d_k)

    @torch.no_grad()
    def snapshot(self, hnet: Hypernetwork, embeddings: torch.Tensor) -> None:
        head = hnet.output_head()
        self.weight0, self.bias0 = head.weight.detach().clone(), head.bias.detach().clone()
        self.theta0 = None if hnet.theta0 is None else hnet.theta0.detach().clone()
        pieces = hnet.head_pieces(hnet.encoder(hnet.check_conditions(embeddings)))
        self.inputs0 = [p.inputs.detach().clone() for p in pieces]

    def sq_error(self, hnet: Hypernetwork, conds: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        # snapshot() or load_state_dict() set and checked the tensors; two O(1) guards name a misuse
        if self.weight0 is None:
            raise RuntimeError("no head snapshot yet: call snapshot(hnet, embeddings) or load_state_dict() first")
        if hnet.theta0 is not None and self.theta0 is None:
            raise ValueError("this head snapshot was taken without a residual theta_0; take a new snapshot")
        head = hnet.output_head()
        weight0, bias0, theta0 = self.weight0, cast(torch.Tensor, self.bias0), self.theta0
        total: Union[float, torch.Tensor] = 0.0
        start = 0  # the piece's first position in the flat output (where its part of theta_0 begins)
        for piece, a0 in zip(hnet.head_pieces(hnet.encoder(hnet.check_conditions(conds))), self.inputs0):
            a, r = piece.inputs, piece.rows
            n, rows = a.shape[1], len(range(*r.indices(head.out_features)))
            shift = None
            if hnet.theta0 is not None:
                end = start + n * rows
                shift = (hnet.theta0[start:end] - cast(torch.Tensor, theta0)[start:end]).reshape(n, rows)
            start += n * rows
            total = total + snapshot_sq_error(
                a, head.weight[r], head.bias[r], _rows(index, a0), weight0[r], bias0[r], shift
            )
        return cast(torch.Tensor, total)  # a tensor: every hypernetwork has a head piece

    def memory_bytes(self) -> int:
        if self.weight0 is None:
            return 0
        return _bytes([self.weight0, self.bias0, *self.inputs0, *([] if self.theta0 is None else [self.theta0])])

    def state_dict(self) -> dict:
        return {"weight0": self.weight0, "bias0": self.bias0, "theta0": self.theta0, "inputs0": self.inputs0}

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        theta0 = state.get("theta0")  # absent: a snapshot of a hypernetwork without residual
        if state["weight0"] is None or state["bias0"] is None:
            raise ValueError("this head snapshot state holds no head (saved before snapshot()); take a new snapshot")
        if hnet.theta0 is not None and theta0 is None:
            raise ValueError("this head snapshot was taken without a residual theta_0; take a new snapshot")
        device = _device(hnet)
        self.weight0, self.bias0 = _to_device(state["weight0"], device), _to_device(state["bias0"], device)
        self.theta0, self.inputs0 = _to_device(theta0, device), list(_to_device(state["inputs0"], device))


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
        return _total(nn.functional.mse_loss(o, w, reduction="sum") for o, w in zip(hnet.forward_parts(conds), wanted))

    def memory_bytes(self) -> int:
        return _bytes(list(self.frozen.parameters())) if self.frozen is not None else 0

    def state_dict(self) -> dict:
        return {"frozen": None if self.frozen is None else self.frozen.state_dict()}

    def load_state_dict(self, state: dict, hnet: Hypernetwork) -> None:
        self.frozen = self._freeze(hnet)
        self.frozen.load_state_dict(state["frozen"])


TARGET_KINDS = {cls.kind: cls for cls in (StoredOutputs, HeadSnapshot, FrozenCopy)}
