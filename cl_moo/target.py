"""Functional target networks: run any ``nn.Module`` with weights given from outside.

A hypernetwork emits the weights of a *target network* (von Oswald et al. 2020, Eq. 1:
``Theta_trgt = h(e, Theta_h)``). :class:`FunctionalTarget` turns an ordinary PyTorch model
into such a target: it lists the shapes of the selected parameters and evaluates the model
with one weight set, or with a batch of B weight sets in one vectorised call
(``torch.func.vmap`` over ``torch.func.functional_call``), without a Python loop over B.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.func import functional_call, vmap

from .layout import WeightLayout

WeightSet = Union[Sequence[torch.Tensor], Mapping[str, torch.Tensor]]


class FunctionalTarget(nn.Module):
    """Wraps ``module`` so that the parameters in ``param_names`` come from outside.

    Parameters that are not selected (e.g. BatchNorm affine parameters) stay ordinary learnable
    parameters of ``module``. The selected ones are frozen inside ``module`` (they are never
    used in :meth:`forward`) and their current values are available from
    :meth:`initial_weights`, so a pretrained model can be the starting point of a hypernetwork
    (MIP's ``theta_0``).
    """

    def __init__(self, module: nn.Module, param_names: Optional[Iterable[str]] = None) -> None:
        super().__init__()
        self.module = module
        available = dict(module.named_parameters())
        if param_names is None:
            names = list(available)
        else:
            names = list(param_names)
            unknown = [n for n in names if n not in available]
            if unknown:
                raise KeyError(
                    f"parameter(s) {unknown} not found in {type(module).__name__}; "
                    f"valid names are: {sorted(available)}"
                )
            if len(set(names)) != len(names):
                raise ValueError(f"parameter names given twice: {names}")
        if not names:
            raise ValueError(f"{type(module).__name__} has no parameters to generate")
        self.layout = WeightLayout.from_named((n, available[n].shape) for n in names)
        for n in names:
            available[n].requires_grad_(False)

    @property
    def param_names(self) -> List[str]:
        """Names of the generated parameters, in the order of :attr:`layout`."""
        return list(self.layout.names)

    @property
    def num_weights(self) -> int:
        """Number of scalars a hypernetwork must emit for this target."""
        return self.layout.num_weights

    def initial_weights(self) -> List[torch.Tensor]:
        """Current values of the selected parameters (copies), in layout order."""
        params = dict(self.module.named_parameters())
        return [params[n].detach().clone() for n in self.layout.names]

    def _as_dict(self, weights: WeightSet) -> Tuple[Dict[str, torch.Tensor], Optional[int]]:
        """Validates a weight set; returns it as a dict and the batch size (None: unbatched)."""
        if isinstance(weights, Mapping):
            tensors = self.layout.ordered(weights)
        else:
            tensors = list(weights)
            if len(tensors) != len(self.param_names):
                raise ValueError(
                    f"expected {len(self.param_names)} weight tensors ({self.param_names}), "
                    f"got {len(tensors)}"
                )
        batch: Optional[int] = None
        for name, shape, t in zip(self.layout.names, self.layout.shapes, tensors):
            if t.shape == shape:
                b = None
            elif t.dim() == len(shape) + 1 and t.shape[1:] == shape:
                b = t.shape[0]
            else:
                raise ValueError(
                    f"weight '{name}' has shape {tuple(t.shape)}; expected {tuple(shape)} "
                    f"or (B, {', '.join(map(str, shape))}) for a batch of B weight sets"
                )
            if t is tensors[0]:
                batch = b
            elif b != batch:
                raise ValueError("all weight tensors must share the same batch dimension")
        return self.layout.as_dict(tensors), batch

    def _fixed(self) -> Dict[str, torch.Tensor]:
        """Unselected parameters and buffers, passed unchanged to ``functional_call``."""
        fixed = {n: p for n, p in self.module.named_parameters() if n not in self.layout.names}
        fixed.update(dict(self.module.named_buffers()))
        return fixed

    def forward(self, weights: WeightSet, x: torch.Tensor) -> torch.Tensor:
        """Runs the model with ``weights``.

        One weight set: ``x`` is an ordinary input batch ``(N, ...)``. A batch of B weight sets
        (every tensor with a leading dimension B): ``x`` is ``(B, N, ...)``, one input group per
        weight set, and the result is ``(B, N, ...)``. Use :meth:`forward_shared` to run the
        same inputs through every weight set.
        """
        wdict, batch = self._as_dict(weights)
        fixed = self._fixed()
        if batch is None:
            return functional_call(self.module, {**fixed, **wdict}, (x,))
        if x.shape[0] != batch:
            raise ValueError(
                f"{batch} weight sets need inputs of shape ({batch}, N, ...), got {tuple(x.shape)}; "
                "use forward_shared() to feed the same inputs to every weight set"
            )
        return vmap(self._call, in_dims=(0, None, 0))(wdict, fixed, x)

    def forward_shared(self, weights: WeightSet, x: torch.Tensor) -> torch.Tensor:
        """Runs the same inputs ``x`` ``(N, ...)`` through B weight sets; returns ``(B, N, ...)``."""
        wdict, batch = self._as_dict(weights)
        fixed = self._fixed()
        if batch is None:
            return functional_call(self.module, {**fixed, **wdict}, (x,))
        return vmap(self._call, in_dims=(0, None, None))(wdict, fixed, x)

    def _call(self, wdict: Dict[str, torch.Tensor], fixed: Dict[str, torch.Tensor], x: torch.Tensor):
        return functional_call(self.module, {**fixed, **wdict}, (x,))


def make_functional_target(
    module: nn.Module, param_names: Optional[Iterable[str]] = None
) -> FunctionalTarget:
    """Returns a :class:`FunctionalTarget` for ``module`` (default: all its parameters)."""
    return FunctionalTarget(module, param_names)
