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
to be chosen by name from a config; the keyword arguments of a registered solver's constructor are
its options (:func:`make_solver`, ``solver_options=`` of the strategies, ``strategy.solver_options.<option>=``
on the command line).

**Negative losses: one rule** (:func:`check_loss_floor`). Every solver whose result depends on where
the losses' zero is measures them from a reference, 0 unless the solver is given an explicit one, and
refuses a loss below it with one message (solver, objective, ray, value, and the fixes): EPO (always
0), Chebyshev / SmoothChebyshev (their ``ideal=``, 0 by default: with an explicit ideal below the
losses, negative losses are fine), HypervolumeMaximization (0 while its ray penalty ``lam > 0`` or
its dynamic reference ``ref=None`` is in use; with ``lam=0`` and an explicit ``ref=`` any losses below
``ref`` are fine). LinearScalarization accepts any losses: a constant shift leaves its gradient
unchanged. The general fix is to shift an objective by a constant so that it is >= 0.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch

from cl_moo.moo_metrics import hypervolume, non_dominated_fronts

from ._checks import is_real
from .epo import epo_weights_batch

logger = logging.getLogger(__name__)


def point_argument(solver: str, name: str, value: Any) -> Tuple[float, ...]:
    """A finite number or a 1-D sequence of finite numbers (one per objective), as a tuple of floats;
    anything else is refused naming ``solver(name=...)`` and the expected form."""
    expected = (
        f"{solver}({name}=...) must be a number or a 1-D sequence of numbers, one per objective "
        f"(shape (m,)), e.g. {name}=0.0 or {name}=[0.0, 0.0]"
    )
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    if isinstance(value, (str, bytes, Mapping)) or isinstance(value, bool):
        raise TypeError(f"{expected}; got {value!r}")
    items: Optional[List[Any]]
    if isinstance(value, numbers.Real):
        items = [value]
    else:
        try:
            items = list(np.asarray(value, dtype=object).reshape(-1)) if np.ndim(value) <= 1 else None
        except (TypeError, ValueError):
            items = None
        if items is None or not items:
            raise TypeError(f"{expected}; got {value!r}" + (f" (shape {np.shape(value)})" if items is None else ""))
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    if bad:
        raise TypeError(f"{expected}; got {value!r} (entry {bad[0]!r} is not a number)")
    floats = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{expected}, all finite; got {value!r}")
    return floats


