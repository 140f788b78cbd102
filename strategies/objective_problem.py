"""Objective-only (pymoo-style) problems for Pareto HyperNetworks: ``f(x) -> (m,)`` over a box.

A problem without data is a function of a decision vector ``x`` in ``R^n_var`` (pymoo's view):
:class:`ObjectiveProblem` holds ``f`` (batched: ``(n, n_var) -> (n, n_obj)``, torch operations so that
gradients flow), the bounds (a box, one-sided, or none) and, when known, the Pareto front.
:meth:`ObjectiveProblem.from_pymoo` takes a pymoo ``Problem`` (its ``n_var``, ``n_obj``, ``xl``, ``xu`` and
``pareto_front()``) with its objectives in torch: given as ``f=``, built in for ZDT1/2/3 and DTLZ2
(:mod:`strategies.torch_problems`), or the problem's own ``_evaluate`` when it is written in torch.

:class:`ObjectiveProblemStrategy` is a :class:`~strategies.phn.ParetoHypernetworkStrategy` (same training
loop, rays, solvers, plugins; ``objective_only``) whose hypernetwork generates an unconstrained ``z`` that
:meth:`ObjectiveProblem.to_box` maps into the bounds (``lower + (upper - lower) * sigmoid(z)``; a
softplus for one-sided bounds; ``z`` itself when unbounded); ``f`` is evaluated once per step for all
rays. :func:`train_on_problem` builds and trains one; :func:`evaluate_front` scores the generated front
against the known one with IGD (``pymoo.indicators.igd.IGD``) and hypervolume (:func:`cl_moo.hypervolume`).

Linear scalarization (``solver="ls"``) reaches only the convex hull of a front: on a concave front
(ZDT2, DTLZ2) it finds the end points only; use ``"epo"``, ``"tch"`` or ``"stch"`` there.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from pymoo.indicators.igd import IGD
from pymoo.util.ref_dirs import get_reference_directions
from torch import nn
from torch.func import vmap

from cl_moo.hnet_options import HypernetworkOptions
from cl_moo.moo_metrics import check_rays, hypervolume

from ._checks import is_integral
from .phn import ParetoHypernetworkStrategy
from .solvers import SOLVERS, Solver

Objectives = Callable[[torch.Tensor], torch.Tensor]
Bound = Union[None, float, Sequence[float], np.ndarray, torch.Tensor]

__all__ = [
    "ObjectiveProblem",
    "ObjectiveProblemError",
    "ObjectiveProblemStrategy",
    "evaluate_front",
    "front_rays",
    "train_on_problem",
]


class ObjectiveProblemError(ValueError):
    """An objective problem is ill-defined: bad bounds, or ``f`` returned the wrong shape or NaN/inf."""


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ObjectiveProblemError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _bound(value: Bound, n_var: int, name: str, default: float) -> np.ndarray:
    if value is None:
        return np.full(n_var, default)
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ObjectiveProblemError(
            f"{name} must be None, a number or {n_var} numbers (one per variable), got {value!r}"
        ) from None
    if arr.ndim == 0:
        arr = np.full(n_var, float(arr))
    if arr.shape != (n_var,):
        raise ObjectiveProblemError(
            f"{name} has shape {arr.shape}; it must be a number or have shape (n_var,) = ({n_var},)"
        )
    if np.isnan(arr).any():
        raise ObjectiveProblemError(
            f"{name}[{int(np.flatnonzero(np.isnan(arr))[0])}] is NaN; use -inf / inf (or None) for an unbounded side"
        )
    return arr


class ObjectiveProblem:
    """``n_obj`` objectives of ``x`` in ``R^n_var`` (all minimised), ``f(x) -> (n, n_obj)`` for ``x`` ``(n, n_var)``.

    * ``f``: torch operations (gradients must reach ``x``). ``batched=False``: ``f`` takes one ``x``
      ``(n_var,)`` and returns ``(n_obj,)``; it is vectorised with ``torch.func.vmap``.
    * ``lower`` / ``upper``: None (unbounded), a number, or ``n_var`` numbers; ``-inf`` / ``inf`` leave a side
      open. ``lower < upper`` in every coordinate.
    * ``pareto_front``: the known front ``(K, n_obj)`` (array, or a callable returning it, e.g. pymoo's
      ``problem.pareto_front``), for :func:`evaluate_front`; None when unknown.

    :meth:`evaluate` checks what ``f`` returns (a tensor of shape ``(n, n_obj)``, finite, connected to
    ``x``'s graph) and raises :class:`ObjectiveProblemError` naming the problem and the fix.
    """

    def __init__(
        self,
        f: Objectives,
        n_var: int,
        n_obj: int,
        lower: Bound = None,
        upper: Bound = None,
        pareto_front: Union[None, np.ndarray, Callable[[], Any]] = None,
        *,
        batched: bool = True,
        name: Optional[str] = None,
    ) -> None:
        if not callable(f):
            raise TypeError(f"f must be a callable x (n, n_var) -> (n, n_obj), got {type(f).__name__}")
        self.f = f
        self.n_var = _count(n_var, "n_var", 1)
        self.n_obj = _count(n_obj, "n_obj", 2)
        self.batched = bool(batched)
        self.name = name or getattr(f, "__name__", None) or type(f).__name__
        self.lower = _bound(lower, self.n_var, "lower", -np.inf)
        self.upper = _bound(upper, self.n_var, "upper", np.inf)
        bad = np.flatnonzero(~(self.lower < self.upper))
        if len(bad):
            i = int(bad[0])
            raise ObjectiveProblemError(
                f"{self.name}: lower[{i}] = {self.lower[i]:g} is not below upper[{i}] = "
                f"{self.upper[i]:g} ({len(bad)} such coordinates); every variable needs "
                "lower < upper (fix a variable by leaving it out of x)"
            )
        self._front = pareto_front
        self._front_cache: Optional[np.ndarray] = None
        self.front_note: Optional[str] = None

    # ------------------------------------------------------------------ pymoo
    @classmethod
    def from_pymoo(
        cls,
        problem: Any,
        f: Optional[Objectives] = None,
        *,
        batched: bool = True,
        pareto_front: Union[str, None, np.ndarray, Callable[[], Any]] = "pymoo",
    ) -> "ObjectiveProblem":
        """The objective problem of a pymoo ``Problem``: its ``n_var``, ``n_obj``, bounds ``xl`` / ``xu``, and
        ``pareto_front()`` (``pareto_front="pymoo"``; or give one, or None).

        The objectives in torch, in this order: ``f=`` (batched ``(n, n_var) -> (n, n_obj)``); the built-in
        torch version of a pymoo ZDT1/2/3 or DTLZ2 (:mod:`strategies.torch_problems`); the problem's own
        ``_evaluate(x, out)`` when it computes ``out["F"]`` with torch operations. A problem with none of
        these (pymoo's own problems compute in numpy), or with constraints, is refused.
        """
        from pymoo.core.problem import Problem

        from .torch_problems import TORCH_VERSIONS, torch_version

        if not isinstance(problem, Problem):
            raise TypeError(
                f"from_pymoo takes a pymoo.core.problem.Problem, got {type(problem).__name__}; for a "
                "plain torch function use ObjectiveProblem(f, n_var, n_obj, lower, upper)"
            )
        label = type(problem).__name__
        if problem.n_constr > 0:
            raise ObjectiveProblemError(
                f"pymoo problem {label} has {problem.n_constr} constraints; an objective "
                "problem handles box bounds only (add a penalty to the objectives, or "
                "reparametrize x so that the constraints always hold)"
            )
        if f is None:  # both of these are batched
            batched = True
            f = torch_version(problem)
            if f is None:
                f = _pymoo_torch_evaluate(problem, label, sorted(k.rsplit(".", 1)[1] for k in TORCH_VERSIONS))
        front: Union[None, np.ndarray, Callable[[], Any]]
        if isinstance(pareto_front, str):
            if pareto_front != "pymoo":
                raise ValueError(f"pareto_front must be 'pymoo', None, an array or a callable, got {pareto_front!r}")
            front = problem.pareto_front
        else:
            front = pareto_front
        return cls(f, problem.n_var, problem.n_obj, problem.xl, problem.xu, front, batched=batched, name=label)

    # ------------------------------------------------------------------ evaluation
    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        """``f`` on ``(n, n_var)`` without checks (usable under ``vmap``)."""
        return self.f(x) if self.batched else vmap(self.f)(x)

    def evaluate(self, x: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
        """Objectives ``(n, n_obj)`` of ``x`` ``(n, n_var)`` (``(n_obj,)`` for one ``x`` ``(n_var,)``), checked."""
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        single = x.dim() == 1
        xb = x.unsqueeze(0) if single else x
        if xb.dim() != 2 or xb.shape[1] != self.n_var:
            raise ObjectiveProblemError(
                f"{self.name}: x has shape {tuple(x.shape)}; it must be (n, n_var) = "
                f"(n, {self.n_var}) or one point ({self.n_var},)"
            )
        values = self._raw(xb)
        self._check(xb, values)
        return values[0] if single else values

    def _check(self, x: torch.Tensor, values: Any) -> None:
        n = x.shape[0]
        what = f"f(x) for x of shape {tuple(x.shape)}" if self.batched else f"f(x) for one x of shape ({self.n_var},)"
        if not torch.is_tensor(values):
            raise ObjectiveProblemError(
                f"{self.name}: {what} returned a {type(values).__name__}, not a torch tensor: "
                "write f with torch operations (numpy breaks the gradient to x)"
            )
        expected = (n, self.n_obj)
        if tuple(values.shape) != expected:
            got = tuple(values.shape) if self.batched else tuple(values.shape[1:])
            hint = ""
            if self.batched and tuple(values.shape) == (self.n_obj,):
                hint = (
                    "; f seems to evaluate one point: pass batched=False, or make it batched (x[:, i] instead of x[i])"
                )
            elif self.batched and tuple(values.shape) == (self.n_obj, n):
                hint = "; stack the objectives along dim 1: torch.stack([f1, f2, ...], dim=1)"
            elif self.batched and values.dim() == 1 and values.shape[0] == n:
                hint = "; f returned one objective per point: return all n_obj objectives, (n, n_obj)"
            raise ObjectiveProblemError(
                f"{self.name}: {what} returned shape {got}; it must return "
                f"{expected if self.batched else (self.n_obj,)} (n_obj = {self.n_obj} "
                f"objectives per point){hint}"
            )
        finite = torch.isfinite(values.detach())
        if not finite.all():
            row, col = (int(v) for v in torch.nonzero(~finite)[0])
            point = x[row].detach().cpu().numpy()
            raise ObjectiveProblemError(
                f"{self.name}: f returned {float(values.detach()[row, col])} for objective {col} at "
                f"x = {np.array2string(point, precision=4, threshold=8)} (row {row}; "
                f"{int((~finite).sum())} non-finite values): make f finite on the whole box "
                f"[lower, upper] (e.g. guard sqrt/log at 0)"
            )
        if torch.is_grad_enabled() and x.requires_grad and not values.requires_grad:
            raise ObjectiveProblemError(
                f"{self.name}: f's output does not depend on x through torch operations "
                "(no gradient reaches x): write f with torch operations, not numpy or .item()"
            )

    # ------------------------------------------------------------------ bounds
    @property
    def bounded(self) -> bool:
        """True when every variable has finite lower and upper bounds (a box)."""
        return bool(np.isfinite(self.lower).all() and np.isfinite(self.upper).all())

    def to_box(self, z: torch.Tensor) -> torch.Tensor:
        """Maps unconstrained ``z`` ``(..., n_var)`` into the bounds, per coordinate: both finite:
        ``lower + (upper - lower) * sigmoid(z)``; lower only: ``lower + softplus(z)``; upper only:
        ``upper - softplus(-z)``; none: ``z``."""
        kw: Dict[str, Any] = dict(dtype=z.dtype, device=z.device)
        lo_fin, up_fin = np.isfinite(self.lower), np.isfinite(self.upper)
        lo = torch.as_tensor(np.where(lo_fin, self.lower, 0.0), **kw)
        up = torch.as_tensor(np.where(up_fin, self.upper, 0.0), **kw)
        lo_m, up_m = torch.as_tensor(lo_fin, device=z.device), torch.as_tensor(up_fin, device=z.device)
        box = lo + (up - lo) * torch.sigmoid(z)
        return torch.where(
            lo_m & up_m, box, torch.where(lo_m, lo + F.softplus(z), torch.where(up_m, up - F.softplus(-z), z))
        )

    # ------------------------------------------------------------------ front
    def known_front(self) -> Optional[np.ndarray]:
        """The known Pareto front ``(K, n_obj)`` (float64), or None (then :attr:`front_note` says why)."""
        if self._front_cache is not None or self._front is None:
            return self._front_cache
        front = self._front
        if callable(front):
            try:
                front = front()
            except Exception as e:  # pymoo raises a bare Exception for e.g. DTLZ fronts with > 3 objectives
                self.front_note = f"{self.name}: computing the Pareto front failed ({type(e).__name__}: {e})"
                self._front = None
                return None
        if front is None:
            self.front_note = f"{self.name}: the problem has no known Pareto front"
            self._front = None
            return None
        arr = np.asarray(front, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_obj or not len(arr) or not np.isfinite(arr).all():
            raise ObjectiveProblemError(
                f"{self.name}: the Pareto front must be a finite (K, n_obj) = (K, "
                f"{self.n_obj}) array with K >= 1, got shape {arr.shape}"
            )
        self._front_cache = arr
        return arr

    def objective_losses(self) -> List[Callable[[Dict[str, torch.Tensor]], torch.Tensor]]:
        """One loss per objective in the form ``ParetoHypernetworkStrategy(objective_only=True)`` calls
        (``loss({"z": z})`` for one generated ``z``); each evaluates all of ``f`` (the
        :class:`ObjectiveProblemStrategy` evaluates ``f`` once per step instead)."""

        def column(i: int) -> Callable[[Dict[str, torch.Tensor]], torch.Tensor]:
            def loss(weights: Dict[str, torch.Tensor]) -> torch.Tensor:
                return self._raw(self.to_box(weights["z"]).unsqueeze(0))[0, i]

            loss.__name__ = f"{self.name}_f{i}"
            return loss

        return [column(i) for i in range(self.n_obj)]

    def __repr__(self) -> str:
        box = (
            "box"
            if self.bounded
            else ("unbounded" if np.isinf(self.lower).all() and np.isinf(self.upper).all() else "partly bounded")
        )
        return f"ObjectiveProblem({self.name}, n_var={self.n_var}, n_obj={self.n_obj}, {box})"


def _pymoo_torch_evaluate(problem: Any, label: str, known: List[str]) -> Objectives:
    """``problem._evaluate`` as a torch function, if it computes ``out["F"]`` with torch operations."""

    def f(x: torch.Tensor) -> Any:  # whatever _evaluate put in out["F"] (checked below)
        out: Dict[str, Any] = {}
        problem._evaluate(x, out)
        return out.get("F")

    lo = np.where(np.isfinite(problem.xl), problem.xl, 0.0) if problem.xl is not None else np.zeros(problem.n_var)
    hi = np.where(np.isfinite(problem.xu), problem.xu, lo + 1.0) if problem.xu is not None else lo + 1.0
    probe = torch.tensor(
        np.stack([lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)]), dtype=torch.float32, requires_grad=True
    )
    why = None
    try:
        value = f(probe)
    except Exception as e:  # numpy code on a tensor: TypeError, RuntimeError ("Can't call numpy() ..."), ...
        why = f"called with a torch tensor, its _evaluate raised {type(e).__name__}: {e}"
    else:
        if not torch.is_tensor(value):
            why = f"its _evaluate set out['F'] to a {type(value).__name__}, not a torch tensor"
        elif not value.requires_grad:
            why = "its _evaluate returned a tensor with no gradient to x"
    if why is not None:
        raise ObjectiveProblemError(
            f"pymoo problem {label} has no torch version of its objectives ({why}), so no gradient can reach the "
            f"hypernetwork. Pass them as a torch function: ObjectiveProblem.from_pymoo(problem, f=my_f) with "
            f"my_f(x) (n, n_var) -> (n, n_obj), or write its _evaluate with torch operations. Built-in torch "
            f"versions: {', '.join(known)} (strategies.torch_problems)"
        )
    return f


class _Decision(nn.Module):
    """The 'target network': one unconstrained vector ``z`` (n_var,) that the hypernetwork generates."""

    def __init__(self, n_var: int) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.zeros(n_var))


class ObjectiveProblemStrategy(ParetoHypernetworkStrategy):
    """PHN on an :class:`ObjectiveProblem`: the hypernetwork maps a ray to ``z`` and the solution is
    ``x = problem.to_box(z)``. Train with ``train(steps=N)``; ``eval(rays=...)`` gives the objectives
    ``(K, n_obj)``, :meth:`solutions` the ``x``.

    Args:
        problem: the problem (its objectives ``f``, variables and bounds).
        **kwargs: every keyword of :class:`~strategies.phn.ParetoHypernetworkStrategy` (``solver``,
            ``rays_per_step``, ``alpha``, ``lr``, ``hnet_options``, ``seed``, ``train_steps``, ``plugins``, ...)
            except ``target``, ``losses`` and ``objective_only``, which the problem defines. A
            ``target_gain`` left unset in ``hnet_options`` is 1 (``z`` is no ReLU layer's input).
    """

    def __init__(self, problem: ObjectiveProblem, **kwargs: Any) -> None:
        if not isinstance(problem, ObjectiveProblem):
            raise TypeError(
                f"problem must be an ObjectiveProblem (ObjectiveProblem(f, n_var, n_obj, ...) or "
                f"ObjectiveProblem.from_pymoo(pymoo_problem)), got {type(problem).__name__}"
            )
        taken = sorted({"target", "losses", "objective_only"} & set(kwargs))
        if taken:
            raise TypeError(f"ObjectiveProblemStrategy sets {taken} from the problem; leave them out")
        if kwargs.get("hnet") is None:
            options = kwargs.get("hnet_options") or HypernetworkOptions()
            if options.target_gain is None:
                options = dataclasses.replace(options, target_gain=1.0)
            kwargs["hnet_options"] = options
        self.problem = problem
        super().__init__(
            target=_Decision(problem.n_var), losses=problem.objective_losses(), objective_only=True, **kwargs
        )

    def objective_values(
        self, weights: List[torch.Tensor], batch: Optional[Sequence[torch.Tensor]] = None
    ) -> torch.Tensor:
        """``f`` of the B generated solutions at once: ``(B, n_obj)`` (``(1, n_obj)`` for one unbatched set)."""
        if batch is not None:
            raise ValueError("an objective problem has no data: call train(steps=N) / eval(rays=...) without data")
        z = weights[0]
        return self.problem.evaluate(self.problem.to_box(z.unsqueeze(0) if z.dim() == 1 else z))

    @torch.no_grad()
    def solutions(self, rays: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
        """The generated ``x`` ``(K, n_var)`` for rays ``(K, n_obj)``, inside the bounds."""
        self.hnet.eval()
        try:
            z = self.weights_for(rays)[0]
        finally:
            self.hnet.train()
        return self.problem.to_box(z).cpu().numpy()


# Avalanche wraps every template's __init__ to steer callers towards keyword-only arguments (warning on
# each positional one); ``problem`` is this strategy's one positional argument, so that wrapper is undone
# (the keywords are still checked by ParetoHypernetworkStrategy's own wrapped __init__).
setattr(ObjectiveProblemStrategy, "__init__", ObjectiveProblemStrategy.__init__.__wrapped__)  # type: ignore[attr-defined]  # noqa: B010,E501


def train_on_problem(
    problem: Any,
    *,
    steps: int = 1000,
    solver: Any = "epo",
    rays_per_step: int = 16,
    alpha: float = 1.0,
    lr: float = 1e-3,
    hidden: Sequence[int] = (100, 100),
    hnet_options: Optional[HypernetworkOptions] = None,
    seed: Optional[int] = 0,
    f: Optional[Objectives] = None,
    **kwargs: Any,
) -> ObjectiveProblemStrategy:
    """Builds an :class:`ObjectiveProblemStrategy` for ``problem`` (an :class:`ObjectiveProblem`, or a pymoo
    ``Problem`` given to :meth:`ObjectiveProblem.from_pymoo` with ``f``) and trains it for ``steps`` steps.

    Defaults: PHN-EPO (reaches concave fronts; ``"ls"`` does not), 16 rays per step from ``Dirichlet(1)``
    (uniform on the simplex, so the whole front is trained), a (100, 100) ReLU hypernetwork, Adam at 1e-3.
    ``hidden``: the hypernetwork's hidden widths unless ``hnet_options`` sets them; ``hnet_options``: the
    other build options (:class:`cl_moo.HypernetworkOptions`). Other keywords go to
    :class:`ObjectiveProblemStrategy`. Returns the trained strategy.
    """
    if not isinstance(problem, ObjectiveProblem):
        problem = ObjectiveProblem.from_pymoo(problem, f)
    elif f is not None:
        raise TypeError("f= is for a pymoo problem; an ObjectiveProblem already has its f")
    solver = _with_known_ideal(solver, problem)
    options = hnet_options or HypernetworkOptions()
    strategy = ObjectiveProblemStrategy(
        problem,
        solver=solver,
        rays_per_step=rays_per_step,
        alpha=alpha,
        lr=lr,
        hnet_options=dataclasses.replace(options, hidden=tuple(hidden)) if options.hidden is None else options,
        seed=seed,
        **kwargs,
    )
    strategy.train(steps=steps)
    return strategy


def _with_known_ideal(solver: Any, problem: ObjectiveProblem) -> Any:
    """``"tch"``/``"stch"`` on a problem whose known front goes below 0 (ZDT3): the solver with the front's
    minimum as its ideal point (the utopia point Chebyshev scalarization is defined against), since the
    default ideal 0 is then no lower bound and the solvers refuse such losses."""
    if not (isinstance(solver, str) and solver in ("tch", "stch")):
        return solver
    front = problem.known_front()
    if front is None or float(np.min(front)) >= 0:
        return solver
    make: Callable[..., Solver] = SOLVERS[solver]  # Chebyshev or SmoothChebyshev: both take ideal=
    return make(ideal=[float(v) for v in np.min(front, axis=0)])


def front_rays(m: int, k: int = 100) -> np.ndarray:
    """At least ``k`` rays spread evenly over the whole simplex, corners included (Das-Dennis; for m = 2,
    ``k`` evenly spaced rays from ``(0, 1)`` to ``(1, 0)``): for scoring a whole front, unlike PHN's
    evaluation rays, which stay away from the corners."""
    if isinstance(k, bool) or not is_integral(k) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    partitions = 1
    while len(get_reference_directions("das-dennis", m, n_partitions=partitions)) < k:
        partitions += 1
    return get_reference_directions("das-dennis", m, n_partitions=partitions)


def evaluate_front(
    strategy: ObjectiveProblemStrategy,
    problem: Optional[ObjectiveProblem] = None,
    *,
    rays: Optional[Union[np.ndarray, torch.Tensor]] = None,
    k: int = 100,
    ref_point: Optional[Sequence[float]] = None,
) -> Dict[str, Any]:
    """Scores the front the strategy generates for ``rays`` (default :func:`front_rays`\\ (m, k)) against the
    problem's known front (``problem``: default the strategy's).

    Returns a dict: ``igd`` (``pymoo.indicators.igd.IGD``: the mean distance from each known front point to the
    nearest generated point; lower is better), ``hv`` (:func:`cl_moo.hypervolume` of the generated points up to
    ``ref_point``), ``hv_front`` (the same for the known front's points; ``hv / hv_front`` near 1 is good),
    ``ref_point`` (default: the known front's maximum plus 10% of its range per objective, (1.1, 1.1) for ZDT),
    ``F`` ``(K, n_obj)``, ``X`` ``(K, n_var)`` and ``rays``. Without a known front, ``igd`` and ``hv_front`` are
    None and ``hv`` needs ``ref_point``.
    """
    problem = strategy.problem if problem is None else problem
    rays_np = front_rays(problem.n_obj, k) if rays is None else check_rays(torch.as_tensor(rays), problem.n_obj).numpy()
    values = np.asarray(strategy.eval(rays=rays_np), dtype=np.float64)
    front = problem.known_front()
    if front is None and ref_point is None:
        raise ObjectiveProblemError(
            f"{problem.front_note or problem.name + ': no known Pareto front'}: give "
            "ref_point= for the hypervolume, or the front (pareto_front=) for IGD"
        )
    if ref_point is None:
        assert front is not None  # refused above
        hi, lo = front.max(axis=0), front.min(axis=0)
        ref = hi + 0.1 * np.where(hi > lo, hi - lo, 1.0)
    else:
        ref = np.asarray(ref_point, dtype=np.float64).reshape(-1)
        if ref.shape != (problem.n_obj,) or not np.isfinite(ref).all():
            raise ValueError(f"ref_point must be {problem.n_obj} finite numbers, got {ref_point!r}")
    return {
        "igd": None if front is None else float(IGD(front)(values)),
        "hv": hypervolume(values, ref),
        "hv_front": None if front is None else hypervolume(front, ref),
        "ref_point": ref.tolist(),
        "F": values,
        "X": strategy.solutions(rays_np),
        "rays": np.asarray(rays_np),
    }
