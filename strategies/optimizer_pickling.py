"""A picklable stand-in for a torch optimizer, so Avalanche's checkpointing can save a strategy.

``avalanche.checkpointing.save_checkpoint`` pickles the whole strategy with dill. With torch 2.14
and dill 0.4 that fails for *any* torch optimizer (Avalanche's own ``Naive`` too): ``torch.optim``
no longer exposes its submodules (``torch.optim.adam``), so dill cannot find ``torch.optim.Adam``
by name, pickles the class by value and stops at a ``typing_extensions`` sentinel. A strategy
therefore pickles its optimizer as :class:`PickledOptimizer`: the class by its import path, the
hyperparameters, each group's parameters by their names in the model, and ``state_dict()``; the
optimizer is rebuilt on the unpickled model's parameters, with its state (Adam moments, step
counts) and learning rates.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, List

import torch
from torch import nn


class OptimizerPicklingError(TypeError):
    """The optimizer cannot be described for a checkpoint (a parameter outside the model)."""


@dataclass
class PickledOptimizer:
    """What :func:`describe_optimizer` keeps; :meth:`rebuild` makes the optimizer again."""

    class_path: str  # "torch.optim.adam:Adam"
    defaults: Dict[str, Any]
    groups: List[Dict[str, Any]]  # each group's hyperparameters, "params": parameter names
    state: Dict[str, Any]  # optimizer.state_dict()

    def rebuild(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over ``model``'s parameters, with the saved hyperparameters and state."""
        module, _, qualname = self.class_path.partition(":")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        params = dict(model.named_parameters(remove_duplicate=False))
        groups = [
            {**{k: v for k, v in g.items() if k != "params"}, "params": [params[n] for n in g["params"]]}
            for g in self.groups
        ]
        optimizer = cls(groups, **{k: v for k, v in self.defaults.items() if k not in ("params",)})
        optimizer.load_state_dict(self.state)
        return optimizer


def describe_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> PickledOptimizer:
    """A :class:`PickledOptimizer` for ``optimizer``, whose parameters must all belong to ``model``."""
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    groups = []
    for i, group in enumerate(optimizer.param_groups):
        outside = [tuple(p.shape) for p in group["params"] if id(p) not in names]
        if outside:
            raise OptimizerPicklingError(
                f"optimizer group {i} holds {len(outside)} tensor(s) that are not parameters of the strategy's model "
                f"(shapes {outside[:3]}); a checkpoint rebuilds the optimizer over the model's parameters, so "
                "optimise only model parameters, or pass exclude=['optimizer'] to save_checkpoint"
            )
        groups.append(
            {**{k: v for k, v in group.items() if k != "params"}, "params": [names[id(p)] for p in group["params"]]}
        )
    cls = type(optimizer)
    return PickledOptimizer(
        class_path=f"{cls.__module__}:{cls.__qualname__}",
        defaults=dict(optimizer.defaults),
        groups=groups,
        state=optimizer.state_dict(),
    )
