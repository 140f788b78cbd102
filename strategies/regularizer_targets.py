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
  2 z_i . (d_k^T M) + ||d_k||^2``, summed over tasks as ``2 d_k . (M zbar_k)`` with ``zbar_k = sum_i z_i``:
  one product ``M zbar`` per step, for every task.
* :class:`FrozenCopy` - a frozen copy of the hypernetwork that recomputes the targets at every
  step (``targets="online"``). Memory: one hypernetwork.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, List, Optional, Tuple, cast

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


class _HeadSnapshotSqError(torch.autograd.Function):
    """Every head piece's squared error against the head snapshot (module docstring), one call.

    Per piece: ``M = [W, W - W_0, b - b_0]`` and ``z = [a - a_0; a_0; 1]``; the quadratic part is
    ``sum z^T (M^T M) z`` and, with a residual shift ``s_k``, the cross part ``2 sum_k s_k . (M zbar_k)``
    (``zbar_k = sum_c z_ck``: one product with ``M`` per application, whatever the number of tasks)
    and ``C sum ||s_k||^2``. The hand-written backward takes ``dW`` and ``db`` from ``M (Z^T Z)`` and
    ``s^T zbar`` reduced to the ``d + 1`` columns that ``W`` and ``b`` own, and writes each piece's
    part of ``d theta_0`` in place (autograd would form the ``2 d + 1`` columns of ``dM`` and a
    zero-filled gradient of the whole head and of the whole ``theta_0`` per piece).
    """

    @staticmethod
    def forward(
        ctx: Any,
        rows: Tuple[slice, ...],
        weight: torch.Tensor,
        bias: torch.Tensor,
        theta0: Optional[torch.Tensor],
        theta0_star: Optional[torch.Tensor],
        weight0: torch.Tensor,
        bias0: torch.Tensor,
        *pieces: torch.Tensor,
    ) -> torch.Tensor:
        inputs, inputs0 = pieces[: len(rows)], pieces[len(rows) :]
        total = weight.new_zeros(())
        saved, start = [], 0
        for r, a, a0 in zip(rows, inputs, inputs0):
            c, n, d = a.shape
            m = torch.cat([weight[r], weight[r] - weight0[r], (bias[r] - bias0[r]).unsqueeze(1)], dim=1)
            z = torch.cat([a - a0, a0, a.new_ones(c, n, 1)], dim=2)
            flat = z.reshape(c * n, 2 * d + 1)
            gram = m.T @ m
            total = total + ((flat @ gram) * flat).sum()
            shift = half_d_shift = None
            if theta0 is not None:
                size = n * m.shape[0]
                star = cast(torch.Tensor, theta0_star)  # given with theta0 (HeadSnapshot.sq_error checks)
                shift = (theta0[start : start + size] - star[start : start + size]).view(n, -1)
                # (n, rows): M zbar_k, the summed differences of each application, plus c s_k: half of d/ds
                half_d_shift = torch.add(z.sum(0) @ m.T, shift, alpha=c)
                flat_shift = shift.reshape(-1)  # 2 s.(M zbar) + c s.s = 2 s.(M zbar + c s) - c s.s
                cross = torch.dot(flat_shift, half_d_shift.reshape(-1))
                total = total + 2 * cross - c * torch.dot(flat_shift, flat_shift)
                start += size
            saved += [m, z, gram, shift, half_d_shift]
        # saved for backward (freed by it, not kept with the graph until the next step)
        ctx.save_for_backward(weight, *saved)
        ctx.rows = rows
        ctx.theta0_size = None if theta0 is None else theta0.shape[0]
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        if torch.is_grad_enabled():  # backward(create_graph=True): its products are not differentiable again
            raise RuntimeError(
                "the head-snapshot form of the output regularizer has no second derivative (create_graph=True); "
                "use OutputRegularizer(fast=False) (recorded outputs) for higher-order gradients"
            )
        weight, *flat_saved = ctx.saved_tensors
        saved = [flat_saved[i : i + 5] for i in range(0, len(flat_saved), 5)]
        d = weight.shape[1]
        total_rows = weight.shape[0]
        d_wb: Optional[torch.Tensor] = None  # [dW, db]; zero-filled only when no piece covers every row
        wants_theta0 = ctx.theta0_size is not None and ctx.needs_input_grad[3]
        d_theta0 = weight.new_empty(ctx.theta0_size) if wants_theta0 else None
        d_inputs: List[Optional[torch.Tensor]] = []
        start = 0

        def owned(k: torch.Tensor) -> torch.Tensor:  # columns of W (its own and its share of W - W_0) and b
            return torch.cat([k[:, :d] + k[:, d : 2 * d], k[:, 2 * d :]], dim=1)

        for i, (r, (m, z, gram, shift, half_d_shift)) in enumerate(zip(ctx.rows, saved)):
            wants_a = ctx.needs_input_grad[7 + i]
            c, n, width = z.shape
            flat = z.reshape(c * n, width)
            k = owned(2 * grad * (flat.T @ flat))
            if d_wb is None and r.indices(total_rows) == (0, total_rows, 1):
                d_wb = piece_wb = m @ k
            else:
                d_wb = weight.new_zeros(total_rows, d + 1) if d_wb is None else d_wb
                piece_wb = d_wb[r]
                piece_wb.addmm_(m, k)
            d_a = 2 * grad * (flat @ gram[:, :d]).reshape(c, n, d) if wants_a else None
            if shift is not None:
                piece_wb.addmm_(shift.T, owned(2 * grad * z.sum(0)))
                if d_a is not None:
                    d_a += (2 * grad * (shift @ weight[r])).unsqueeze(0)
                if d_theta0 is not None:
                    region = d_theta0[start : start + shift.numel()].view_as(shift)
                    torch.mul(half_d_shift, 2 * grad, out=region)
                start += shift.numel()
            d_inputs.append(d_a)
        d_wb = cast(torch.Tensor, d_wb)  # every hypernetwork has a head piece
        no_grads = [None] * len(ctx.rows)  # the snapshot's inputs a0
        return (None, d_wb[:, :d], d_wb[:, d], d_theta0, None, None, None, *d_inputs, *no_grads)


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
        # snapshot() or load_state_dict() set and checked the tensors; these guards name a misuse
        if self.weight0 is None:
            raise RuntimeError("no head snapshot yet: call snapshot(hnet, embeddings) or load_state_dict() first")
        if hnet.theta0 is not None and self.theta0 is None:
            raise ValueError("this head snapshot was taken without a residual theta_0; take a new snapshot")
        head = hnet.output_head()
        pieces = hnet.head_pieces(hnet.encoder(hnet.check_conditions(conds)))
        if hnet.theta0 is not None:  # each piece writes its part of d theta_0: they must cover it once
            covered = sum(p.inputs.shape[1] * len(range(*p.rows.indices(head.out_features))) for p in pieces)
            if covered != hnet.num_weights:
                raise ValueError(
                    f"the head pieces cover {covered} outputs, not the {hnet.num_weights} of theta_0: "
                    "head_pieces() must return pieces whose sizes add to num_weights"
                )
        total = _HeadSnapshotSqError.apply(
            tuple(p.rows for p in pieces),
            head.weight,
            head.bias,
            hnet.theta0,
            self.theta0,
            self.weight0,
            self.bias0,
            *(p.inputs for p in pieces),
            *(_rows(index, a0) for a0 in self.inputs0),
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
