"""cl_moo: continual learning and multi-objective learning with hypernetworks (the library layer).

One parametrization layer (weight layout, functional targets, MLP and chunked hypernetworks with
an explicit output-head contract, MIP, hyperfan initialisation, one builder), metrics for
continual and Pareto learning, the Adam helper and data-file checks. Imports torch, numpy,
scipy and pymoo only; the strategies (``strategies``) and the benchmarks and runners
(``benchmarks``) build on it.
"""
from .builder import GENERATORS, build_hypernetwork
from .chunked_hypernetwork import ChunkedHypernetwork
from .cl_metrics import cl_summary
from .data import CsvTable, DataFileError, DataFormatError, DegenerateDataError, data_root, read_csv, read_idx, require_file
from .encoding import IdentityEncoding, MIPEncoding, minmax_scale
from .health import DeadUnitProbe, HealthLog, HealthWarning, constant_prediction_loss
from .hypernetwork import ACTIVATIONS, HeadPiece, Hypernetwork, make_activation, mlp
from .init import INIT_SCHEMES, init_hypernetwork, target_variances, variance_report
from .layout import WeightLayout
from .mlp_hypernetwork import MLPHypernetwork
from .moo_metrics import RayError, check_rays, evaluation_rays, hypervolume, non_dominated, uniformity
from .optim import make_adam
from .target import FunctionalTarget, TargetCallError, TargetFallbackWarning, make_functional_target

__all__ = [
    "ACTIVATIONS",
    "ChunkedHypernetwork",
    "CsvTable",
    "DataFileError",
    "DataFormatError",
    "DeadUnitProbe",
    "DegenerateDataError",
    "FunctionalTarget",
    "GENERATORS",
    "HeadPiece",
    "HealthLog",
    "HealthWarning",
    "Hypernetwork",
    "IdentityEncoding",
    "INIT_SCHEMES",
    "MIPEncoding",
    "MLPHypernetwork",
    "RayError",
    "TargetCallError",
    "TargetFallbackWarning",
    "WeightLayout",
    "build_hypernetwork",
    "check_rays",
    "cl_summary",
    "constant_prediction_loss",
    "data_root",
    "evaluation_rays",
    "hypervolume",
    "init_hypernetwork",
    "make_activation",
    "make_adam",
    "make_functional_target",
    "minmax_scale",
    "mlp",
    "non_dominated",
    "read_csv",
    "read_idx",
    "require_file",
    "target_variances",
    "uniformity",
    "variance_report",
]
__version__ = "0.2.0"
