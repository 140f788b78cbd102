"""PHN-EPO on the toy problem of Lin et al. 2019 (also in Mahapatra & Rajan 2020 and Navon et al. 2021).

``x in R^n`` (n = 20) is the whole "model": the hypernetwork generates ``x`` for a ray ``r``;
``f1(x) = 1 - exp(-||x - 1/sqrt(n)||^2)``, ``f2(x) = 1 - exp(-||x + 1/sqrt(n)||^2)``. There is no data
(an objective-only problem). The exact Pareto optimal point of a ray has ``r * l`` constant, i.e. the
loss vector ``l`` points along ``1/r``; the score is the mean angle between ``l`` and ``1/r`` over
PHN's 25 evaluation rays (0 degrees: every generated point is exactly Pareto optimal for its ray).

``python -m benchmarks.experiments.toy_lin2019`` prints that mean angle.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from cl_moo import HypernetworkOptions, evaluation_rays
from strategies.phn import ParetoHypernetworkStrategy

N = 20
SETTINGS = dict(hidden=(100, 100), lr=1e-3, steps=600, rays_per_step=16, alpha=1.0, seed=0)


class Vector(nn.Module):
    """The 'target network': one parameter vector ``x`` (never run; the losses read it directly)."""

    def __init__(self, n: int = N) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros(n))


def lin2019_losses(n: int = N) -> List:
    """``[f1, f2]`` taking the generated weight set ``{"x": (n,)}`` (objective-only losses)."""
    c = 1.0 / math.sqrt(n)

    def f1(weights: Dict[str, torch.Tensor]) -> torch.Tensor:
        return 1 - torch.exp(-(weights["x"] - c).pow(2).sum())

    def f2(weights: Dict[str, torch.Tensor]) -> torch.Tensor:
        return 1 - torch.exp(-(weights["x"] + c).pow(2).sum())

    return [f1, f2]


def inverse_ray_directions(rays: np.ndarray) -> np.ndarray:
    """The direction of ``1/r`` for each ray ``(B, m)`` on the simplex, finite for every such ray.

    A strictly positive ray gives ``min(r) / r`` (the direction of ``1/r``, entries in (0, 1], no overflow).
    A ray with zeros ``Z = {j : r_j = 0}`` gives the limit of that direction as ``r_j -> 0`` for ``j in Z``:
    the entries ``1/r_j`` on ``Z`` dominate, so it tends to the indicator ``1_Z`` (a unit vector ``e_j`` for one
    zero; for several zeros the limit depends on their relative rates, and ``1_Z`` is the one where they
    vanish together, ``r_j = t -> 0`` for all ``j in Z``, the only choice symmetric in them). Not normalized.
    """
    r = np.asarray(rays, dtype=np.float64)
    if r.ndim != 2 or not np.all(np.isfinite(r)) or np.any(r < 0) or np.any(r.sum(1) <= 0):
        raise ValueError("rays must be a (B, m) array of finite, non-negative rays with a positive sum "
                         "(points of the simplex; normalize with r / r.sum(1, keepdims=True))")
    rmin = r.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rmin > 0, rmin / r, (r == 0).astype(np.float64))


def angles_to_inverse_rays(losses: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Angle (degrees) between each loss vector and its ray's ``1/r`` direction
    (:func:`inverse_ray_directions`: finite also for rays with zero entries)."""
    d = inverse_ray_directions(rays)
    l = np.asarray(losses, dtype=np.float64)
    cos = (l * d).sum(1) / (np.linalg.norm(l, axis=1) * np.linalg.norm(d, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def run(*, n: int = N, hidden: Sequence[int] = SETTINGS["hidden"], lr: float = SETTINGS["lr"],
        steps: int = SETTINGS["steps"], rays_per_step: int = SETTINGS["rays_per_step"],
        alpha: float = SETTINGS["alpha"], seed: Optional[int] = SETTINGS["seed"], solver: str = "epo") -> Dict:
    """Trains PHN on the toy problem and returns the mean angle, the per-ray losses and the wall time."""
    t0 = time.perf_counter()
    phn = ParetoHypernetworkStrategy(target=Vector(n), losses=lin2019_losses(n), objective_only=True, solver=solver,
                                     hnet_options=HypernetworkOptions(hidden=tuple(hidden), activation="relu", target_gain=1.0),
                                     alpha=alpha,
                                     rays_per_step=rays_per_step, lr=lr, train_steps=steps, seed=seed)
    phn.train()
    rays = evaluation_rays(2, 25)
    losses = phn.eval(rays=rays)
    angles = angles_to_inverse_rays(losses, rays)
    return {"mean_angle_deg": float(angles.mean()), "max_angle_deg": float(angles.max()), "losses": losses,
            "rays": rays, "epo_fallbacks": phn.epo_fallbacks, "wall_s": time.perf_counter() - t0}


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=list(SETTINGS["hidden"]))
    p.add_argument("--lr", type=float, default=SETTINGS["lr"])
    p.add_argument("--steps", type=int, default=SETTINGS["steps"])
    p.add_argument("--rays-per-step", type=int, default=SETTINGS["rays_per_step"])
    p.add_argument("--alpha", type=float, default=SETTINGS["alpha"])
    p.add_argument("--seed", type=int, default=SETTINGS["seed"])
    p.add_argument("--solver", default="epo")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the tensors are tiny: 1 is fastest)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    r = run(hidden=a.hidden, lr=a.lr, steps=a.steps, rays_per_step=a.rays_per_step, alpha=a.alpha, seed=a.seed,
            solver=a.solver)
    print(f"Lin et al. 2019 toy, PHN-{a.solver.upper()}: mean angle to 1/r {r['mean_angle_deg']:.3f} deg "
          f"(max {r['max_angle_deg']:.3f}), EPO fallbacks {r['epo_fallbacks']}, {r['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
