"""MIP vs the default parametrization on permuted MNIST: steps to reach 95% of final accuracy.

``python -m benchmarks.experiments.cl_mip_bench [--seeds 0 1 2] [--tasks 5] [--iterations 300] [--every 20]``
trains the continual hypernetwork with ``hnet.mip=false`` and ``hnet.mip=true`` (same seeds,
same settings otherwise: the ``small`` preset), evaluates the current task's test accuracy every
``--every`` iterations, and reports for each task the first evaluated step whose accuracy is at
least 95% of that task's accuracy at the end of its training. Writes ``bench/results/cl_mip.json``.
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

from benchmarks.runners.cl_runner import make_benchmark
from benchmarks.runners.composition import build_cl_model_from_config, build_cl_strategy, seed_everything
from benchmarks.configuration.config import load_config
from benchmarks.runners.run_records import write_json


class CurrentTaskCurve(SupervisedPlugin):
    """Accuracy of the task being trained, on its test set, every ``every`` iterations."""

    def __init__(self, test_stream, every: int) -> None:
        super().__init__()
        self.test_stream, self.every = test_stream, every
        self.curves: Dict[int, List[tuple]] = {}
        self._cache: Dict[int, tuple] = {}

    @torch.no_grad()
    def _accuracy(self, strategy) -> float:
        task = strategy.current_task
        if task not in self._cache:
            ds = self.test_stream[task].dataset
            xs = torch.stack([ds[i][0] for i in range(len(ds))]).to(strategy.device)
            ys = torch.tensor([int(ds[i][1]) for i in range(len(ds))], device=strategy.device)
            self._cache[task] = (xs, ys)
        xs, ys = self._cache[task]
        logits = strategy.model.target(strategy.model.weights(task), xs)
        return float((logits.argmax(-1) == ys).float().mean())

    def after_training_iteration(self, strategy, **kwargs):
        if strategy._iter_in_exp % self.every == 0:
            self.curves.setdefault(strategy.current_task, []).append((strategy._iter_in_exp, self._accuracy(strategy)))

    def after_training_exp(self, strategy, **kwargs):
        self.curves.setdefault(strategy.current_task, []).append((strategy._iter_in_exp, self._accuracy(strategy)))


LR = 1e-3  # the small preset's lr when bench/results/cl_mip.json was recorded (the preset's is 3e-4 since)


def steps_to_95(curve: List[tuple]) -> int:
    final = curve[-1][1]
    return next(step for step, acc in curve if acc >= 0.95 * final)


def run(mip: bool, seed: int, tasks: int, iterations: int, every: int) -> Dict:
    cfg = load_config(["benchmark=pmnist", f"benchmark.n_tasks={tasks}", f"hnet.mip={str(mip).lower()}",
                       f"seed={seed}", f"train.iterations={iterations}", f"train.lr={LR}", "progress=false"])
    seed_everything(seed)
    bench, info = make_benchmark(cfg)
    model = build_cl_model_from_config(cfg, info)
    curve = CurrentTaskCurve(bench.test_stream, every)
    strategy = build_cl_strategy(cfg, model, "cpu", classification=True, evaluator=None, plugins=[curve])
    t0 = time.perf_counter()
    for exp in bench.train_stream:
        strategy.train(exp)
    return {"steps_to_95": [steps_to_95(curve.curves[t]) for t in range(tasks)],
            "final_accuracy": [curve.curves[t][-1][1] for t in range(tasks)],
            "wall_s": time.perf_counter() - t0, "data_note": info.get("fallback")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--out", default="bench/results/cl_mip.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    report: Dict = {"settings": vars(args), "runs": {}}
    for mip in (False, True):
        runs = [run(mip, s, args.tasks, args.iterations, args.every) for s in args.seeds]
        steps = np.array([r["steps_to_95"] for r in runs], dtype=float)
        acc = np.array([r["final_accuracy"] for r in runs])
        report["runs"][f"mip={mip}"] = {
            "per_seed": runs,
            "steps_to_95_mean_per_task": steps.mean(0).tolist(), "steps_to_95_std_per_task": steps.std(0).tolist(),
            "steps_to_95_mean": float(steps.mean()), "final_accuracy_mean": float(acc.mean()),
        }
        print(f"mip={mip}: steps to 95% of final accuracy per task (mean over seeds) "
              f"{np.round(steps.mean(0), 1).tolist()}, overall {steps.mean():.1f} ± {steps.std():.1f}; "
              f"final accuracy {acc.mean():.4f}")
    write_json(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
