"""Plug-in strategies built on the shared parametrization layer of :mod:`cl_moo`."""
from .cl_model import TaskConditionedHypernetwork, build_cl_model
from .hnet_cl import HypernetworkStrategy, NonFiniteLossError
from .regularizer import OutputRegularizer, lookahead_delta

__all__ = [
    "HypernetworkStrategy",
    "NonFiniteLossError",
    "OutputRegularizer",
    "TaskConditionedHypernetwork",
    "build_cl_model",
    "lookahead_delta",
]
from .epo import EPOResult, epo_weights
from .phn import ParetoHypernetworkStrategy

__all__ += ["EPOResult", "ParetoHypernetworkStrategy", "epo_weights"]
