"""The Pareto benchmarks as problems the Pareto runners share: data, target, losses, test scoring.

A :class:`ParetoProblem` holds the training and test splits, a factory for a fresh target network,
the training losses (``loss(output, *targets)``, as :class:`strategies.phn.ParetoHypernetworkStrategy`
calls them), the objectives' names and ``score``: the test objectives of K models at once, given
``predict(x) -> (K, N, ...)`` outputs. Two families:

* fairness (Adult, Default, Bank; :mod:`benchmarks.data.fairness`): an MLP from ``cfg.target``; BCE and
  the soft rate gaps for training; scored on the whole test split (rate gaps are not sample means):
  the hard gaps as reported objectives, the soft ones as the trained objectives;
* Multi-MNIST family (:mod:`benchmarks.data.multimnist`): PHN's LeNet target; the two cross-entropies,
  scored as sample means over test batches (reported = trained objectives).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import vmap
from torch.utils.data import TensorDataset

from strategies.phn import iterate_batches

from benchmarks.runners.composition import make_target
from benchmarks.data.fairness import FAIRNESS_LOSSES, hard_objectives, load_fairness, soft_objectives
from benchmarks.data.multimnist import LOSSES as MULTIMNIST_LOSSES
from benchmarks.data.multimnist import LeNetTarget, load_multimnist
from benchmarks.data.registry import FAIRNESS_OBJECTIVES, MULTIMNIST_OBJECTIVES, get_benchmark

Predict = Callable[[torch.Tensor], torch.Tensor]         # inputs (N, ...) -> outputs of K models (K, N, ...)
Scores = Tuple[np.ndarray, np.ndarray]                   # (reported objectives, trained objectives), each (K, m)


@dataclass
class ParetoProblem:
    """What a Pareto runner needs from a benchmark (module docstring)."""

    train: TensorDataset
    test: TensorDataset
    losses: Sequence[Callable[..., torch.Tensor]]
    objectives: List[str]
    make_target: Callable[[], nn.Module]
    score: Callable[[Predict, torch.device], Scores]
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def m(self) -> int:
        return len(self.losses)


def load_problem(cfg: DictConfig) -> ParetoProblem:
    """The problem of ``cfg.benchmark`` (data checked and loaded; nothing trained), from its
    :mod:`benchmarks.data.registry` entry's loader."""
    return get_benchmark(cfg.benchmark.name, "pareto").load(cfg)


def fairness_problem(cfg: DictConfig) -> ParetoProblem:
    data, info = load_fairness(cfg.benchmark.name, cfg.data.root, seed=cfg.seed, max_rows=cfg.benchmark.max_rows,
                               verify=cfg.data.verify)
    test = data["test"]

    def score(predict: Predict, device: torch.device) -> Scores:
        x, y, s = (t.to(device) for t in test.tensors)
        logits = predict(x)
        per_model = [vmap(fn, in_dims=(0, None, None))(logits, y, s).cpu().numpy()
                     for fn in (hard_objectives, soft_objectives)]
        return per_model[0], per_model[1]

    return ParetoProblem(train=data["train"], test=test, losses=FAIRNESS_LOSSES,
                         objectives=list(FAIRNESS_OBJECTIVES),
                         make_target=lambda: make_target(cfg, info["n_features"], 1), score=score, info=info)


def mean_losses(predict: Predict, data: TensorDataset, losses: Sequence[Callable[..., torch.Tensor]],
                batch_size: int, device: torch.device) -> np.ndarray:
    """``(K, m)``: each loss (a sample mean) of each of the K models over ``data``, in batches
    (batch means weighted by batch size)."""
    total, n = None, 0
    with torch.no_grad():
        for x, *targets in iterate_batches(data, batch_size, device=device):
            out = predict(x)
            values = torch.stack([vmap(lambda o, fn=fn: fn(o, *targets))(out) for fn in losses], dim=1)
            total = values * len(x) if total is None else total + values * len(x)
            n += len(x)
    return (total / n).cpu().numpy()


def size_note(benchmark: DictConfig, n_train: int, n_test: int) -> Optional[str]:
    """Says so when ``max_train`` / ``max_test`` asked for more images than the split holds (all were used)."""
    short = [f"benchmark.{key}={asked} but the split holds {n}: all {n} were used"
             for key, asked, n in (("max_train", benchmark.max_train, n_train), ("max_test", benchmark.max_test, n_test))
             if asked is not None and asked > n]
    return "; ".join(short) or None


def multimnist_problem(cfg: DictConfig) -> ParetoProblem:
    b = cfg.benchmark
    train, test = load_multimnist(b.kind, cfg.data.root, max_train=b.max_train, max_test=b.max_test,
                                  verify=cfg.data.verify, download=cfg.data.download)
    info = {"kind": b.kind, "n_train": len(train), "n_test": len(test), "image_side": int(train.tensors[0].shape[-1]),
            "note": size_note(b, len(train), len(test))}

    def score(predict: Predict, device: torch.device) -> Scores:
        values = mean_losses(predict, test, MULTIMNIST_LOSSES, cfg.train.eval_batch_size, device)
        return values, values

    return ParetoProblem(train=train, test=test, losses=MULTIMNIST_LOSSES, objectives=list(MULTIMNIST_OBJECTIVES),
                         make_target=LeNetTarget, score=score, info=info)
