"""cl_moo: continual learning and multi-objective learning with hypernetworks.

One parametrization layer (functional targets, MLP and chunked hypernetworks, MIP, hyperfan
initialisation) shared by the continual-learning strategy (von Oswald et al. 2020) and the
Pareto hypernetwork strategy (Navon et al. 2021).
"""
from .encoding import IdentityEncoding, MIPEncoding, minmax_scale
from .hypernets import ChunkedHypernetwork, Hypernetwork, MLPHypernetwork
from .init import INIT_SCHEMES, init_hypernetwork, target_variances
from .target import FunctionalTarget, make_functional_target

__all__ = [
    "ChunkedHypernetwork",
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
