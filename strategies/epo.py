"""Exact Pareto Optimal search weights (Mahapatra & Rajan 2020, as used by PHN-EPO).

For losses ``l`` (m,), preference ray ``r`` and per-objective gradients ``G`` (m, n):
``C = G G^T``; ``rl = r * l``; ``lhat = rl / sum(rl)``; ``mu = KL(lhat || 1/m) = sum lhat log(m lhat)``;
``a = r * (log(m lhat) - mu)`` (the direction that reduces the non-uniformity).

* balance mode (``mu > eps``): ``max_alpha alpha^T C a`` s.t. ``alpha`` on the simplex and
  ``C alpha >= rhs`` with ``rhs = C a``, ``rhs_j = -inf`` where ``(C a)_j > 0``, and
  ``rhs_{j*} = 0`` for ``j* = argmax rl`` (``rhs = 0`` when no ``(C a)_j > 0``);
* dominance mode: ``max_alpha 1^T C alpha`` s.t. simplex, ``alpha^T C a >= min(max(C a), 0)``,
  ``C alpha >= 0``.

Both LPs are invariant to a positive rescaling of ``C`` (``C a``, ``rhs`` and ``min(max(C a), 0)`` scale with it,
and ``mu``, ``a`` and the mode do not depend on it), so ``C`` is divided by its largest absolute entry before the LP
is built: near convergence its entries reach 1e-10 and HiGHS would drop them as zero (a wrong or infeasible LP).

The weights are ``m * alpha``. Each LP is solved with ``scipy.optimize.linprog`` (HiGHS); when it
fails the weights fall back to linear scalarization on the same scale, ``m * r / sum r`` (``alpha =
r / sum r``, as the reference EPO code does), with ``mode == "fallback"`` so a caller can count it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from scipy.optimize import linprog


@dataclass
class EPOResult:
    weights: np.ndarray
    alpha: np.ndarray
    mode: str  # "balance", "dominance" or "fallback"
    lp: dict = field(default_factory=dict)  # c, A_ub, b_ub, A_eq, b_eq of the LP solved


def _epo_lp(losses: np.ndarray, ray: np.ndarray, gram: np.ndarray, eps: float) -> Optional[dict]:
    """The LP of one ray as ``linprog`` arguments (None when ``r * l`` is degenerate)."""
    l = np.asarray(losses, dtype=np.float64)  # noqa: E741 (l, r, C: the paper's names)
    r = np.asarray(ray, dtype=np.float64)
    C = np.asarray(gram, dtype=np.float64)
    m = len(l)
    rl = r * l
    if not np.all(np.isfinite(rl)) or not np.all(np.isfinite(C)) or rl.sum() <= 0:
        return None
    scale = float(np.abs(C).max()) if C.size else 0.0
    if 0.0 < scale < np.inf:
        C = C / scale  # the LP is invariant to C -> s C (s > 0); HiGHS drops entries below ~1e-9 as zero
    lhat = np.clip(rl / rl.sum(), 1e-12, None)
    log_term = np.log(m * lhat)
    mu = float(np.sum(lhat * log_term))
    a = r * (log_term - mu)
    Ca = C @ a
    if mu > eps:
        mode = "balance"
        J = Ca > 0
        if J.any():
            rhs = Ca.copy()
            rhs[J] = -np.inf
            rhs[np.argmax(rl)] = 0.0
        else:
            rhs = np.zeros(m)
        keep = np.isfinite(rhs)
        c, A_ub, b_ub = -Ca, -C[keep], -rhs[keep]
    else:
        mode = "dominance"
        c = -C.sum(axis=0)
        A_ub = np.vstack([-Ca[None, :], -C])
        b_ub = np.concatenate([[-min(float(Ca.max()), 0.0)], np.zeros(m)])
    return {"mode": mode, "c": c, "A_ub": A_ub, "b_ub": b_ub, "A_eq": np.ones((1, m)), "b_eq": np.ones(1)}


def _fallback(ray: np.ndarray, lp: Optional[dict] = None) -> EPOResult:
    """LS weights ``m * r / sum r``: the same scale (summing to m) as a solved step's ``m * alpha``."""
    r = np.asarray(ray, dtype=np.float64)
    alpha = r / r.sum()
    return EPOResult(len(r) * alpha, alpha, "fallback", lp or {})


def _solve(lp: dict, ray: np.ndarray) -> EPOResult:
    m = len(lp["c"])
    res = linprog(
        lp["c"],
        A_ub=lp["A_ub"] if len(lp["A_ub"]) else None,
        b_ub=lp["b_ub"] if len(lp["A_ub"]) else None,
        A_eq=lp["A_eq"],
        b_eq=lp["b_eq"],
        bounds=[(0, None)] * m,
        method="highs",
    )
    info = {k: v for k, v in lp.items() if k != "mode"}
    if not res.success or res.x is None:
        return _fallback(ray, info)
    return EPOResult(m * res.x, res.x, lp["mode"], info)


def epo_weights(losses: np.ndarray, ray: np.ndarray, gram: np.ndarray, eps: float = 1e-4) -> EPOResult:
    """EPO weights for one ray (see module docstring for the LPs)."""
    lp = _epo_lp(losses, ray, gram, eps)
    return _fallback(ray) if lp is None else _solve(lp, ray)


def epo_weights_batch(losses: np.ndarray, rays: np.ndarray, grams: np.ndarray, eps: float = 1e-4) -> List[EPOResult]:
    """EPO weights for B rays (``losses``/``rays`` (B, m), ``grams`` (B, m, m)) in ONE ``linprog`` call.

    The B LPs are independent, so their block-diagonal union (objectives added) has each block's
    optimum as its solution; if the union fails, each ray is solved on its own.
    """
    lps = [_epo_lp(loss, r, C, eps) for loss, r, C in zip(losses, rays, grams)]
    live: Dict[int, dict] = {i: lp for i, lp in enumerate(lps) if lp is not None}  # ray -> its LP
    results: List[EPOResult] = [_fallback(r) for r in rays]
    if not live:
        return results
    m = len(rays[0])
    n = len(live)
    c = np.concatenate([live[i]["c"] for i in live])
    rows = sum(len(live[i]["b_ub"]) for i in live)
    A_ub, b_ub = np.zeros((rows, n * m)), np.zeros(rows)
    A_eq, b_eq = np.zeros((n, n * m)), np.ones(n)
    row = 0
    for k, i in enumerate(live):
        block = live[i]["A_ub"]
        A_ub[row : row + len(block), k * m : (k + 1) * m] = block
        b_ub[row : row + len(block)] = live[i]["b_ub"]
        row += len(block)
        A_eq[k, k * m : (k + 1) * m] = 1.0
    res = linprog(
        c,
        A_ub=A_ub if rows else None,
        b_ub=b_ub if rows else None,
        A_eq=A_eq,
        b_eq=b_eq,
        bounds=[(0, None)] * (n * m),
        method="highs",
    )
    if res.success and res.x is not None:
        for k, i in enumerate(live):
            alpha = res.x[k * m : (k + 1) * m]
            info = {key: v for key, v in live[i].items() if key != "mode"}
            results[i] = EPOResult(m * alpha, alpha, live[i]["mode"], info)
        return results
    for i in live:
        results[i] = _solve(live[i], rays[i])
    return results
