"""The Adam optimizer the strategies use: PyTorch's fused kernel where it applies.

``torch.optim.Adam``'s default for CPU tensors is a per-tensor loop of separate element-wise
ops; the fused kernel does the same update (Kingma & Ba 2015, Alg. 1) in one vectorised,
multi-threaded pass (about 9x faster for a 2M-parameter hypernetwork on a 2-core CPU, see
``benchmarks/experiments/speed.py``). It needs floating-point parameters on a device with fused kernels;
otherwise the default implementation is used.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple, Union

import torch
from torch import nn

_FUSED_DEVICES = ("cpu", "cuda")


def fused_supported(params: Iterable[torch.Tensor]) -> bool:
    """True when every parameter is a floating-point tensor on a CPU or CUDA device."""
    params = list(params)
    return bool(params) and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params)


ParamsOrGroups = Union[Iterable[nn.Parameter], List[Dict[str, Any]]]


def make_adam(params: ParamsOrGroups, *, lr: float, betas: Tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """``torch.optim.Adam`` over ``params`` (tensors, or parameter-group dicts), with ``fused=True``
    when :func:`fused_supported` holds for every tensor."""
    items: List[Any] = list(params)
    tensors = [p for g in items for p in g["params"]] if items and isinstance(items[0], dict) else items
    return torch.optim.Adam(items, lr=lr, betas=betas, fused=fused_supported(tensors) or None)
