"""Functional target networks: run any ``nn.Module`` with weights given from outside.

A hypernetwork emits the weights of a *target network* (von Oswald et al. 2020, Eq. 1:
``Theta_trgt = h(e, Theta_h)``). :class:`FunctionalTarget` turns an ordinary PyTorch model
into such a target: it lists the shapes of the selected parameters and evaluates the model
with one weight set, or with a batch of B weight sets in one vectorised call
(``torch.func.vmap`` over ``torch.func.functional_call``), without a Python loop over B.

Modules that vmap cannot run for B different networks fall back to a loop over the B weight
sets (one :class:`TargetFallbackWarning` per target):

* normalisation layers that update running statistics (BatchNorm/InstanceNorm with
  ``track_running_stats`` in training mode) and recurrent layers (``nn.RNNBase``: no batching
  rule for ``aten::lstm``/``gru``/``rnn``), detected up front;
* any other module whose vectorised call fails with a vmap/batching-rule error (caught, the
  call is retried with the loop and later calls in the same train/eval mode loop directly).

Running statistics in the loop: every weight set normalises with its own batch statistics and
starts from the same running statistics; after the call the buffers hold the mean over the B
weight sets of what each set would have written. That is one update per call (as for one
network), with the mean of the sets' batch statistics, independent of the order of the sets
(``num_batches_tracked`` grows by 1). Non-floating buffers take the last set's value.

Buffers from outside: ``forward(weights, x, buffers={name: tensor})`` runs the call with those
tensors in place of the module's own buffers of those names (e.g. one set of BatchNorm running
statistics per task, :class:`strategies.cl_model.TaskConditionedHypernetwork`); in training mode
they are updated in place exactly as the module's own would be, and the module's own stay untouched.
"""

from __future__ import annotations

import re
import warnings
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _NormBase

from .layout import WeightLayout

WeightSet = Union[Sequence[torch.Tensor], Mapping[str, torch.Tensor]]

# Messages of vmap failures that a per-weight-set loop avoids (missing batching rules, in-place
# updates of unbatched tensors, .item()/data-dependent control flow, escaped BatchedTensors).
_VMAP_FAILURE = re.compile(r"batching rule|vmap|batchedtensor|batched tensor|functorch", re.IGNORECASE)


class TargetFallbackWarning(UserWarning):
    """A target runs its B weight sets one at a time instead of in one vectorised call."""


class TargetCallError(RuntimeError):
    """The wrapped module failed on the given input; the module's own error is the cause."""


def _alias_groups(module: nn.Module, named: Iterable[Tuple[str, torch.Tensor]]) -> Dict[int, List[str]]:
    """``{id(tensor): [names]}``: every distinct attribute slot holding each tensor.

    A submodule registered twice (``self.a = lin; self.b = lin``) gives two names for one slot;
    only the first is kept (swapping the same slot twice is what leaks tensors). A tensor held by
    two different modules (tied weights) keeps both names: both slots must receive the weight.
    """
    groups: Dict[int, List[str]] = {}
    slots: Set[Tuple[int, str]] = set()
    for name, tensor in named:
        prefix, _, local = name.rpartition(".")
        slot = (id(module.get_submodule(prefix)), local)
        if slot in slots:
            continue
        slots.add(slot)
        groups.setdefault(id(tensor), []).append(name)
    return groups


