"""Solvers: how one step's per-ray losses become the scalar a Pareto hypernetwork backpropagates.

The extension point of :class:`strategies.phn.ParetoHypernetworkStrategy`, after PHN's
``Solver.get_weighted_loss`` (Navon et al. 2021, ``phn/solvers.py``). A step gives the solver, for
B rays at once:

* ``losses`` ``(B, m)``: the m objectives of the B generated weight sets (in the autograd graph),
* ``rays`` ``(B, m)``: the preference rays they were generated for,
* ``weights`` ``(B, W)``: the flat generated weights (in the graph), so a solver can take
  per-objective gradients with respect to them (:meth:`Solver.per_objective_gradients`).

It returns one scalar tensor; the strategy calls ``backward()`` on it. New solvers subclass
:class:`Solver` and are passed as ``solver=MySolver()``, or are registered in :data:`SOLVERS`
to be chosen by name from a config.
"""
from __future__ import annotations

import logging
from typing import Dict, Type, Union

import numpy as np
import torch

from .epo import epo_weights_batch

logger = logging.getLogger(__name__)


class Solver:
    """Base class: subclass it and implement :meth:`get_weighted_loss`.

    A solver may keep state across steps (counters, running estimates); one instance belongs to
    one strategy. The strategy calls the solver (``solver(losses, rays, weights)``), which checks
    that :meth:`get_weighted_loss` returned a scalar tensor.
    """

    def get_weighted_loss(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The scalar to backpropagate from ``losses`` ``(B, m)``, ``rays`` ``(B, m)`` and the flat
        generated ``weights`` ``(B, W)`` (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_weighted_loss(losses, rays, weights)")

    @staticmethod
    def per_objective_gradients(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``(B, m, W)``: the gradient of each ray's objective i with respect to that ray's weights.

        m backward passes for all B rays together (the rays' weight sets are independent, so the
        gradient of ``losses[:, i].sum()`` with respect to ``weights[b]`` is ``d losses[b, i]``).
        The graph is kept for the final backward.
        """
        grads = [torch.autograd.grad(losses[:, i].sum(), weights, retain_graph=True)[0] for i in range(losses.shape[1])]
        return torch.stack(grads, dim=1)

    def __call__(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        loss = self.get_weighted_loss(losses, rays, weights)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            got = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
            raise TypeError(f"{type(self).__name__}.get_weighted_loss must return a scalar tensor, got {got}: "
                            "reduce over rays and objectives (e.g. (w * losses).sum(1).mean())")
        return loss

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearScalarization(Solver):
    """PHN-LS (Navon et al. 2021, Eq. 3): ``mean_b sum_i r_bi l_i(theta(r_b))``."""

    def get_weighted_loss(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (rays.to(losses.dtype) * losses).sum(dim=1).mean()


class EPO(Solver):
    """PHN-EPO: ``mean_b sum_i w_bi l_i`` with ``w_b`` the Exact Pareto Optimal search weights
    (Mahapatra & Rajan 2020; :mod:`strategies.epo`) from the Gram matrix ``G G^T`` of the
    per-objective gradients with respect to the generated weights.

    ``w_b = m * alpha_b`` (``alpha_b`` on the simplex). When an LP fails, the ray's weights fall
    back to linear scalarization on the same scale, ``m * r / sum(r)``; the failures are counted
    in :attr:`fallbacks` (read by ``strategy.epo_fallbacks``) and logged as a warning.
    """

    def __init__(self, *, eps: float = 1e-4) -> None:
        self.eps = eps
        self.fallbacks = 0
        self.steps = 0

    def get_weighted_loss(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        low = float(losses.detach().min())
        if low < 0:
            raise ValueError(
                f"EPO needs non-negative losses (it balances the shares r_i l_i / sum_j r_j l_j), got a loss of "
                f"{low:.4g}; shift the objective by a constant lower bound, or use solver='ls'")
        G = self.per_objective_gradients(losses, weights)
        grams = torch.bmm(G, G.transpose(1, 2)).detach().cpu().double().numpy()
        results = epo_weights_batch(losses.detach().cpu().double().numpy(), rays.detach().cpu().double().numpy(),
                                    grams, eps=self.eps)
        self.steps += 1
        failed = sum(r.mode == "fallback" for r in results)
        if failed:
            self.fallbacks += failed
            logger.warning("EPO: the LP failed for %d of %d rays at solver step %d; used the LS weights m * r / sum(r)",
                           failed, len(results), self.steps)
        w = torch.as_tensor(np.stack([r.weights for r in results]), dtype=losses.dtype, device=losses.device)
        return (w * losses).sum(dim=1).mean()

    def __repr__(self) -> str:
        return f"EPO(eps={self.eps})"


SOLVERS: Dict[str, Type[Solver]] = {"ls": LinearScalarization, "epo": EPO}


def make_solver(solver: Union[str, Solver]) -> Solver:
    """A solver from a name in :data:`SOLVERS` (a fresh instance) or an instance (returned as is)."""
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, type) and issubclass(solver, Solver):
        raise TypeError(f"solver= got the class {solver.__name__}; pass an instance: solver={solver.__name__}()")
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)} or pass a Solver instance")
        return SOLVERS[solver]()
    raise TypeError(f"solver must be a name in {sorted(SOLVERS)} or a strategies.solvers.Solver instance, "
                    f"got {type(solver).__name__}")
