"""The algorithms, built on the library layer :mod:`cl_moo`.

* Continual learning: :class:`HypernetworkStrategy` (von Oswald et al. 2020) as an Avalanche
  strategy, with :class:`OutputRegularizer` and :func:`build_cl_model`.
* Pareto fronts: :class:`ParetoHypernetworkStrategy` (Navon et al. 2021), PHN-LS / PHN-EPO and other
  solvers, as an Avalanche template; :class:`ContinualParetoStrategy`: the fronts of a task sequence in
  one hypernetwork, its earlier fronts kept by the same :class:`OutputRegularizerPlugin`.
* Objective-only problems: :class:`ObjectiveProblem` (``f(x)`` over a box, or a pymoo ``Problem``),
  :func:`train_on_problem`, :func:`evaluate_front` (IGD and HV against the known front).

Names load on first use, so ``import strategies`` or ``from strategies.solvers import ...`` does not
import Avalanche unless a strategy (continual or Pareto, both Avalanche templates) is used.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "HypernetworkStrategy": "hnet_cl",
    "NonFiniteLossError": "hnet_cl",
    "OptimizerPicklingError": "optimizer_pickling",
    "OutputRegularizerPlugin": "regularizer_plugin",
    "TrainingHealthPlugin": "health_plugin",
    "OutputRegularizer": "regularizer",
    "lookahead_delta": "regularizer",
    "StoredOutputs": "regularizer_targets",
    "HeadSnapshot": "regularizer_targets",
    "FrozenCopy": "regularizer_targets",
    "TaskConditionedHypernetwork": "cl_model",
    "TaskLabelError": "cl_model",
    "build_cl_model": "cl_model",
    "ParetoHypernetworkStrategy": "phn",
    "DirichletRays": "phn",
    "RayHypernetwork": "phn",
    "ContinualParetoStrategy": "phn_cl",
    "TaskRayHypernetwork": "phn_cl",
    "ObjectiveProblem": "objective_problem",
    "ObjectiveProblemError": "objective_problem",
    "ObjectiveProblemStrategy": "objective_problem",
    "train_on_problem": "objective_problem",
    "evaluate_front": "objective_problem",
    "front_rays": "objective_problem",
    "Solver": "solvers",
    "SOLVERS": "solvers",
    "LinearScalarization": "solvers",
    "EPO": "solvers",
    "Chebyshev": "solvers",
    "SmoothChebyshev": "solvers",
    "HypervolumeMaximization": "solvers",
    "make_solver": "solvers",
    "EPOResult": "epo",
    "epo_weights": "epo",
    "mse_metrics": "avalanche_metrics",
    "MeanSquaredError": "avalanche_metrics",
    "ExperienceMSE": "avalanche_metrics",
    "StreamMSE": "avalanche_metrics",
    "ExperienceMSEForgetting": "avalanche_metrics",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the names as static type checkers and IDEs see them (loaded lazily at run time)
    from .avalanche_metrics import ExperienceMSE, ExperienceMSEForgetting, MeanSquaredError, StreamMSE, mse_metrics
    from .cl_model import TaskConditionedHypernetwork, TaskLabelError, build_cl_model
    from .epo import EPOResult, epo_weights
    from .health_plugin import TrainingHealthPlugin
    from .hnet_cl import HypernetworkStrategy, NonFiniteLossError
    from .objective_problem import (
        ObjectiveProblem,
        ObjectiveProblemError,
        ObjectiveProblemStrategy,
        evaluate_front,
        front_rays,
        train_on_problem,
    )
    from .optimizer_pickling import OptimizerPicklingError
    from .phn import DirichletRays, ParetoHypernetworkStrategy, RayHypernetwork
    from .phn_cl import ContinualParetoStrategy, TaskRayHypernetwork
    from .regularizer import OutputRegularizer, lookahead_delta
    from .regularizer_plugin import OutputRegularizerPlugin
    from .regularizer_targets import FrozenCopy, HeadSnapshot, StoredOutputs
    from .solvers import (
        EPO,
        SOLVERS,
        Chebyshev,
        HypervolumeMaximization,
        LinearScalarization,
        SmoothChebyshev,
        Solver,
        make_solver,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'strategies' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
