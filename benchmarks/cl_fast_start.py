"""Fast start on a new task: task-embedding initialisation, and the hypernetwork beside Avalanche's baselines.

``python -m benchmarks.cl_fast_start [--seeds 0 1 2] [--every 5]`` runs 5-task task-incremental
Split MNIST, one epoch per task, on ONE stream for every method:

* the hypernetwork (von Oswald et al. 2020) with a new task's embedding drawn at random
  (``emb_init=random``, the default) and copied from the previous task's
  (``emb_init=previous``, the hypercl reference code's option);
* Avalanche's ``Naive``, ``EWC`` and ``LwF`` on a multi-head MLP of the same width.

Reported per method (mean over seeds): average final accuracy, average forgetting, and for the
hypernetwork the iterations until each new task reaches 90% of its final accuracy (evaluated on
the task's test set every ``--every`` iterations). Writes ``bench/results/cl_fast_start.json``.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.models import MultiHeadClassifier, MultiTaskModule
from avalanche.training import EWC, LwF, Naive
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from cl_moo import cl_summary
from strategies import HypernetworkStrategy, build_cl_model

from .builders import seed_everything
from .reporting import write_json
from .splitmnist import split_mnist

HIDDEN = (100, 100)
LR, BATCH = 1e-3, 32


class MultiHeadMLP(MultiTaskModule):
    """Shared MLP trunk and one output head per task (Avalanche's multi-head setting)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(784, HIDDEN[0]), nn.ReLU(), nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU())
        self.classifier = MultiHeadClassifier(HIDDEN[1], initial_out_features=2)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.classifier(self.features(x), task_label)


class CurrentTaskCurve(SupervisedPlugin):
    """Test accuracy of the task being trained, every ``every`` iterations (and at the end)."""

    def __init__(self, test_stream, every: int) -> None:
        super().__init__()
        self.test_stream, self.every = test_stream, every
        self.curves: Dict[int, List[tuple]] = {}
        self.iteration = 0

    @torch.no_grad()
    def _accuracy(self, strategy, task: int) -> float:
        ds = self.test_stream[task].dataset
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
        was = strategy.model.training
        strategy.model.eval()
        out = strategy.model(x.to(strategy.device), task)
        strategy.model.train(was)
        return float((out.argmax(-1).cpu() == y).float().mean())

    def before_training_exp(self, strategy, **kwargs):
        self.iteration = 0
        task = strategy.experience.task_label
        self.curves[task] = [(0, self._accuracy(strategy, task))]

    def after_training_iteration(self, strategy, **kwargs):
        self.iteration += 1
        if self.iteration % self.every == 0:
            task = strategy.experience.task_label
            self.curves[task].append((self.iteration, self._accuracy(strategy, task)))

    def after_training_exp(self, strategy, **kwargs):
        task = strategy.experience.task_label
        if self.curves[task][-1][0] != self.iteration:
            self.curves[task].append((self.iteration, self._accuracy(strategy, task)))


def iterations_to(curve: List[tuple], fraction: float) -> int:
    final = curve[-1][1]
    return next(step for step, acc in curve if acc >= fraction * final)


def make_strategy(name: str, seed: int, plugins: list):
    seed_everything(seed)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    common = dict(train_mb_size=BATCH, train_epochs=1, eval_mb_size=1000, evaluator=evaluator, plugins=plugins,
                  criterion=nn.CrossEntropyLoss())
    if name.startswith("hnet"):
        target = nn.Sequential(nn.Linear(784, HIDDEN[0]), nn.ReLU(), nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(),
                               nn.Linear(HIDDEN[1], 2))
        model = build_cl_model(target, emb_dim=32, chunk_size=4000, chunk_emb_dim=16, hidden=(100, 100),
                               activation="elu", emb_init=name.split("-", 1)[1], seed=seed)
        return HypernetworkStrategy(model=model, lr=LR, beta=0.05, **common)
    model = MultiHeadMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    if name == "naive":
        return Naive(model=model, optimizer=optimizer, **common)
    if name == "ewc":
        return EWC(model=model, optimizer=optimizer, ewc_lambda=100.0, **common)
    if name == "lwf":
        return LwF(model=model, optimizer=optimizer, alpha=1.0, temperature=2.0, **common)
    raise ValueError(name)


def run(name: str, seed: int, bench, every: int) -> Dict:
    curve = CurrentTaskCurve(bench.test_stream, every)
    strategy = make_strategy(name, seed, [curve])
    matrix = []
    t0 = time.perf_counter()
    for i, exp in enumerate(bench.train_stream):
        strategy.train(exp)
        res = strategy.eval(bench.test_stream[: i + 1])
        matrix.append([res[f"Top1_Acc_Exp/eval_phase/test_stream/Task{j:03d}/Exp{j:03d}"] for j in range(i + 1)])
    summary = cl_summary(matrix)
    out = {"matrix": matrix, "average_final": summary["average_final"], "average_forgetting": summary["average_forgetting"],
           "wall_s": time.perf_counter() - t0}
    out["iterations_to_90pct"] = [iterations_to(curve.curves[t], 0.9) for t in sorted(curve.curves)]
    out["curves"] = {str(t): c for t, c in curve.curves.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["hnet-random", "hnet-previous", "naive", "ewc", "lwf"],
                        help="hnet-random / hnet-previous: the hypernetwork with emb_init=random / previous")
    parser.add_argument("--out", default="bench/results/cl_fast_start.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    bench, info = split_mnist()
    report: Dict = {"settings": {**vars(args), "hidden": HIDDEN, "lr": LR, "batch": BATCH, "epochs_per_task": 1},
                    "data_note": info.get("fallback"), "methods": {}}
    for name in args.methods:
        key = name
        runs = [run(name, seed, bench, args.every) for seed in args.seeds]
        acc = np.array([r["average_final"] for r in runs])
        fgt = np.array([r["average_forgetting"] for r in runs])
        its = np.array([r["iterations_to_90pct"][1:] for r in runs], dtype=float)  # new tasks only (2..5)
        report["methods"][key] = {
            "per_seed": runs, "average_final_mean": float(acc.mean()), "average_final_std": float(acc.std()),
            "average_forgetting_mean": float(fgt.mean()), "iterations_to_90pct_new_tasks_mean": float(its.mean()),
            "iterations_to_90pct_new_tasks_per_task": its.mean(0).tolist(),
        }
        print(f"{key:24s} accuracy {acc.mean():.4f} ± {acc.std():.4f}  forgetting {fgt.mean():.4f}  "
              f"iterations to 90% of final (tasks 2-5) {its.mean():.1f} {np.round(its.mean(0), 1).tolist()}", flush=True)
    write_json(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
