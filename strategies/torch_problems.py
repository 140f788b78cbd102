"""Torch versions of standard pymoo test problems, for :class:`strategies.objective_problem.ObjectiveProblem`.

pymoo writes its problems' objectives in numpy (``pymoo.gradient.toolbox``), so no gradient reaches a
hypernetwork through them. These are the same formulas in torch, batched: ``f(x)`` takes ``x`` of shape
``(n, n_var)`` and returns ``(n, n_obj)``; tests/test_objective_problems.py checks each against pymoo's own
``problem.evaluate`` on random points. :func:`torch_version` finds the one for a pymoo problem instance, which
is what ``ObjectiveProblem.from_pymoo(problem)`` uses when no ``f=`` is given.

* ZDT1 (convex front ``f2 = 1 - sqrt(f1)``), ZDT2 (concave, ``f2 = 1 - f1^2``), ZDT3 (disconnected);
  Zitzler, Deb & Thiele 2000; box ``[0, 1]^n``, the front at ``x[1:] = 0``.
* DTLZ2 (Deb et al. 2002): the front is the positive part of the unit sphere (concave), at
  ``x[m-1:] = 0.5``; any number of objectives.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import torch

TorchObjectives = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["TORCH_VERSIONS", "dtlz2", "torch_version", "zdt1", "zdt2", "zdt3"]


def _zdt_g(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    return 1.0 + 9.0 / (n - 1) * x[:, 1:].sum(dim=1)


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` for ``v >= 0`` with a finite gradient at 0 (0 there instead of inf, which would make NaN)."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), torch.zeros_like(v))


def zdt1(x: torch.Tensor) -> torch.Tensor:
    """ZDT1: ``f1 = x1``, ``f2 = g (1 - sqrt(f1 / g))``, ``g = 1 + 9 sum(x[1:]) / (n - 1)``."""
    f1 = x[:, 0]
    g = _zdt_g(x)
    return torch.stack([f1, g * (1 - _safe_sqrt(f1 / g))], dim=1)


def zdt2(x: torch.Tensor) -> torch.Tensor:
    """ZDT2: ``f1 = x1``, ``f2 = g (1 - (f1 / g)^2)`` (concave front)."""
    f1 = x[:, 0]
    g = _zdt_g(x)
    return torch.stack([f1, g * (1 - (f1 / g) ** 2)], dim=1)


def zdt3(x: torch.Tensor) -> torch.Tensor:
    """ZDT3: ``f2 = g (1 - sqrt(f1 / g) - f1 / g sin(10 pi f1))`` (disconnected front)."""
    f1 = x[:, 0]
    g = _zdt_g(x)
    return torch.stack([f1, g * (1 - _safe_sqrt(f1 / g) - f1 / g * torch.sin(10 * math.pi * f1))], dim=1)


def dtlz2(x: torch.Tensor, n_obj: int = 3) -> torch.Tensor:
    """DTLZ2 with ``n_obj`` objectives (pymoo's ``DTLZ.obj_func`` with ``alpha = 1``):
    ``f_i = (1 + g) prod_{j < m-1-i} cos(x_j pi/2) [sin(x_{m-1-i} pi/2) for i > 0]``,
    ``g = sum_{j >= m-1} (x_j - 0.5)^2``."""
    head, tail = x[:, : n_obj - 1], x[:, n_obj - 1 :]
    g = ((tail - 0.5) ** 2).sum(dim=1)
    cos = torch.cos(head * (math.pi / 2))
    cols = []
    for i in range(n_obj):
        f = (1 + g) * cos[:, : n_obj - 1 - i].prod(dim=1)
        if i > 0:
            f = f * torch.sin(head[:, n_obj - 1 - i] * (math.pi / 2))
        cols.append(f)
    return torch.stack(cols, dim=1)


def _zdt(fn: TorchObjectives) -> Callable[[Any], TorchObjectives]:
    return lambda problem: fn


TORCH_VERSIONS: Dict[str, Callable[[Any], TorchObjectives]] = {
    # the pymoo class's qualified name -> a factory taking the problem instance (for n_obj etc.)
    "pymoo.problems.multi.zdt.ZDT1": _zdt(zdt1),
    "pymoo.problems.multi.zdt.ZDT2": _zdt(zdt2),
    "pymoo.problems.multi.zdt.ZDT3": _zdt(zdt3),
    "pymoo.problems.many.dtlz.DTLZ2": lambda problem: lambda x: dtlz2(x, int(problem.n_obj)),
}


def torch_version(problem: Any) -> Optional[TorchObjectives]:
    """The torch objectives of a pymoo problem instance of exactly one of the classes in
    :data:`TORCH_VERSIONS` (a subclass may change ``_evaluate``, so it does not match), else None."""
    cls = type(problem)
    factory = TORCH_VERSIONS.get(f"{cls.__module__}.{cls.__qualname__}")
    return None if factory is None else factory(problem)
