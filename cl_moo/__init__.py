"""cl_moo: continual learning and multi-objective learning with hypernetworks.

One parametrization layer (functional targets, MLP and chunked hypernetworks, MIP, hyperfan
initialisation) shared by the continual-learning strategy (von Oswald et al. 2020) and the
Pareto hypernetwork strategy (Navon et al. 2021).
"""
from .cl_metrics import cl_summary
from .config import ConfigError, load_config
from .data import DataFileError, data_root, require_file
from .encoding import IdentityEncoding, MIPEncoding, minmax_scale
from .hypernets import ChunkedHypernetwork, Hypernetwork, MLPHypernetwork
from .init import INIT_SCHEMES, init_hypernetwork, target_variances
from .moo_metrics import RayError, check_rays, evaluation_rays, hypervolume, non_dominated, uniformity
from .optim import make_adam
from .target import FunctionalTarget, make_functional_target


def __getattr__(name: str):
    """Avalanche-based metrics load on first use, so ``import cl_moo`` stays light."""
    if name in ("mse_metrics", "MeanSquaredError", "ExperienceMSE", "StreamMSE", "ExperienceMSEForgetting"):
        from . import avalanche_metrics

        return getattr(avalanche_metrics, name)
    raise AttributeError(f"module 'cl_moo' has no attribute {name!r}")


__all__ = [
    "ChunkedHypernetwork",
    "ConfigError",
    "DataFileError",
    "ExperienceMSE",
    "ExperienceMSEForgetting",
    "MeanSquaredError",
    "RayError",
    "StreamMSE",
    "check_rays",
    "cl_summary",
    "data_root",
    "evaluation_rays",
    "hypervolume",
    "load_config",
    "make_adam",
    "mse_metrics",
    "non_dominated",
    "require_file",
    "uniformity",
    "FunctionalTarget",
    "Hypernetwork",
    "IdentityEncoding",
    "INIT_SCHEMES",
    "MIPEncoding",
    "MLPHypernetwork",
    "init_hypernetwork",
    "make_functional_target",
    "minmax_scale",
    "target_variances",
]
__version__ = "0.1.0"
