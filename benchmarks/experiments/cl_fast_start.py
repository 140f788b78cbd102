"""Fast start on a new task: task-embedding initialisation, and the hypernetwork beside Avalanche's baselines.

``python -m benchmarks.experiments.cl_fast_start [--seeds 0 1 2] [--every 1] [--hnet-lr 3e-4 --beta 0.05 ...]`` runs
5-task task-incremental Split MNIST, one epoch per task, on ONE stream for every method:

* the hypernetwork (von Oswald et al. 2020) with a new task's embedding drawn at random
  (``emb_init=random``, the default) and copied from the previous task's
  (``emb_init=previous``, the hypercl reference code's option);
* Avalanche's ``Naive``, ``EWC`` and ``LwF`` on a multi-head MLP of the same width.

Reported per method (mean over seeds): average final accuracy, average forgetting, and the
iterations until each new task reaches 90% of its final accuracy (evaluated on the task's test
set every ``--every`` iterations). The hypernetwork's own settings (``--hnet-lr``,
``--hnet-emb-lr``, ``--beta``, ``--lookahead``, ``--mip``, sizes, ...) are recorded in
``settings["hnet"]``; every method shares the batch size, the target width and the one epoch.
Writes ``bench/results/cl_fast_start.json``.
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

from cl_moo import HypernetworkOptions, cl_summary
from strategies import HypernetworkStrategy, build_cl_model

from benchmarks.runners.composition import seed_everything
from benchmarks.runners.run_records import write_json
from benchmarks.data.splitmnist import split_mnist

HIDDEN = (100, 100)
LR, BATCH = 1e-3, 32  # the baselines' Adam learning rate; the batch size is every method's
EWC_LAMBDA, LWF_ALPHA, LWF_TEMPERATURE = 100.0, 1.0, 2.0

# The hypernetwork's own settings (command-line options below; recorded in the JSON's settings["hnet"]).
# Adam lr 3e-4 (von Oswald et al. use 1e-3 / 1e-4): at 1e-3 the hypernetwork's accuracy oscillated within a task
# and new tasks took several times as many iterations to reach 90% (numbers: docs/reproduction.md, "Numbers behind
# the defaults").
HNET_DEFAULTS = dict(lr=3e-4, emb_lr=None, beta=0.05, lookahead=False, emb_dim=32, emb_std=1.0, chunk_size=4000,
                     chunk_emb_dim=16, hidden=[100, 100], activation="elu", mip=False, init="hyperfan_in")


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
        self._tensors: Dict[int, tuple] = {}  # each task's test set, stacked once

    def _test_set(self, task: int) -> tuple:
        if task not in self._tensors:
            ds = self.test_stream[task].dataset
            self._tensors[task] = (torch.stack([ds[i][0] for i in range(len(ds))]),
                                   torch.tensor([int(ds[i][1]) for i in range(len(ds))]))
        return self._tensors[task]

    @torch.no_grad()
    def _accuracy(self, strategy, task: int) -> float:
        x, y = self._test_set(task)
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


def make_strategy(name: str, seed: int, plugins: list, hnet: Dict = HNET_DEFAULTS):
    seed_everything(seed)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    common = dict(train_mb_size=BATCH, train_epochs=1, eval_mb_size=1000, evaluator=evaluator, plugins=plugins,
                  criterion=nn.CrossEntropyLoss())
    if name.startswith("hnet"):
        target = nn.Sequential(nn.Linear(784, HIDDEN[0]), nn.ReLU(), nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(),
                               nn.Linear(HIDDEN[1], 2))
        model = build_cl_model(target, emb_dim=hnet["emb_dim"], emb_std=hnet["emb_std"],
                               hnet_options=HypernetworkOptions(
                                   chunk_size=hnet["chunk_size"], chunk_emb_dim=hnet["chunk_emb_dim"],
                                   hidden=tuple(hnet["hidden"]), activation=hnet["activation"], mip=hnet["mip"],
                                   init=hnet["init"]),
                               emb_init=name.split("-", 1)[1], seed=seed)
        return HypernetworkStrategy(model=model, lr=hnet["lr"], emb_lr=hnet["emb_lr"], beta=hnet["beta"],
                                    lookahead=hnet["lookahead"], **common)
    model = MultiHeadMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    if name == "naive":
        return Naive(model=model, optimizer=optimizer, **common)
    if name == "ewc":
        return EWC(model=model, optimizer=optimizer, ewc_lambda=EWC_LAMBDA, **common)
    if name == "lwf":
        return LwF(model=model, optimizer=optimizer, alpha=LWF_ALPHA, temperature=LWF_TEMPERATURE, **common)
    raise ValueError(name)


def run(name: str, seed: int, bench, every: int, hnet: Dict = HNET_DEFAULTS) -> Dict:
    curve = CurrentTaskCurve(bench.test_stream, every)
    strategy = make_strategy(name, seed, [curve], hnet)
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
    parser.add_argument("--every", type=int, default=1, help="evaluate the current task every N iterations")
    parser.add_argument("--methods", nargs="+", default=["hnet-random", "hnet-previous", "naive", "ewc", "lwf"],
                        help="hnet-random / hnet-previous: the hypernetwork with emb_init=random / previous")
    parser.add_argument("--out", default="bench/results/cl_fast_start.json")
    g = parser.add_argument_group("hypernetwork (the baselines keep lr, batch size and width above)")
    d = HNET_DEFAULTS
    g.add_argument("--hnet-lr", type=float, default=d["lr"], help="Adam lr of the hypernetwork's shared parameters")
    g.add_argument("--hnet-emb-lr", type=float, default=d["emb_lr"],
                   help="lr of the task embedding (default: --hnet-lr)")
    g.add_argument("--beta", type=float, default=d["beta"], help="output-regularizer strength")
    g.add_argument("--lookahead", action=argparse.BooleanOptionalAction, default=d["lookahead"])
    g.add_argument("--emb-dim", type=int, default=d["emb_dim"])
    g.add_argument("--emb-std", type=float, default=d["emb_std"])
    g.add_argument("--chunk-size", type=int, default=d["chunk_size"])
    g.add_argument("--chunk-emb-dim", type=int, default=d["chunk_emb_dim"])
    g.add_argument("--hnet-hidden", type=int, nargs="+", default=d["hidden"])
    g.add_argument("--hnet-activation", default=d["activation"])
    g.add_argument("--mip", action=argparse.BooleanOptionalAction, default=d["mip"])
    g.add_argument("--init", default=d["init"])
    args = parser.parse_args()
    hnet = dict(lr=args.hnet_lr, emb_lr=args.hnet_emb_lr, beta=args.beta, lookahead=args.lookahead,
                emb_dim=args.emb_dim, emb_std=args.emb_std, chunk_size=args.chunk_size,
                chunk_emb_dim=args.chunk_emb_dim, hidden=list(args.hnet_hidden), activation=args.hnet_activation,
                mip=args.mip, init=args.init)
    warnings.filterwarnings("ignore")
    bench, info = split_mnist()
    settings = {k: v for k, v in vars(args).items() if k in ("seeds", "every", "methods", "out")}
    hnet_record = {**hnet, "emb_lr": hnet["emb_lr"] if hnet["emb_lr"] is not None else hnet["lr"],
                   "target_hidden": list(HIDDEN), "batch": BATCH, "optimizer": "Adam, betas (0.9, 0.999)",
                   "reset_optimizer_state": True, "reg_targets": "stored"}
    report: Dict = {"settings": {**settings, "hidden": HIDDEN, "lr": LR, "batch": BATCH, "epochs_per_task": 1,
                                 "baselines": {"lr": LR, "optimizer": "Adam", "ewc_lambda": EWC_LAMBDA,
                                               "lwf_alpha": LWF_ALPHA, "lwf_temperature": LWF_TEMPERATURE},
                                 "hnet": hnet_record},
                    "data_note": info.get("fallback"), "methods": {}}
    for name in args.methods:
        key = name
        runs = []
        for seed in args.seeds:
            runs.append(run(name, seed, bench, args.every, hnet))
            r = runs[-1]
            diag = [round(r["matrix"][i][i], 3) for i in range(len(r["matrix"]))]
            print(f"  {name} seed {seed}: accuracy {r['average_final']:.4f} forgetting {r['average_forgetting']:.4f} "
                  f"iterations {r['iterations_to_90pct']} diag {diag} ({r['wall_s']:.0f} s)", flush=True)
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
    report["goal"] = goal_check(report["methods"])
    for name, verdict in report["goal"].get("hnet", {}).items():
        print(f"goal ({report['goal']['rule']}): {name} {'met' if verdict['met'] else 'NOT met'} {verdict}", flush=True)
    write_json(Path(args.out), report)
    print(f"wrote {args.out}")


def goal_check(methods: Dict) -> Dict:
    """The issue's bar, on the means over seeds: a hypernetwork's average accuracy >= the best
    baseline's - 0.5 points, and its forgetting <= the lowest baseline forgetting."""
    baselines = {k: v for k, v in methods.items() if not k.startswith("hnet")}
    if not baselines:
        return {}
    best_acc = max(v["average_final_mean"] for v in baselines.values())
    min_fgt = min(v["average_forgetting_mean"] for v in baselines.values())
    out: Dict = {"rule": "accuracy >= best baseline - 0.005 and forgetting <= lowest baseline forgetting",
                 "best_baseline_accuracy": best_acc, "lowest_baseline_forgetting": min_fgt, "hnet": {}}
    for k, v in methods.items():
        if k.startswith("hnet"):
            acc, fgt = v["average_final_mean"], v["average_forgetting_mean"]
            out["hnet"][k] = {"accuracy": round(acc, 4), "forgetting": round(fgt, 4),
                              "met": bool(acc >= best_acc - 0.005 and fgt <= min_fgt)}
    return out


if __name__ == "__main__":
    main()
