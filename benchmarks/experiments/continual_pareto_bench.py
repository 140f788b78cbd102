"""Continual Pareto fronts on permuted Multi-MNIST: HV of each task right after learning it and
after the last task, for one hypernetwork h([e_t, r]) with the output regularizer, the same model
without it (beta = 0), and one PHN per task trained alone (the upper reference).

``python -m benchmarks.experiments.continual_pareto_bench [--tasks 5 --train 6000 --test 1000 --steps 600]``
writes ``bench/results/continual_pareto.json``. Task t permutes the pixels of Lin et al.'s 36x36
Multi-MNIST images with a fixed permutation (task 0: none); objectives are the two
cross-entropies, HV has PHN's reference point (2, 2). Goals (the issue): HV forgetting <= 1%
relative, each task's final HV >= 97% of its stand-alone PHN.

``python -m benchmarks.experiments.continual_pareto_bench --aggregate DIR --runs R0.json R1.json ... --out OUT.json``
trains nothing: it pairs each regularized run file in ``DIR`` (one per seed) with the stand-alone file of
``DIR`` that has the same seed and the same settings apart from the continual model's own
(:func:`aggregate`), and writes one JSON with each seed's :func:`goals` and the goals over all seeds.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from cl_moo import HypernetworkOptions
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
    chunked = args.chunk_size is not None
    hnet = HypernetworkOptions(hidden=tuple(args.hidden), init=args.init, chunk_size=args.chunk_size,
                               chunk_emb_dim=args.chunk_emb_dim if chunked else None)
    return dict(target=TARGETS[args.target](), losses=LOSSES, hnet_options=hnet, rays_per_step=1, lr=args.lr,
                train_mb_size=args.batch_size, eval_mb_size=2048, seed=args.seed, device=args.device)


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


# settings only the continual model reads (a stand-alone PHN ignores them) and settings that say what
# was written where, not what was trained: neither has to match between a run and its stand-alone
CONTINUAL_ONLY = ("beta", "reg_rays", "emb_dim", "emb_std", "start")
RECORD_ONLY = ("parts", "out")
_MISSING = object()


def _differing(a: Dict[str, Any], b: Dict[str, Any], ignore: Sequence[str]) -> List[str]:
    keys = (set(a) | set(b)) - set(ignore)
    return sorted(k for k in keys if a.get(k, _MISSING) != b.get(k, _MISSING))


def _complete(name: str, part: Dict[str, Any], key: str, tasks: int) -> None:
    if part.get("complete") is False or len(part[key]) != tasks:
        raise ValueError(f"{name}: incomplete run ({len(part[key])} of {tasks} tasks in {key!r})")


def aggregate(folder: Path, runs: Sequence[str]) -> Dict[str, Any]:
    """One record of the regularized runs ``runs`` (file names in ``folder``, one per seed, all with the
    same settings apart from the seed): each run is paired with the one file of ``folder`` that holds a
    ``standalone`` part of the same seed and the same settings apart from :data:`CONTINUAL_ONLY` and
    :data:`RECORD_ONLY` (the run's own file when it holds both parts). Per seed: the file names, the raw HVs
    and :func:`goals`; ``goals`` over all seeds: the largest forgetting and the smallest final /
    stand-alone ratio over seeds and tasks, each with its seed, task and files, and ``met`` (every
    seed's goals met). :class:`ValueError`, naming the files, for a missing, ambiguous or mismatched
    stand-alone, runs whose settings differ, a repeated seed or an incomplete run."""
    folder = Path(folder)
    if not runs:
        raise ValueError("no regularized run files given")
    data = {}
    for name in sorted(p.name for p in folder.glob("*.json")) + [r for r in runs if not (folder / r).exists()]:
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        data[name] = json.loads(path.read_text())
    alone_files = [n for n, d in data.items() if "standalone" in d]
    first = runs[0]
    per_seed: Dict[str, Any] = {}
    for name in runs:
        run = data[name]
        if "regularized" not in run:
            raise ValueError(f"{folder / name}: no 'regularized' part (it holds {sorted(run)})")
        settings, seed = run["settings"], run["settings"]["seed"]
        diff = _differing(settings, data[first]["settings"], RECORD_ONLY + ("seed",))
        if diff:
            raise ValueError(f"{folder / name} and {folder / first}: settings differ in {diff}; "
                             "aggregate the runs of one setting")
        if str(seed) in per_seed:
            raise ValueError(f"seed {seed} twice: {per_seed[str(seed)]['regularized_file']} and {name}")
        same_seed = [n for n in alone_files if data[n]["settings"].get("seed") == seed]
        if not same_seed:
            raise ValueError(f"{folder / name} (seed {seed}): no stand-alone file of seed {seed} in {folder} "
                             f"(stand-alone files: {alone_files or 'none'})")
        ignore = CONTINUAL_ONLY + RECORD_ONLY
        match = [n for n in same_seed if not _differing(data[n]["settings"], settings, ignore)
                 and data[n].get("ref_point") == run.get("ref_point")]
        if not match:
            why = "; ".join(f"{folder / n}: {_differing(data[n]['settings'], settings, ignore) or ['ref_point']}"
                            for n in same_seed)
            raise ValueError(f"{folder / name} (seed {seed}): the stand-alone files of seed {seed} were trained "
                             f"with other settings ({why})")
        if len(match) > 1:
            raise ValueError(f"{folder / name} (seed {seed}): more than one matching stand-alone file: {match}")
        reg, alone = run["regularized"], data[match[0]]["standalone"]
        _complete(str(folder / name), reg, "hv_final", settings["tasks"])
        _complete(str(folder / match[0]), alone, "hv", settings["tasks"])
        per_seed[str(seed)] = {
            "regularized_file": name, "standalone_file": match[0],
            "hv_just_after": reg["hv_just_after"], "hv_final": reg["hv_final"],
            "hv_forgetting_relative": reg["hv_forgetting_relative"], "standalone_hv": alone["hv"],
            "goals": goals(reg, alone["hv"])}
    settings = {k: v for k, v in data[first]["settings"].items() if k not in RECORD_ONLY + ("seed",)}
    return {"folder": str(folder), "settings": settings, "ref_point": data[first].get("ref_point"),
            "device": data[first].get("device"), "per_seed": per_seed,
            "goals": _goals_over_seeds(per_seed, settings["tasks"])}


def _goals_over_seeds(per_seed: Dict[str, Any], tasks: int) -> Dict[str, Any]:
    forgetting = [(v, int(s), t) for s, r in per_seed.items() for t, v in enumerate(r["hv_forgetting_relative"][:-1])
                  if v is not None]
    ratios = [(v, int(s), t) for s, r in per_seed.items() for t, v in enumerate(r["goals"]["final_over_standalone"])
              if v is not None]

    def where(item: Optional[tuple], *files: str) -> Optional[Dict[str, Any]]:
        if item is None:
            return None
        _, seed, task = item
        return {"seed": seed, "task": task, **{f: per_seed[str(seed)][f] for f in files}}

    worst_forgetting = max(forgetting, key=lambda x: x[0], default=None)
    worst_ratio = min(ratios, key=lambda x: x[0], default=None)
    return {
        "tasks": tasks,
        "seeds": sorted(int(s) for s in per_seed),
        "max_hv_forgetting_relative": worst_forgetting[0] if worst_forgetting else 0.0,
        "max_hv_forgetting_at": where(worst_forgetting, "regularized_file"),
        "min_final_over_standalone": worst_ratio[0] if worst_ratio else float("nan"),
        "min_final_over_standalone_at": where(worst_ratio, "regularized_file", "standalone_file"),
        "undefined": [{"seed": int(s), "forgetting_tasks": r["goals"]["undefined_forgetting_tasks"],
                       "ratio_tasks": r["goals"]["undefined_ratio_tasks"]} for s, r in per_seed.items()
                      if r["goals"]["undefined_forgetting_tasks"] or r["goals"]["undefined_ratio_tasks"]],
        "met_per_seed": {s: r["goals"]["met"] for s, r in per_seed.items()},
        "met": all(r["goals"]["met"] for r in per_seed.values()),
        "rule": next(iter(per_seed.values()))["goals"]["rule"] + ", every seed (per_seed.*.goals.met)",
        "sources": {s: {"regularized": r["regularized_file"], "standalone": r["standalone_file"]}
                    for s, r in per_seed.items()},
    }


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
    parser.add_argument("--aggregate", metavar="DIR", default=None,
                        help="train nothing: pair the --runs files of DIR with DIR's stand-alone files and write "
                             "their goals over all seeds to --out (aggregate())")
    parser.add_argument("--runs", nargs="+", default=[], metavar="FILE",
                        help="with --aggregate: the regularized run files in DIR, one per seed")
    args = parser.parse_args()
    if args.aggregate is not None:
        try:
            record = aggregate(Path(args.aggregate), args.runs)
        except ValueError as e:
            parser.error(str(e))
        record["command"] = ("python -m benchmarks.experiments.continual_pareto_bench --aggregate "
                             f"{args.aggregate} --runs {' '.join(args.runs)} --out {args.out}")
        write_json(Path(args.out), record)
        print(json.dumps(record["goals"], indent=1))
        return
    if args.runs:
        parser.error("--runs goes with --aggregate")
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
