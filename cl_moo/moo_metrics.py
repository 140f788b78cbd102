"""Multi-objective metrics: hypervolume (pymoo, exact), uniformity, non-dominated set, rays.

* Hypervolume: ``pymoo.indicators.hv.HV`` with a fixed reference point (all objectives minimised).
* Uniformity (Mahapatra & Rajan 2020; Navon et al. 2021): ``1 - KL(lhat || u)``, with
  ``lhat = (r * l) / sum(r * l)`` and ``u`` uniform over the m objectives.
* Evaluation rays: m = 2: K rays at angles in [0.1, pi/2 - 0.1] on the quarter circle,
  normalised to sum 1 (PHN); m >= 3: Das-Dennis directions from pymoo.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting, find_non_dominated
from pymoo.util.ref_dirs import get_reference_directions


class RayError(ValueError):
    """A preference ray is not on the probability simplex or has the wrong length."""


def check_rays(rays: torch.Tensor, m: int, tol: float = 1e-5) -> torch.Tensor:
    """Returns ``rays`` as ``(B, m)``; raises :class:`RayError` naming the problem and the fix."""
    rays = torch.as_tensor(rays, dtype=torch.float32)
    if rays.dim() == 1:
        rays = rays.unsqueeze(0)
    if rays.dim() != 2 or rays.shape[1] != m:
        raise RayError(f"a preference ray needs {m} entries (one per objective); got shape {tuple(rays.shape)}")
    if not torch.isfinite(rays).all():
        raise RayError("preference rays contain NaN or inf")
    if (rays < -tol).any():
        raise RayError(f"preference rays must be non-negative; got minimum {rays.min().item():.4g}")
    sums = rays.sum(dim=1)
    if ((sums - 1).abs() > tol).any():
        bad = sums[(sums - 1).abs() > tol][0].item()
        raise RayError(
            f"preference rays must sum to 1 (the simplex); got a ray summing to {bad:.6g}: "
            "normalise it with r / r.sum()"
        )
    return rays


def hypervolume(points: np.ndarray, ref_point: Union[Sequence[float], np.ndarray]) -> float:
    """Exact hypervolume dominated by ``points`` (K, m) up to ``ref_point`` (minimisation)."""
    pts = np.asarray(points, dtype=np.float64)
    return float(HV(ref_point=np.asarray(ref_point, dtype=np.float64))(pts))


def non_dominated(points: np.ndarray) -> np.ndarray:
    """The non-dominated rows of ``points`` (minimisation)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts[find_non_dominated(pts)]


def non_dominated_fronts(points: np.ndarray) -> np.ndarray:
    """Front index per row of ``points`` (minimisation): 0 for the non-dominated rows, k for those
    non-dominated once fronts 0..k-1 are removed (pymoo's non-dominated sorting)."""
    pts = np.asarray(points, dtype=np.float64)
    front = np.empty(len(pts), dtype=int)
    for k, rows in enumerate(NonDominatedSorting().do(pts)):
        front[rows] = k
    return front


def uniformity(losses: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """``1 - KL(lhat || uniform)`` per ray; ``losses`` and ``rays`` are (K, m).

    Undefined (NaN) for a ray where ``r * l`` is all zero (e.g. a corner ray whose objective
    is exactly 0); average with ``np.nanmean``.
    """
    rl = np.asarray(rays, dtype=np.float64) * np.asarray(losses, dtype=np.float64)
    m = rl.shape[1]
    total = rl.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        lhat = np.clip(rl / total, 1e-12, None)
        out = 1.0 - np.sum(lhat * np.log(lhat * m), axis=1)
    return np.where(total[:, 0] > 0, out, np.nan)


def evaluation_rays(m: int, k: int = 25) -> np.ndarray:
    """PHN's evaluation rays: quarter circle for m = 2, Das-Dennis directions for m >= 3."""
    if m < 2:
        raise ValueError(f"need at least 2 objectives, got {m}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(
            f"k={k!r} rays: a front needs an integer k >= 2 (PHN evaluates 25); to evaluate one "
            "trade-off, pass that ray itself"
        )
    if m == 2:
        angles = np.linspace(0.1, math.pi / 2 - 0.1, k)
        rays = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return rays / rays.sum(axis=1, keepdims=True)
    partitions = 1
    while math.comb(partitions + m - 1, m - 1) < k:
        partitions += 1
    return get_reference_directions("das-dennis", m, n_partitions=partitions)
