"""Exact Pareto Optimal search weights (Mahapatra & Rajan 2020, as used by PHN-EPO).

For losses ``l`` (m,), preference ray ``r`` and per-objective gradients ``G`` (m, n):
``C = G G^T``; ``rl = r * l``; ``lhat = rl / sum(rl)``; ``mu = KL(lhat || 1/m) = sum lhat log(m lhat)``;
``a = r * (log(m lhat) - mu)`` (the direction that reduces the non-uniformity).

* balance mode (``mu > eps``): ``max_alpha alpha^T C a`` s.t. ``alpha`` on the simplex and
  ``C alpha >= rhs`` with ``rhs = C a``, ``rhs_j = -inf`` where ``(C a)_j > 0``, and
  ``rhs_{j*} = 0`` for ``j* = argmax rl`` (``rhs = 0`` when no ``(C a)_j > 0``);
* dominance mode: ``max_alpha 1^T C alpha`` s.t. simplex, ``alpha^T C a >= min(max(C a), 0)``,
  ``C alpha >= 0``.

The weights are ``m * alpha``. Each LP is solved with ``scipy.optimize.linprog`` (HiGHS); when it
fails the weights fall back to linear scalarization ``r / sum r`` and the failure is counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np
from scipy.optimize import linprog


@dataclass
class EPOResult:
    weights: np.ndarray
    alpha: np.ndarray
    mode: str  # "balance", "dominance" or "fallback"
    lp: dict = field(default_factory=dict)  # c, A_ub, b_ub, A_eq, b_eq of the LP solved


def epo_weights(losses: np.ndarray, ray: np.ndarray, gram: np.ndarray, eps: float = 1e-4) -> EPOResult:
    """EPO weights for one ray (see module docstring for the LPs)."""
    l = np.asarray(losses, dtype=np.float64)
    r = np.asarray(ray, dtype=np.float64)
    C = np.asarray(gram, dtype=np.float64)
    m = len(l)
    rl = r * l
    if not np.all(np.isfinite(rl)) or rl.sum() <= 0:
        return EPOResult(r / r.sum(), r / r.sum(), "fallback")
    lhat = np.clip(rl / rl.sum(), 1e-12, None)
    log_term = np.log(m * lhat)
    mu = float(np.sum(lhat * log_term))
    a = r * (log_term - mu)
    Ca = C @ a
    A_eq, b_eq = np.ones((1, m)), np.ones(1)
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
        c = -Ca
        A_ub, b_ub = -C[keep], -rhs[keep]
    else:
        mode = "dominance"
        c = -C.sum(axis=0)
        A_ub = np.vstack([-Ca[None, :], -C])
        b_ub = np.concatenate([[-min(float(Ca.max()), 0.0)], np.zeros(m)])
    res = linprog(c, A_ub=A_ub if len(A_ub) else None, b_ub=b_ub if len(A_ub) else None,
                  A_eq=A_eq, b_eq=b_eq, bounds=[(0, None)] * m, method="highs")
    lp = {"c": c, "A_ub": A_ub, "b_ub": b_ub, "A_eq": A_eq, "b_eq": b_eq}
    if not res.success or res.x is None:
        return EPOResult(r / r.sum(), r / r.sum(), "fallback", lp)
    alpha = np.asarray(res.x)
    return EPOResult(m * alpha, alpha, mode, lp)


def epo_weights_batch(losses: np.ndarray, rays: np.ndarray, grams: np.ndarray) -> List[EPOResult]:
    """:func:`epo_weights` for each of B rays (``losses``/``rays`` (B, m), ``grams`` (B, m, m))."""
    return [epo_weights(l, r, C) for l, r, C in zip(losses, rays, grams)]