def check_loss_floor(
    solver: str, losses: torch.Tensor, floor: Optional[torch.Tensor] = None, *, why: str, alternative: str
) -> None:
    """The one rule for negative losses, used by every solver whose result depends on where the
    losses' zero is (all but linear scalarization, whose gradient a constant shift leaves unchanged).

    Each such solver measures the losses from a reference: ``floor`` (``(m,)``, an explicit ideal
    point) or, by default, 0. A loss below it is refused, naming the solver, the objective, the ray
    and the value, why the solver needs the bound (``why``) and the fixes: shift the objective by a
    constant so that it is >= 0, or the solver's own option (``alternative``, e.g. an explicit
    ``ideal=`` below the losses).
    """
    values = losses.detach()
    z = torch.zeros(values.shape[-1], dtype=values.dtype, device=values.device) if floor is None else floor.detach()
    below = torch.nonzero(values < z)
    if not len(below):
        return
    b, i = (int(v) for v in below[0])
    value = float(values[b, i])
    if floor is None:
        bound, needs = "0", "losses >= 0 (non-negative losses)"
    else:
        bound, needs = f"the ideal point ideal[{i}] = {float(z[i]):.4g}", "losses >= its ideal point"
    raise ValueError(
        f"{solver}: objective {i} has a loss of {value:.4g} (ray {b}), below {bound}; {solver} needs {needs}: {why} "
        f"({len(below)} such entries this step). Fix: shift objective {i} by a constant so that it is >= 0 "
        f"(l_{i} - c, with c a lower bound of it){alternative}"
    )


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

    def state_dict(self) -> Dict[str, Any]:
        """What the solver keeps across steps (counters, running estimates), for a checkpoint: plain
        values, read back by :meth:`load_state_dict`. ``{}`` for a solver without such state (the default);
        a solver with state overrides both (:class:`EPO`: its LP fallback counts)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned, so a resumed run continues as the uninterrupted one.
        The default (no state) takes only ``{}``; anything else is refused naming the keys."""
        if state:
            raise ValueError(
                f"{type(self).__name__} keeps no state across steps, but the state to load holds {sorted(state)}: "
                "was it saved with another solver? A solver with state overrides state_dict() and load_state_dict()"
            )

    def __call__(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        loss = self.get_weighted_loss(losses, rays, weights)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            got = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
            raise TypeError(
                f"{type(self).__name__}.get_weighted_loss must return a scalar tensor, got {got}: "
                "reduce over rays and objectives (e.g. (w * losses).sum(1).mean())"
            )
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
        if isinstance(eps, bool) or not is_real(eps) or not math.isfinite(eps) or eps <= 0:
            raise TypeError(f"EPO(eps=...) must be a finite number > 0 (the LP's tolerance), got {eps!r}")
        self.eps = float(eps)
        self.fallbacks = 0
        self.steps = 0

    def get_weighted_loss(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        check_loss_floor(
            "EPO",
            losses,
            why="it balances the shares r_i l_i / sum_j r_j l_j, which a negative loss turns around",
            alternative=", or use solver='ls' (unchanged by a shift)",
        )
        G = self.per_objective_gradients(losses, weights)
        grams = torch.bmm(G, G.transpose(1, 2)).detach().cpu().double().numpy()
        results = epo_weights_batch(
            losses.detach().cpu().double().numpy(), rays.detach().cpu().double().numpy(), grams, eps=self.eps
        )
        self.steps += 1
        failed = sum(r.mode == "fallback" for r in results)
        if failed:
            self.fallbacks += failed
            logger.warning(
                "EPO: the LP failed for %d of %d rays at solver step %d; used the LS weights m * r / sum(r)",
                failed,
                len(results),
                self.steps,
            )
        w = torch.as_tensor(np.stack([r.weights for r in results]), dtype=losses.dtype, device=losses.device)
        return (w * losses).sum(dim=1).mean()

    def state_dict(self) -> Dict[str, Any]:
        """``fallbacks`` (rays whose LP failed) and ``steps`` (solver calls) so far."""
        return {"fallbacks": self.fallbacks, "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`'s counts; a missing one is 0 (``{}``: a fresh solver)."""
        unknown = sorted(set(state) - {"fallbacks", "steps"})
        if unknown:
            raise ValueError(
                f"EPO's state holds fallbacks and steps, got also {unknown}: was it saved with another solver?"
            )
        self.fallbacks = int(state.get("fallbacks", 0))
        self.steps = int(state.get("steps", 0))

    def __repr__(self) -> str:
        return f"EPO(eps={self.eps})"


def _ideal(ideal: Optional[Sequence[float]], losses: torch.Tensor) -> torch.Tensor:
    """The ideal point ``z`` as a ``(m,)`` tensor like ``losses`` (0 when None)."""
    if ideal is None:
        return torch.zeros(losses.shape[1], dtype=losses.dtype, device=losses.device)
    z = torch.as_tensor(ideal, dtype=losses.dtype, device=losses.device).reshape(-1)
    if z.numel() == 1:
        z = z.expand(losses.shape[1])
    if z.numel() != losses.shape[1]:
        raise ValueError(f"ideal= has {z.numel()} entries but there are {losses.shape[1]} objectives")
    return z


def _check_ideal(solver: str, ideal: Optional[Sequence[float]]) -> Optional[Tuple[float, ...]]:
    return None if ideal is None else point_argument(solver, "ideal", ideal)


def _check_against_ideal(solver: str, ideal: Optional[Tuple[float, ...]], losses: torch.Tensor) -> torch.Tensor:
    """The ideal point ``z`` (``(m,)``), after :func:`check_loss_floor`: ``r (l - z)`` measures a
    loss's distance from a lower bound, so every loss must be >= z (z = 0 when ``ideal`` is None)."""
    z = _ideal(ideal, losses)
    check_loss_floor(
        solver,
        losses,
        None if ideal is None else z,
        why="it scores r_i (l_i - z_i), the distance from a lower bound z of the losses, and a loss "
        "below z turns its term around",
        alternative=", or pass an ideal= at or below the smallest losses (e.g. ideal=[-1.0, -1.0] for losses >= -1)",
    )
    return z


class Chebyshev(Solver):
    r"""PHN-TCH: weighted Tchebycheff scalarization, batched over the rays,

    .. math:: \mathcal{L} = \frac{1}{B} \sum_b \max_i \; r_{bi} \, (l_{bi} - z_i)

    with ``z`` the ideal point (``ideal=``: a number or ``(m,)``; default 0, a lower bound of non-negative
    losses). Every loss must be >= ``z`` (a loss below it is refused, see the module docstring), so for
    objectives that can be negative pass an explicit ideal below them.

    **Convention.** As in :class:`LinearScalarization` (``sum_i r_i l_i``), a large ``r_i`` makes
    objective i expensive, so the ray's solution is small in ``l_i``. The minimiser on a connected
    front equalises ``r_i (l_i - z_i)`` across objectives, i.e. ``l - z`` points along ``1/r``:
    the same exact-Pareto target as :class:`EPO` (``r_i l_i`` constant) and the score of
    ``benchmarks/experiments/toy_lin2019.py`` (angle between ``l`` and ``1/r``). Unlike LS, TCH reaches every
    Pareto optimal point, on concave fronts too. The gradient flows only through the objective that
    attains the max (the subgradient of ``max``); ties split it as ``torch.amax`` does.
    """

    def __init__(self, *, ideal: Optional[Sequence[float]] = None) -> None:
        self.ideal = _check_ideal("Chebyshev", ideal)

    def get_weighted_loss(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        z = _check_against_ideal("Chebyshev", self.ideal, losses)
        return torch.amax(rays.to(losses.dtype) * (losses - z), dim=1).mean()

    def __repr__(self) -> str:
        return f"Chebyshev(ideal={self.ideal})"


class SmoothChebyshev(Solver):
    r"""PHN-STCH: smooth Tchebycheff scalarization (Lin et al., ICML 2024, Eq. 5), batched over rays,

    .. math:: \mathcal{L} = \frac{1}{B} \sum_b \mu \log \sum_i \exp\!\Big(\frac{r_{bi} (l_{bi} - z_i)}{\mu}\Big)

    Same ray convention as :class:`Chebyshev` (the minimiser has ``l - z`` along ``1/r`` as
    ``mu -> 0``). The smoothing bounds the gap to TCH:
    ``max_i r_i (l_i - z_i) <= STCH <= max_i r_i (l_i - z_i) + mu log m``; as ``mu -> 0`` it is TCH
    (gradient on the argmax objective), and as ``mu`` grows its gradient weights
    ``softmax(r (l - z) / mu) * r`` tend to ``r / m``, i.e. linear scalarization (LS / m).

    ``mu`` (default ``0.01``) is in the units of ``r_i l_i``; 0.01 is the value of the authors'
    Pareto set learning code (``STCH_PSL/run_stch_psl.py``, the hypernetwork setting of this
    strategy), there on objectives normalised to [0, 1] by the ideal and nadir points. For losses of
    a much larger or smaller scale, scale ``mu`` with them. ``ideal=``: the ideal point ``z``
    (default 0).
    """

    def __init__(self, *, mu: float = 0.01, ideal: Optional[Sequence[float]] = None) -> None:
        if isinstance(mu, bool) or not is_real(mu) or not math.isfinite(mu) or mu <= 0:
            raise ValueError(f"the STCH smoothing mu must be a finite number > 0, got {mu!r}")
        self.mu = float(mu)
        self.ideal = _check_ideal("SmoothChebyshev", ideal)

    def get_weighted_loss(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        z = _check_against_ideal("SmoothChebyshev", self.ideal, losses)
        scaled = rays.to(losses.dtype) * (losses - z) / self.mu
        return (self.mu * torch.logsumexp(scaled, dim=1)).mean()

    def __repr__(self) -> str:
        return f"SmoothChebyshev(mu={self.mu}, ideal={self.ideal})"


# ---------------------------------------------------------------- hypervolume and its gradient
def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of ``points`` up to ``ref`` (pymoo's, through :func:`cl_moo.moo_metrics.hypervolume`);
    0 for no points."""
    return hypervolume(points, ref) if len(points) else 0.0


def hypervolume_gradient(points: np.ndarray, ref: Union[Sequence[float], np.ndarray]) -> np.ndarray:
    """``dHV/dpoints`` (n, d) of the hypervolume of a set of mutually non-dominated points.

    ``dHV/dp_j = -(the (d-1)-dim measure of the face of p's box at y_j = p_j that no other point
    covers)`` = ``-(HV_{d-1}(Q + {p_-j}) - HV_{d-1}(Q))`` with ``Q`` the other points strictly better
    than ``p`` in objective j, projected onto the other objectives (``_-j``). In 2D this is the
    staircase formula (sorted by l_1: ``dHV/dx_k = -(y_{k-1} - y_k)``, ``dHV/dy_k = -(x_{k+1} - x_k)``,
    with ``y_0 = ref_2``, ``x_{n+1} = ref_1``). Of exact duplicates, only the first gets the gradient
    (the others' faces are covered), so the duplicates' total is the gradient of the set.
    Exact for any d (the HV of the d-1 projection is computed exactly).
    """
    pts = np.asarray(points, dtype=np.float64)
    ref_arr = np.asarray(ref, dtype=np.float64)
    n, d = pts.shape
    grad = np.zeros((n, d))
    for a in range(n):
        for j in range(d):
            others = [
                b for b in range(n) if b != a and (pts[b, j] < pts[a, j] or (b < a and np.array_equal(pts[b], pts[a])))
            ]
            rest = np.delete(np.arange(d), j)
            q = pts[others][:, rest] if others else np.zeros((0, d - 1))
            p = pts[a, rest][None, :]
            face = _hv(np.vstack([q, p]), ref_arr[rest]) - _hv(q, ref_arr[rest])
            grad[a, j] = -face
    return grad


class HypervolumeMaximization(Solver):
    r"""PHN-HVI (Hoang et al., AAAI 2023): maximise the hypervolume of the step's B solutions.

    The B weight sets of a step, generated for B rays, give B loss vectors: a set whose hypervolume
    (up to a reference point ``ref``) is to be maximised, plus the paper's penalty that keeps each
    solution on its own ray. The returned scalar is

    .. math:: \mathcal{L} = \sum_b \Big( w_b \cdot l_b \;-\; \lambda \cos(l_b, 1/r_b) \Big),
              \qquad w_b = -\frac{\partial HV}{\partial l_b} \;(\text{detached}, \geq 0)

    so ``d L / d l_b = -dHV/dl_b - lam dcos/dl_b`` and gradient descent ascends the hypervolume
    (HV itself has no autograd path here; the exact gradient is computed in numpy,
    :func:`hypervolume_gradient`, any number of objectives).

    * **Dominated solutions** have no HV gradient; as in the authors' code (the HV-maximisation
      weights of Deist et al. 2021 / Wang et al. 2017) the B points are split into non-dominated
      fronts and each front gets the HV gradient of that front alone, so dominated points move too.
    * ``normalize`` (default False): with False, ``w`` is the exact HV gradient, so with ``lam=0``
      ``d L / d losses`` is exactly ``-dHV/d losses`` (of each front). ``normalize=True`` is the
      authors' code: each solution's ``w_b`` is scaled to unit norm, so every ray gets the same
      step size whatever its share of the front.
    * **Penalty** (``lam``, default 10): the paper's cosine similarity between the loss vector and
      the ray, written in this codebase's ray convention (that of :class:`LinearScalarization`,
      :class:`EPO`, :class:`Chebyshev`: a ray's exact Pareto point has ``l`` along ``1/r``), i.e.
      ``cos(l_b, 1/r_b)``. It is what ties a ray to its point: the HV of a step's set does not
      depend on which ray produced which point, and with rays drawn at random each step
      (``DirichletRays``) HV ascent alone (``lam=0``) spreads each step's set but leaves the
      ray-to-point map arbitrary (on the two-quadratics problem the 25 evaluation rays then land in
      a clump: HV 0.79 against the exact 7.14). ``lam=10`` was chosen on the two-quadratics and
      Lin et al. toy problems (``tests/test_front_solvers.py``): with ``lam=1`` the front is
      squeezed towards its middle (HV 4.7 % below exact), with 10 it is within 1 %.
    * **Reference point** ``ref``: a number or ``(m,)``. Every loss must be strictly below it, else
      ``ValueError`` (a point outside the reference box has no HV and no gradient).
      ``ref=None`` (default, for configs) uses a dynamic one per step, as the authors' code does:
      ``max(1.1 * max_b l_b, 1e-8)`` per objective.
    * Needs ``rays_per_step >= 2`` (a set of one point has no front to spread); raises ``ValueError``
      otherwise. Losses must be >= 0 while ``lam > 0`` (the cosine to ``1/r``) or ``ref=None``; with
      ``lam=0`` and an explicit ``ref`` any losses below ``ref`` are accepted (module docstring).
    """

    def __init__(
        self, *, ref: Optional[Union[float, Sequence[float]]] = None, lam: float = 10.0, normalize: bool = False
    ) -> None:
        if ref is not None:
            ref = point_argument("HypervolumeMaximization", "ref", ref)
        if isinstance(lam, bool) or not is_real(lam) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"the penalty weight lam must be a finite number >= 0, got {lam!r}")
        self.ref = ref
        self.lam = float(lam)
        self.normalize = bool(normalize)
        self.last_hv = float("nan")  # HV of the last step's first front (its reference point)

    def reference_point(self, losses: np.ndarray) -> np.ndarray:
        """The reference point for a step's ``losses`` (B, m); raises if a loss is not below it."""
        m = losses.shape[1]
        if self.ref is None:
            return np.maximum(1.1 * losses.max(axis=0), 1e-8)
        ref = np.asarray(self.ref if len(self.ref) > 1 else self.ref * m, dtype=np.float64)
        if len(ref) != m:
            raise ValueError(f"ref= has {len(ref)} entries but there are {m} objectives")
        above = np.argwhere(losses >= ref)
        if len(above):
            b, i = above[0]
            raise ValueError(
                f"HVI: loss {i} of ray {b} is {losses[b, i]:.4g}, "
                f"not below the reference point ref[{i}] = {ref[i]:.4g} "
                f"({len(above)} such entries this step): a point outside the reference box has no hypervolume "
                "gradient; raise ref above the largest loss you expect (e.g. the losses at initialisation), "
                "or pass ref=None for a dynamic reference point (1.1 x the step's largest losses)"
            )
        return ref

    def hv_weights(self, losses: np.ndarray) -> np.ndarray:
        """``w`` (B, m) = ``-dHV/d losses`` per non-dominated front (normalised if ``normalize``)."""
        ref = self.reference_point(losses)
        fronts = non_dominated_fronts(losses)
        w = np.zeros_like(losses)
        for k in range(fronts.max() + 1):
            idx = np.flatnonzero(fronts == k)
            w[idx] = -hypervolume_gradient(losses[idx], ref)
        self.last_hv = _hv(losses[fronts == 0], ref)
        if self.normalize:
            norms = np.linalg.norm(w, axis=1, keepdims=True)
            w = np.where(norms > 0, w / np.where(norms > 0, norms, 1.0), w)
        return w

    def state_dict(self) -> Dict[str, Any]:
        """``last_hv``: the hypervolume of the last step's first front."""
        return {"last_hv": self.last_hv}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = sorted(set(state) - {"last_hv"})
        if unknown:
            raise ValueError(f"HVI's state holds last_hv, got also {unknown}: was it saved with another solver?")
        self.last_hv = float(state.get("last_hv", float("nan")))

    def get_weighted_loss(self, losses: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if losses.shape[0] < 2:
            raise ValueError(
                "HVI maximises the hypervolume of the loss vectors of one step's rays, which needs at least 2 of "
                f"them; got rays_per_step={losses.shape[0]}: use rays_per_step >= 2 (the paper samples several, "
                "e.g. 8 or 16)"
            )
        values = losses.detach().cpu().double().numpy()
        if not np.isfinite(values).all():
            raise ValueError("HVI got non-finite losses")
        if self.lam > 0 or self.ref is None:
            check_loss_floor(
                "HypervolumeMaximization",
                losses,
                why=" and ".join(
                    (
                        [f"its ray penalty (lam={self.lam:g}) compares loss vectors with the direction 1/r"]
                        if self.lam > 0
                        else []
                    )
                    + (
                        [
                            "its default reference point (ref=None, 1.1 x the step's largest losses) lies above "
                            "the losses only when they are >= 0"
                        ]
                        if self.ref is None
                        else []
                    )
                ),
                alternative=", or use lam=0 (hypervolume only, unchanged by a shift) with an explicit ref= above "
                "the losses",
            )
        w = torch.as_tensor(self.hv_weights(values), dtype=losses.dtype, device=losses.device)
        loss = (w * losses).sum()
        if self.lam > 0:
            r = rays.to(losses.dtype).clamp_min(1e-12)
            target = r.min(dim=1, keepdim=True).values / r  # along 1/r, entries in (0, 1]
            cos = torch.nn.functional.cosine_similarity(losses, target, dim=1, eps=1e-12)
            loss = loss - self.lam * cos.sum()
        return loss

    def __repr__(self) -> str:
        return f"HypervolumeMaximization(ref={self.ref}, lam={self.lam}, normalize={self.normalize})"


SOLVERS: Dict[str, Type[Solver]] = {
    "ls": LinearScalarization,
    "epo": EPO,
    "tch": Chebyshev,
    "stch": SmoothChebyshev,
    "hvi": HypervolumeMaximization,
}


def solver_options(name: str) -> Tuple[str, ...]:
    """The options (keyword arguments of the constructor) of the solver registered as ``name`` in
    :data:`SOLVERS`, in signature order; e.g. ``solver_options("stch") == ("mu", "ideal")``."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(SOLVERS)}")
    params = inspect.signature(SOLVERS[name]).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds)


def _takes_any_option(name: str) -> bool:
    """Whether the solver's constructor has ``**kwargs`` (then every option name is passed on)."""
    params = inspect.signature(SOLVERS[name]).parameters.values()
    return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)


def make_solver(solver: Union[str, Solver, type], /, **options: Any) -> Solver:
    """A solver from a name in :data:`SOLVERS` (a fresh instance, built with ``options``: the keyword
    arguments of its constructor, e.g. ``make_solver("stch", mu=0.5)``), or an instance (returned as
    is; configure it when you make it). An option the solver does not take is refused with a
    ``TypeError`` naming the solver and its options (:func:`solver_options`)."""
    if isinstance(solver, Solver):
        if options:
            raise TypeError(
                f"solver options {sorted(options)} apply to a solver chosen by name; {solver!r} is an instance "
                "already: pass them to its constructor"
            )
        return solver
    if isinstance(solver, type) and issubclass(solver, Solver):
        raise TypeError(f"solver= got the class {solver.__name__}; pass an instance: solver={solver.__name__}()")
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)} or pass a Solver instance")
        accepted = solver_options(solver)
        unknown = [k for k in options if k not in accepted]
        if unknown and not _takes_any_option(solver):
            close = difflib.get_close_matches(unknown[0], accepted, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"solver {solver!r} ({SOLVERS[solver].__name__}) has no option "
                f"{', '.join(repr(k) for k in unknown)}{hint}; its options: "
                f"{', '.join(accepted) if accepted else 'none (it takes no options)'}"
            )
        return SOLVERS[solver](**options)
    raise TypeError(
        f"solver must be a name in {sorted(SOLVERS)} or a strategies.solvers.Solver instance, "
        f"got {type(solver).__name__}"
    )
