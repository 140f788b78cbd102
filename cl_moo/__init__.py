"""cl_moo: continual learning and multi-objective learning with hypernetworks (the library layer).

One parametrization layer (weight layout, functional targets, MLP and chunked hypernetworks with
an explicit output-head contract, MIP, hyperfan initialisation, one builder), metrics for
continual and Pareto learning, the Adam helper and data-file checks. Imports torch, numpy,
scipy and pymoo only; the strategies (``strategies``) and the benchmarks and runners
(``benchmarks``) build on it.

Names load on first use (PEP 562), so ``import cl_moo`` and ``python -m cl_moo.run`` do not import
torch before the command line is checked.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any, Dict

_EXPORTS: Dict[str, str] = {
    "GENERATORS": "builder",
    "build_hypernetwork": "builder",
    "HypernetworkOptions": "hnet_options",
    "ChunkedHypernetwork": "chunked_hypernetwork",
    "cl_summary": "cl_metrics",
    "CsvTable": "data",
    "DataFileError": "data",
    "DataFormatError": "data",
    "DegenerateDataError": "data",
    "data_root": "data",
    "read_csv": "data",
    "read_idx": "data",
    "require_file": "data",
    "IdentityEncoding": "encoding",
    "MIPEncoding": "encoding",
    "minmax_scale": "encoding",
    "DeadUnitProbe": "health",
    "HealthFinding": "health",
    "HealthLog": "health",
    "HealthWarning": "health",
    "constant_prediction_loss": "health",
    "ACTIVATIONS": "hypernetwork",
    "HeadPiece": "hypernetwork",
    "Hypernetwork": "hypernetwork",
    "make_activation": "hypernetwork",
    "mlp": "hypernetwork",
    "task_embedding_seed": "hypernetwork",
    "INIT_SCHEMES": "init",
    "init_hypernetwork": "init",
    "target_variances": "init",
    "variance_report": "init",
    "WeightLayout": "layout",
    "MLPHypernetwork": "mlp_hypernetwork",
    "RayError": "moo_metrics",
    "check_rays": "moo_metrics",
    "evaluation_rays": "moo_metrics",
    "hypervolume": "moo_metrics",
    "non_dominated": "moo_metrics",
    "non_dominated_fronts": "moo_metrics",
    "uniformity": "moo_metrics",
    "make_adam": "optim",
    "FunctionalTarget": "target",
    "TargetCallError": "target",
    "TargetFallbackWarning": "target",
    "make_functional_target": "target",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the names as static type checkers and IDEs see them (loaded lazily at run time)
    from .builder import GENERATORS, build_hypernetwork
    from .chunked_hypernetwork import ChunkedHypernetwork
    from .cl_metrics import cl_summary
    from .data import (
        CsvTable,
        DataFileError,
        DataFormatError,
        DegenerateDataError,
        data_root,
        read_csv,
        read_idx,
        require_file,
    )
    from .encoding import IdentityEncoding, MIPEncoding, minmax_scale
    from .health import DeadUnitProbe, HealthFinding, HealthLog, HealthWarning, constant_prediction_loss
    from .hnet_options import HypernetworkOptions
    from .hypernetwork import ACTIVATIONS, HeadPiece, Hypernetwork, make_activation, mlp, task_embedding_seed
    from .init import INIT_SCHEMES, init_hypernetwork, target_variances, variance_report
    from .layout import WeightLayout
    from .mlp_hypernetwork import MLPHypernetwork
    from .moo_metrics import (
        RayError,
        check_rays,
        evaluation_rays,
        hypervolume,
        non_dominated,
        non_dominated_fronts,
        uniformity,
    )
    from .optim import make_adam
    from .target import FunctionalTarget, TargetCallError, TargetFallbackWarning, make_functional_target
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cl_moo' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
