"""Shadow-device tracking: finds, on a CPU-only machine, the tensors that would sit on the wrong device
on a GPU.

On a GPU run, a tensor that project code creates without ``device=`` (``torch.zeros(n)``,
``torch.tensor(...)``, ``torch.randperm(n)``) or moves with ``.cpu()`` lives on the host; if it then
meets a tensor on the model's device in one op, CUDA raises "Expected all tensors to be on the same
device" (or, for indices, silently syncs). On the CPU both are the same device, so nothing fails.
:class:`DeviceTracker` replays that distinction: it marks such tensors "host", propagates the mark
through ops whose inputs are all host, clears it on ``.to(device)`` / ``.cuda()``, and records every
op where a host tensor (not a 0-dim scalar, which CUDA accepts) meets a device tensor, with the
project source line that made the call.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, List, Sequence

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

PROJECT = Path(__file__).resolve().parents[1]
TORCH_DIR = str(Path(torch.__file__).resolve().parent)
FACTORIES = {
    torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor, torch.as_tensor, torch.arange,
    torch.rand, torch.randn, torch.randint, torch.randperm, torch.linspace, torch.logspace, torch.eye,
    torch.scalar_tensor,
}
# Ops that accept a host index/size tensor next to device tensors on CUDA.
HOST_OK = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.size, torch.Tensor.dim}


def _tensors(args, kwargs) -> List[torch.Tensor]:
    flat, _ = tree_flatten((args, kwargs))
    return [t for t in flat if isinstance(t, torch.Tensor)]


def _names_a_device(args: Sequence, kwargs: dict) -> bool:
    if kwargs.get("device") is not None:
        return True
    return any(isinstance(a, (torch.device, str)) or (isinstance(a, torch.Tensor)) for a in args[1:])


class DeviceTracker(TorchFunctionMode):
    """Records host/device mixing caused by code under ``roots`` (default: ``strategies/``, ``cl_moo/``)."""

    def __init__(self, roots: Iterable[Path] = (PROJECT / "strategies", PROJECT / "cl_moo")) -> None:
        super().__init__()
        self.roots = [str(Path(r).resolve()) for r in roots]
        self.host = WeakIdKeyDictionary()
        self.violations: List[str] = []
        self.host_creations: List[str] = []

    def __enter__(self):
        """Also carries the mark through ``nn.Parameter(t)``, which makes a new tensor outside the mode."""
        self._new_parameter = torch.nn.Parameter.__new__
        tracker, original = self, self._new_parameter

        def new_parameter(cls, data=None, requires_grad=True):
            p = original(cls, data, requires_grad)
            if data is not None and data in tracker.host:
                tracker.host[p] = tracker.host[data]
            return p

        torch.nn.Parameter.__new__ = new_parameter
        return super().__enter__()

    def __exit__(self, *exc):
        torch.nn.Parameter.__new__ = self._new_parameter
        return super().__exit__(*exc)

    def _caller(self) -> str:
        """``file:line`` of the nearest frame outside torch and this file, if it lies under ``roots``."""
        frame = sys._getframe(2)
        here = str(Path(__file__).resolve())
        while frame is not None:
            name = frame.f_code.co_filename
            if not name.startswith(TORCH_DIR) and name != here and not name.startswith("<"):
                return f"{name}:{frame.f_lineno}" if any(name.startswith(r) for r in self.roots) else ""
            frame = frame.f_back
        return ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = _tensors(args, kwargs)
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if func in FACTORIES and not (args and isinstance(args[0], torch.Tensor)):  # as_tensor(t) keeps t's device
            if kwargs.get("device") is None and torch.get_default_device().type == "cpu":
                site = self._caller()
                if site:
                    self.host_creations.append(f"{getattr(func, '__name__', func)} at {site}")
                    for t in outputs:
                        self.host[t] = site
            return out
        if func is torch.Tensor.cuda or (func is torch.Tensor.to and _names_a_device(args, kwargs)):
            for t in outputs:  # explicitly placed (on the CPU .to() may return the same tensor)
                self.host.pop(t, None)
            return out
        if func is torch.Tensor.cpu:
            for t in outputs:
                self.host[t] = self._caller() or "cpu()"
            return out
        host_in = [t for t in inputs if t in self.host]
        if not host_in:
            return out
        device_in = [t for t in inputs if t not in self.host and t.dim() > 0]
        big_host = [t for t in host_in if t.dim() > 0]
        if big_host and device_in and func not in HOST_OK:
            site = self._caller()
            if site:
                self.violations.append(
                    f"{getattr(func, '__name__', func)} at {site} mixes a host tensor (made at {self.host[big_host[0]]}) "
                    "with a tensor on the model's device"
                )
        if len(host_in) == len(inputs):
            for t in outputs:
                self.host[t] = self.host[host_in[0]]
        return out