def _expected_input(module: nn.Module) -> Optional[str]:
    """What the first registered layer expects as input, where that can be read off the layer."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return f"{type(m).__name__}(in_features={m.in_features}) expects (..., {m.in_features})"
        if isinstance(m, nn.modules.conv._ConvNd):
            dims = {1: "L", 2: "H, W", 3: "D, H, W"}.get(len(m.kernel_size), "...")
            return f"{type(m).__name__}(in_channels={m.in_channels}) expects (N, {m.in_channels}, {dims})"
        if isinstance(m, nn.RNNBase):
            shape = f"(N, L, {m.input_size})" if m.batch_first else f"(L, N, {m.input_size})"
            return f"{type(m).__name__}(input_size={m.input_size}) expects {shape}"
        if isinstance(m, nn.MultiheadAttention):
            shape = f"(N, L, {m.embed_dim})" if m.batch_first else f"(L, N, {m.embed_dim})"
            return f"{type(m).__name__}(embed_dim={m.embed_dim}) expects {shape}"
    return None


class FunctionalTarget(nn.Module):
    """Wraps ``module`` so that the parameters in ``param_names`` come from outside.

    Parameters that are not selected (e.g. BatchNorm affine parameters) stay ordinary learnable
    parameters of ``module``. The selected ones are frozen inside ``module`` (they are never
    used in :meth:`forward`) and their current values are available from
    :meth:`initial_weights`, so a pretrained model can be the starting point of a hypernetwork
    (MIP's ``theta_0``). A parameter shared by several modules (tied weights) is generated once
    and used everywhere it is registered; select it under any one of its names.
    """

    def __init__(self, module: nn.Module, param_names: Optional[Iterable[str]] = None) -> None:
        super().__init__()
        self.module = module
        every = dict(module.named_parameters(remove_duplicate=False))
        groups = _alias_groups(module, every.items())
        if param_names is None:
            names = [n for n, _ in module.named_parameters()]
        else:
            names = list(param_names)
            unknown = [n for n in names if n not in every]
            if unknown:
                raise KeyError(
                    f"parameter(s) {unknown} not found in {type(module).__name__}; valid names are: {sorted(every)}"
                )
            if len(set(names)) != len(names):
                raise ValueError(f"parameter names given twice: {names}")
            seen: Dict[int, str] = {}
            for n in names:
                other = seen.setdefault(id(every[n]), n)
                if other != n:
                    raise ValueError(f"'{other}' and '{n}' name the same (tied) parameter; select only one of them")
        if not names:
            raise ValueError(f"{type(module).__name__} has no parameters to generate")
        self.layout = WeightLayout.from_named((n, every[n].shape) for n in names)
        for n in names:
            every[n].requires_grad_(False)
        # Per selected tensor: every slot that holds it (the selected name first).
        self._aliases: Tuple[Tuple[str, ...], ...] = tuple(
            (n,) + tuple(a for a in groups[id(every[n])] if a != n) for n in names
        )
        buffers = dict(module.named_buffers(remove_duplicate=False))
        self._buffer_aliases: Tuple[Tuple[str, ...], ...] = tuple(
            tuple(g) for g in _alias_groups(module, buffers.items()).values()
        )
        self._buffer_group: Dict[str, Tuple[str, ...]] = {a: g for g in self._buffer_aliases for a in g}
        self._owners = tuple(module.get_submodule(n.rpartition(".")[0]) for n in names)
        self._stat_layers = [m for m in module.modules() if isinstance(m, _NormBase)]
        rnns = sorted({type(m).__name__ for m in module.modules() if isinstance(m, nn.RNNBase)})
        self._static_reason: Optional[str] = (
            f"{'/'.join(rnns)} has no vmap batching rule (aten::lstm/gru/rnn)" if rnns else None
        )
        self._vmap_failed: Dict[bool, str] = {}
        self._vmap_ok: Set[bool] = set()
        self._warned = False

    @property
    def param_names(self) -> List[str]:
        """Names of the generated parameters, in the order of :attr:`layout`."""
        return list(self.layout.names)

    @property
    def num_weights(self) -> int:
        """Number of scalars a hypernetwork must emit for this target."""
        return self.layout.num_weights

    def running_stat_names(self) -> List[str]:
        """Names of the buffers that normalisation layers update in training mode (``running_mean``,
        ``running_var``, ``num_batches_tracked`` of every BatchNorm/InstanceNorm layer that tracks running
        statistics); one name per buffer."""
        names = []
        for prefix, m in self.module.named_modules():
            if isinstance(m, _NormBase) and m.track_running_stats:
                for local, t in m.named_buffers(recurse=False):
                    name = f"{prefix}.{local}" if prefix else local
                    if t is not None and name in self._buffer_group and self._buffer_group[name][0] == name:
                        names.append(name)
        return names

    def _check_buffers(self, buffers: Optional[Mapping[str, torch.Tensor]]) -> Optional[Dict[str, torch.Tensor]]:
        """Given buffers keyed by the first name of each buffer slot group; unknown names and shapes refused."""
        if buffers is None:
            return None
        out: Dict[str, torch.Tensor] = {}
        for name, t in buffers.items():
            if name not in self._buffer_group:
                raise KeyError(
                    f"buffers= has unknown name {name!r}; {type(self.module).__name__}'s buffers are "
                    f"{sorted(self._buffer_group)}"
                )
            own = self.module.get_buffer(name)
            if own is not None and tuple(t.shape) != tuple(own.shape):
                raise ValueError(f"buffer '{name}' has shape {tuple(t.shape)}; the module's is {tuple(own.shape)}")
            out[self._buffer_group[name][0]] = t
        return out

    def _expand_buffers(self, buffers: Optional[Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        return {} if not buffers else {a: t for n, t in buffers.items() for a in self._buffer_group[n]}

    def initial_weights(self) -> List[torch.Tensor]:
        """Current values of the selected parameters (copies), in layout order."""
        params = dict(self.module.named_parameters(remove_duplicate=False))
        return [params[n].detach().clone() for n in self.layout.names]

    # ------------------------------------------------------------------ checks
    def _as_dict(self, weights: WeightSet, x: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Optional[int]]:
        """Validates a weight set; returns it as a dict and the batch size (None: unbatched)."""
        if isinstance(weights, Mapping):
            tensors = self.layout.ordered(weights)
        else:
            tensors = list(weights)
            if len(tensors) != len(self.param_names):
                raise ValueError(
                    f"expected {len(self.param_names)} weight tensors ({self.param_names}), got {len(tensors)}"
                )
        batch: Optional[int] = None
        x_device = x.device if isinstance(x, torch.Tensor) else None
        for i, (name, shape, t) in enumerate(zip(self.layout.names, self.layout.shapes, tensors)):
            if t.shape == shape:
                b = None
            elif t.dim() == len(shape) + 1 and t.shape[1:] == shape:
                b = t.shape[0]
            else:
                raise ValueError(
                    f"weight '{name}' has shape {tuple(t.shape)}; expected {tuple(shape)} "
                    f"or (B, {', '.join(map(str, shape))}) for a batch of B weight sets"
                )
            if i == 0:
                batch = b
            elif b != batch:
                raise ValueError("all weight tensors must share the same batch dimension")
            own = self._owners[i]._parameters[name.rpartition(".")[2]]
            if own is not None and t.dtype != own.dtype and not torch.is_autocast_enabled(t.device.type):
                raise TypeError(
                    f"weight '{name}' is {t.dtype} but {type(self.module).__name__} holds {own.dtype} "
                    f"parameters; generate {own.dtype} weights (e.g. hnet.to({own.dtype})) or convert "
                    f"the target with target.to({t.dtype})"
                )
            if x_device is not None and t.device != x_device:
                raise ValueError(
                    f"weight '{name}' is on {t.device} but the input is on {x_device}; put the "
                    f"weights, the input and the target on one device (e.g. x.to('{t.device}'))"
                )
        return self.layout.as_dict(tensors), batch

    def _loop_reason(self) -> Optional[str]:
        """Why this call cannot be vectorised (None: vmap works); cheap attribute checks only."""
        if self._static_reason is not None:
            return self._static_reason
        for m in self._stat_layers:
            if m.training and m.track_running_stats:
                return (
                    f"{type(m).__name__} in training mode updates its running statistics in place, "
                    "which one set of buffers cannot do for B different networks under vmap"
                )
        return self._vmap_failed.get(self.module.training)

    def _warn(self, reason: str, batch: int) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"FunctionalTarget({type(self.module).__name__}) runs batched weight sets one at a time "
                f"(a Python loop over B) because {reason}; this costs B separate forward passes "
                f"(B={batch} here) instead of one vectorised call",
                TargetFallbackWarning,
                stacklevel=5,
            )

    # ------------------------------------------------------------------ calls
    def _expand(self, wdict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The weights under every slot that holds them (for ``tie_weights=False``)."""
        return {a: wdict[aliases[0]] for aliases in self._aliases for a in aliases}

    def _call(
        self, wdict: Dict[str, torch.Tensor], x: torch.Tensor, buffers: Optional[Dict[str, torch.Tensor]] = None
    ) -> torch.Tensor:
        call = self._expand(wdict)
        call.update(self._expand_buffers(buffers))
        return functional_call(self.module, call, (x,), tie_weights=False)

    def _vmapped(
        self,
        wdict: Dict[str, torch.Tensor],
        x: torch.Tensor,
        x_dim: Optional[int],
        buffers: Optional[Dict[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        return vmap(lambda w, xs: self._call(w, xs, buffers), in_dims=(0, x_dim), randomness="different")(wdict, x)

    def _loop(
        self,
        wdict: Dict[str, torch.Tensor],
        x: torch.Tensor,
        x_dim: Optional[int],
        batch: int,
        buffers: Optional[Dict[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """B single-set calls; each starts from the same buffers, which then hold their mean."""
        own = {g[0]: self.module.get_buffer(g[0]) for g in self._buffer_aliases}
        own.update(buffers or {})
        own = {n: t for n, t in own.items() if t is not None}
        outs, written = [], []
        for b in range(batch):
            bufs = {n: t.clone() for n, t in own.items()}
            call = self._expand({n: w[b] for n, w in wdict.items()})
            for g in self._buffer_aliases:
                if g[0] in bufs:
                    call.update({a: bufs[g[0]] for a in g})
            outs.append(functional_call(self.module, call, (x if x_dim is None else x[b],), tie_weights=False))
            written.append({n: call[n] for n in own})  # functional_call writes reassigned buffers back
        with torch.no_grad():
            for n, t in own.items():
                vals = [w[n] for w in written]
                if t.is_floating_point() or t.is_complex():
                    t.copy_(torch.stack(vals).mean(0))
                else:
                    t.copy_(vals[-1])
        return torch.stack(outs)

    def _batched(
        self,
        wdict: Dict[str, torch.Tensor],
        x: torch.Tensor,
        x_dim: Optional[int],
        batch: int,
        buffers: Optional[Dict[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        reason = self._loop_reason()
        if reason is not None:
            self._warn(reason, batch)
            return self._loop(wdict, x, x_dim, batch, buffers)
        mode = self.module.training
        snapshot = None
        if mode not in self._vmap_ok:  # first vectorised try in this mode: undo side effects if it fails
            given = list((buffers or {}).values())
            snapshot = [(t, t.detach().clone()) for t in [t for _, t in self.module.named_buffers()] + given]
        try:
            out = self._vmapped(wdict, x, x_dim, buffers)
        except RuntimeError as err:
            if isinstance(err, torch.OutOfMemoryError) or not _VMAP_FAILURE.search(str(err)):
                raise
            with torch.no_grad():
                for t, saved in snapshot or ():
                    t.copy_(saved)
            out = self._loop(wdict, x, x_dim, batch, buffers)  # an unrelated error surfaces from here
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            self._vmap_failed[mode] = f"vmap failed ({first_line})"
            self._warn(self._vmap_failed[mode], batch)
            return out
        self._vmap_ok.add(mode)
        return out

    def _run(
        self, weights: WeightSet, x: torch.Tensor, shared: bool, buffers: Optional[Mapping[str, torch.Tensor]] = None
    ) -> torch.Tensor:
        wdict, batch = self._as_dict(weights, x)
        given = self._check_buffers(buffers)
        try:
            if batch is None:
                return self._call(wdict, x, given)
            if not shared and x.shape[0] != batch:
                raise ValueError(
                    f"{batch} weight sets need inputs of shape ({batch}, N, ...), got {tuple(x.shape)}; "
                    "use forward_shared() to feed the same inputs to every weight set"
                )
            return self._batched(wdict, x, None if shared else 0, batch, given)
        except RuntimeError as err:
            if isinstance(err, (TargetCallError, torch.OutOfMemoryError)):
                raise
            raise TargetCallError(self._explain(err, x, batch, shared)) from err

    def _explain(self, err: Exception, x: torch.Tensor, batch: Optional[int], shared: bool) -> str:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        if batch is None:
            given = f"an input of shape {shape}"
        elif shared:
            given = f"an input of shape {shape} shared by {batch} weight sets"
        else:
            given = f"an input of shape {shape}, i.e. {shape[1:]} per weight set"
        hint = _expected_input(self.module)
        hint = f" Its first layer {hint}; check the input's shape and feature width." if hint else ""
        return f"{type(self.module).__name__} failed on {given}: {str(err).rstrip('. ')}.{hint}"

    def forward(
        self, weights: WeightSet, x: torch.Tensor, *, buffers: Optional[Mapping[str, torch.Tensor]] = None
    ) -> torch.Tensor:
        """Runs the model with ``weights`` (and ``buffers``, if given, in place of the module's own
        buffers of those names; see the module docstring).

        One weight set: ``x`` is an ordinary input batch ``(N, ...)``. A batch of B weight sets
        (every tensor with a leading dimension B): ``x`` is ``(B, N, ...)``, one input group per
        weight set, and the result is ``(B, N, ...)``. Use :meth:`forward_shared` to run the
        same inputs through every weight set.
        """
        return self._run(weights, x, shared=False, buffers=buffers)

    def forward_shared(
        self, weights: WeightSet, x: torch.Tensor, *, buffers: Optional[Mapping[str, torch.Tensor]] = None
    ) -> torch.Tensor:
        """Runs the same inputs ``x`` ``(N, ...)`` through B weight sets; returns ``(B, N, ...)``."""
        return self._run(weights, x, shared=True, buffers=buffers)


def make_functional_target(module: nn.Module, param_names: Optional[Iterable[str]] = None) -> FunctionalTarget:
    """Returns a :class:`FunctionalTarget` for ``module`` (default: all its parameters)."""
    return FunctionalTarget(module, param_names)
