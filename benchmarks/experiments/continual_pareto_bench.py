"""Continual Pareto fronts on permuted Multi-MNIST: HV of each task right after learning it and
after the last task, for one hypernetwork h([e_t, r]) with the output regularizer, the same model
without it (beta = 0), and one PHN per task trained alone (the upper reference).

``python -m benchmarks.experiments.continual_pareto_bench [--tasks 5 --train 6000 --test 1000 --steps 600]``
writes ``bench/results/continual_pareto.json``. Task t permutes the pixels of Lin et al.'s 36x36
Multi-MNIST images with a fixed permutation (task 0: none); objectives are the two
cross-entropies, HV has PHN's reference point (2, 2). Goals (the issue): HV forgetting <= 1%
relative, each task's final HV >= 97% of its stand-alone PHN.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from cl_moo.moo_metrics import evaluation_rays, hypervolume
from strategies import ContinualParetoStrategy, ParetoHypernetworkStrategy
from strategies.phn_cl import START

from benchmarks.data.multimnist import LOSSES, REF_POINT, LeNetTarget, MLPTwoHeads, load_multimnist, permuted_tasks
from benchmarks.runners.run_records import write_json


TARGETS = {"lenet": LeNetTarget, "mlp": lambda: MLPTwoHeads(hidden=(100,))}


def _hv(losses: np.ndarray) -> float:
    return hypervolume(losses, list(REF_POINT))


def _phn_options(args) -> Dict[str, Any]:
    """What the continual model and the stand-alone PHNs share: a fresh target, the losses, the
    hypernetwork (chunked, one small head shared by every chunk, when ``--chunk-size`` is given) and
    the optimisation; one ray per step."""
    options = dict(target=TARGETS[args.target](), losses=LOSSES, hidden=tuple(args.hidden), rays_per_step=1,
                   lr=args.lr, train_mb_size=args.batch_size, eval_mb_size=2048, seed=args.seed, init=args.init,
                   device=args.device)
    if args.chunk_size is not None:
        options.update(chunk_size=args.chunk_size, chunk_emb_dim=args.chunk_emb_dim)
    return options


class HVCurve:
    """Plugin: the current task's test HV after each step count in ``at`` (counted from the start of
    every ``train`` call), so a run shows how far each task still is from converging."""

    def __init__(self, at: List[int], rays: np.ndarray) -> None:
        self.at, self.rays = sorted(set(at)), rays
        self.test: Any = None
        self.curve: Dict[int, float] = {}
        self._done = 0

    def before_training(self, strategy: Any, **_: Any) -> None:
        self._done, self.curve = 0, {}

    def after_training_iteration(self, strategy: Any, **_: Any) -> None:
        self._done += 1
        if self._done in self.at and self.test is not None:
            self.curve[self._done] = _hv(strategy.eval(self.test, self.rays))


def run_continual(tasks, args, beta: float, rays: np.ndarray, save=lambda partial: None) -> Dict[str, Any]:
    torch.manual_seed(args.seed)
    curve = HVCurve(args.eval_at, rays)
    strategy = ContinualParetoStrategy(emb_dim=args.emb_dim, emb_std=args.emb_std, beta=beta, reg_rays=args.reg_rays,
                                       start=args.start, plugins=[curve], **_phn_options(args))
    just_after, curves, t0 = [], [], time.perf_counter()
    for t, data in enumerate(tasks):
        curve.test = data["test"]
        strategy.train_task(t, data["train"], steps=args.steps)
        just_after.append(_hv(strategy.eval_task(t, data["test"], rays)))
        curves.append(dict(curve.curve))
        print(f"  beta={beta} task {t}: HV {just_after[-1]:.4f} (by step: {_fmt(curve.curve)})", flush=True)
        save({"hv_just_after": list(just_after), "hv_curve": list(curves), "complete": False})
    final = [_hv(strategy.eval_task(t, data["test"], rays)) for t, data in enumerate(tasks)]
    return {"hv_just_after": just_after, "hv_final": final, "hv_curve": curves, "complete": True,
            "wall_s": time.perf_counter() - t0,
            # undefined (None) where the front right after training dominates nothing below the reference point
            "hv_forgetting_relative": [(a - f) / a if a > 0 else None for a, f in zip(just_after, final)]}


def _fmt(curve: Dict[int, float]) -> str:
    return ", ".join(f"{k}: {v:.4f}" for k, v in curve.items()) or "-"


def run_standalone(tasks, args, rays: np.ndarray, save=lambda partial: None) -> Dict[str, Any]:
    hv, curves, t0 = [], [], time.perf_counter()
    for t, data in enumerate(tasks):
        torch.manual_seed(args.seed)
        curve = HVCurve(args.eval_at, rays)
        curve.test = data["test"]
        phn = ParetoHypernetworkStrategy(plugins=[curve], **_phn_options(args))
        phn.train(data["train"], steps=args.steps)
        hv.append(_hv(phn.eval(data["test"], rays)))
        curves.append(dict(curve.curve))
        print(f"  stand-alone task {t}: HV {hv[-1]:.4f} (by step: {_fmt(curve.curve)})", flush=True)
        save({"hv": list(hv), "hv_curve": list(curves), "complete": False})
    return {"hv": hv, "hv_curve": curves, "complete": True, "wall_s": time.perf_counter() - t0}


def goals(reg: Dict[str, Any], alone: List[float]) -> Dict[str, Any]:
    """The issue's goals from the regularized run and the stand-alone HVs: HV forgetting <= 1% relative
    and final HV >= 0.97 x stand-alone on every task. A task whose forgetting or ratio is undefined
    (HV 0 right after training, or a stand-alone HV of 0) is listed and fails the goal."""
    ratios = [f / a if a > 0 else None for f, a in zip(reg["hv_final"], alone)]
    forgetting = [v for v in reg["hv_forgetting_relative"][:-1] if v is not None]
    out = {
        "max_hv_forgetting_relative": max(forgetting or [0.0]),
        "undefined_forgetting_tasks": [t for t, v in enumerate(reg["hv_forgetting_relative"]) if v is None],
        "final_over_standalone": ratios,
        "undefined_ratio_tasks": [t for t, v in enumerate(ratios) if v is None],
        "min_final_over_standalone": min([v for v in ratios if v is not None] or [float("nan")]),
        "rule": "HV forgetting <= 0.01 relative; final HV >= 0.97 x stand-alone PHN, every task",
    }
    out["met"] = (out["max_hv_forgetting_relative"] <= 0.01 and not out["undefined_forgetting_tasks"]
                  and not out["undefined_ratio_tasks"] and out["min_final_over_standalone"] >= 0.97)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--train", type=int, default=6000,
                        help="training images per task (0: all 108,000 left after PHN's 10%% validation hold-out)")
    parser.add_argument("--test", type=int, default=1000, help="test images per task (0: all 20,000)")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps per task (batch --batch-size)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=2.0, help="regularizer strength (phn_cl's default)")
    parser.add_argument("--reg-rays", type=int, default=10)
    parser.add_argument("--emb-dim", type=int, default=16)
    parser.add_argument("--emb-std", type=float, default=0.1, help="std of each task embedding's N(0, std^2) draw")
    parser.add_argument("--start", choices=START, default="random",
                        help="phn: the continual model starts as the stand-alone PHN of the same seed; random: a fresh draw")
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="chunked hypernetwork with this many outputs per chunk (default: one MLP head for all weights)")
    parser.add_argument("--chunk-emb-dim", type=int, default=8, help="chunk embedding width (with --chunk-size)")
    parser.add_argument("--target", choices=sorted(TARGETS), default="mlp",
                        help="mlp: 1296-100 ReLU with two heads (benchmark=multimnist_seq's); lenet: PHN's target "
                             "(learned nothing of the permuted tasks in 3000 steps, README)")
    parser.add_argument("--init", default="xavier", help="the hypernetwork's init scheme (xavier: the image presets')")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="data root (default: $CL_MOO_DATA)")
    parser.add_argument("--parts", nargs="+", default=["regularized", "no_regularizer", "standalone"],
                        choices=["regularized", "no_regularizer", "standalone"], help="which models to train")
    parser.add_argument("--eval-at", type=int, nargs="*", default=[],
                        help="also record each task's test HV after these step counts (hv_curve)")
    parser.add_argument("--out", default="bench/results/continual_pareto.json")
    args = parser.parse_args()
    if any(s < 1 for s in args.eval_at):
        parser.error(f"--eval-at takes step counts >= 1, got {args.eval_at}")
    warnings.filterwarnings("ignore")
    # the same images and permutations for every --seed, as benchmark=multimnist_seq
    train, test = load_multimnist("mnist", args.root, max_train=args.train, max_test=args.test)
    tasks = [{"train": tr, "test": te} for tr, te in permuted_tasks(args.tasks, train, test)]
    rays = evaluation_rays(2, 25)
    report: Dict[str, Any] = {"settings": vars(args), "ref_point": list(REF_POINT),
                              "threads": torch.get_num_threads(),
                              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}
    t0 = time.perf_counter()

    def saver(part: str):
        def save(partial: Dict[str, Any]) -> None:  # each finished task is kept (time-boxed runs)
            write_json(Path(args.out), {**report, part: partial})
        return save

    for part, run in (("regularized", lambda: run_continual(tasks, args, args.beta, rays, saver("regularized"))),
                      ("no_regularizer", lambda: run_continual(tasks, args, 0.0, rays, saver("no_regularizer"))),
                      ("standalone", lambda: run_standalone(tasks, args, rays, saver("standalone")))):
        if part not in args.parts:
            continue
        report[part] = run()
        report["wall_s"] = time.perf_counter() - t0
        write_json(Path(args.out), report)  # each part is kept as soon as it exists (time-boxed runs)
    if not {"regularized", "standalone"} <= set(report):
        return
    report["goals"] = goals(report["regularized"], report["standalone"]["hv"])
    write_json(Path(args.out), report)
    print(json.dumps({k: report[k] for k in ("goals",)}, indent=1))
    for name in ("regularized", "no_regularizer"):
        if name not in report:
            continue
        r = report[name]
        print(f"{name}: just after {np.round(r['hv_just_after'], 4).tolist()} final {np.round(r['hv_final'], 4).tolist()}")
    print(f"stand-alone: {np.round(report['standalone']['hv'], 4).tolist()}")


if __name__ == "__main__":
    main()
