"""Pareto benchmark report: PHN-LS, PHN-EPO and K separate LS models on Adult, Default, Bank.

``python -m benchmarks.experiments.fairness_bench [--seeds 0 1 2] [--benchmarks adult default bank] [--preset small]``
runs every strategy on every benchmark and seed (one process, one after the other, so the wall
times are comparable as ratios) and writes ``bench/results/fairness.json`` with per-run HV,
uniformity (on the hard evaluation objectives and on the soft trained ones) and wall time,
their mean and std over seeds, the wall-time ratio PHN / LS-separate,
and an ablation (MIP on/off, hyperfan-in vs Kaiming init) of PHN-LS after ``--ablation-epochs``.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks.configuration.config import load_config
from benchmarks.runners.pareto_runner import run_moo
from benchmarks.runners.run_records import write_json

STRATEGIES = ("phn_ls", "phn_epo", "ls_separate")


def _run(overrides: List[str]) -> Dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(overrides + [f"run_dir={tmp}/run", "progress=false"])
        return run_moo(cfg)


def _stats(values: List[float]) -> Dict[str, float]:
    arr = np.array(values, dtype=float)
    return {"mean": float(np.nanmean(arr)), "std": float(np.nanstd(arr)), "values": arr.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--benchmarks", nargs="+", default=["adult", "default", "bank"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--ablation-epochs", type=int, default=1)
    parser.add_argument("--out", default="bench/results/fairness.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    report: Dict = {"preset": args.preset, "seeds": args.seeds, "benchmarks": {}}
    for bench in args.benchmarks:
        rows: Dict[str, Dict[str, List[float]]] = {s: {"hv": [], "uniformity": [], "uniformity_trained": [], "wall_s": []} for s in STRATEGIES}
        for seed in args.seeds:
            for strategy in STRATEGIES:
                m = _run([f"benchmark={bench}", f"strategy={strategy}", f"preset={args.preset}", f"seed={seed}"])
                rows[strategy]["hv"].append(m["hypervolume"])
                rows[strategy]["uniformity"].append(m["uniformity_mean"])
                rows[strategy]["uniformity_trained"].append(m["uniformity_trained_objectives_mean"])
                rows[strategy]["wall_s"].append(m["wall_time_s"])
        summary = {s: {k: _stats(v) for k, v in r.items()} for s, r in rows.items()}
        base = np.array(rows["ls_separate"]["wall_s"])
        for s in ("phn_ls", "phn_epo"):
            summary[s]["wall_ratio_vs_ls_separate"] = _stats(list(np.array(rows[s]["wall_s"]) / base))
        ablation: Dict[str, Dict] = {}
        for mip in (False, True):
            for init in ("hyperfan_in", "kaiming"):
                hv = [
                    _run([f"benchmark={bench}", "strategy=phn_ls", f"preset={args.preset}", f"seed={seed}",
                          f"hnet.mip={str(mip).lower()}", f"hnet.init={init}", f"train.epochs={args.ablation_epochs}"])["hypervolume"]
                    for seed in args.seeds
                ]
                ablation[f"mip={mip},init={init}"] = _stats(hv)
        summary["ablation_phn_ls_hv_after_%d_epochs" % args.ablation_epochs] = ablation
        report["benchmarks"][bench] = summary
        print(f"== {bench}")
        for s in STRATEGIES:
            r = summary[s]
            print(f"  {s:12s} HV {r['hv']['mean']:.4f} ± {r['hv']['std']:.4f}  uniformity {r['uniformity']['mean']:.4f} ± "
                  f"{r['uniformity']['std']:.4f}  (trained objectives {r['uniformity_trained']['mean']:.4f} ± "
                  f"{r['uniformity_trained']['std']:.4f})  wall {r['wall_s']['mean']:.1f} s")
        for s in ("phn_ls", "phn_epo"):
            print(f"  {s} wall / ls_separate wall = {summary[s]['wall_ratio_vs_ls_separate']['mean']:.3f}")
        for k, v in ablation.items():
            print(f"  ablation {k:32s} HV {v['mean']:.4f} ± {v['std']:.4f}")
    write_json(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
