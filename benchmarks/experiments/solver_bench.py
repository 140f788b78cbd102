"""Every PHN solver (ls, epo, tch, stch, hvi) on the Pareto benchmarks, through the run runner.

``python -m benchmarks.experiments.solver_bench [--seeds 0 1 2] [--benchmarks adult default bank] [--preset small]
[--solvers ls epo tch stch hvi] [--set KEY=VALUE ...] [--solver-set SOLVER:KEY=VALUE ...]`` runs
``strategy=phn_ls strategy.solver=<name>`` for every solver, benchmark and seed (one process, one
after the other), and writes ``bench/results/solvers.json`` with per-run HV, uniformity (reported
and trained objectives) and wall time, and their mean and std over seeds. Each solver runs with its
defaults; ``--set`` adds overrides to every run and ``--solver-set`` to one solver's runs, after
``--set`` (so it wins on a shared key). The Multi-MNIST presets take one ray per step, which HVI
refuses: ``--solver-set hvi:strategy.rays_per_step=4``. The bench's own keys (:data:`FIXED_KEYS`)
are refused in both, and every run's config is checked before the first one trains.
Both are recorded in the JSON, with ``complete`` false until every benchmark is done.
"""
from __future__ import annotations

import argparse
import warnings
from typing import Dict, List

from benchmarks.configuration.config import ConfigError, load_config
from benchmarks.experiments.fairness_bench import _run, _stats
from benchmarks.runners.run_records import write_json
from strategies.solvers import SOLVERS

SOLVER_NAMES = ("ls", "epo", "tch", "stch", "hvi")
# keys the bench sets itself (and records): --set / --solver-set may not change them
FIXED_KEYS = ("benchmark", "strategy", "strategy.solver", "preset", "seed", "run_dir", "progress")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--benchmarks", nargs="+", default=["adult", "default", "bank"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--solvers", nargs="+", default=list(SOLVER_NAMES), choices=sorted(SOLVERS))
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="overrides for every run")
    parser.add_argument("--solver-set", nargs="*", action="extend", default=[], metavar="SOLVER:KEY=VALUE",
                        help="overrides for one solver's runs (after --set: the same key takes this value)")
    parser.add_argument("--out", default="bench/results/solvers.json")
    args = parser.parse_args()
    per_solver: Dict[str, List[str]] = {name: [] for name in args.solvers}
    for item in args.solver_set:
        name, _, override = item.partition(":")
        if name not in per_solver or "=" not in override:
            parser.error(f"--solver-set {item!r}: expected SOLVER:KEY=VALUE with SOLVER one of {args.solvers}")
        per_solver[name].append(override)
    for override in args.set + [o for v in per_solver.values() for o in v]:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in FIXED_KEYS or "=" not in override:
            parser.error(f"{override!r}: --set/--solver-set take KEY=VALUE overrides other than {list(FIXED_KEYS)} "
                         "(those are --benchmarks, --solvers, --preset and --seeds, as recorded in the JSON)")
    for bench in args.benchmarks:  # every run's config is checked before the first one trains
        for solver in args.solvers:
            try:
                load_config(_overrides(bench, solver, args.preset, args.seeds[0], args.set + per_solver[solver]))
            except ConfigError as exc:
                parser.error(f"benchmark={bench} solver={solver}: {exc}")
    warnings.filterwarnings("ignore")
    report: Dict = {"preset": args.preset, "seeds": args.seeds, "strategy": "phn_ls with strategy.solver=<name>",
                    "overrides": args.set, "solver_overrides": {k: v for k, v in per_solver.items() if v},
                    "requested": {"benchmarks": args.benchmarks, "solvers": args.solvers}, "complete": False,
                    "benchmarks": {}}
    for bench in args.benchmarks:
        rows: Dict[str, Dict[str, List[float]]] = {
            s: {"hv": [], "uniformity": [], "uniformity_trained": [], "wall_s": []} for s in args.solvers}
        for seed in args.seeds:
            for solver in args.solvers:
                m = _run(_overrides(bench, solver, args.preset, seed, args.set + per_solver[solver]))
                rows[solver]["hv"].append(m["hypervolume"])
                rows[solver]["uniformity"].append(m["uniformity_mean"])
                rows[solver]["uniformity_trained"].append(m["uniformity_trained_objectives_mean"])
                rows[solver]["wall_s"].append(m["wall_time_s"])
        summary = {s: {k: _stats(v) for k, v in r.items()} for s, r in rows.items()}
        report["benchmarks"][bench] = summary
        write_json(args.out, report)  # each benchmark is kept as soon as it is done
        print(f"== {bench}")
        for s in args.solvers:
            r = summary[s]
            print(f"  {s:5s} HV {r['hv']['mean']:.4f} ± {r['hv']['std']:.4f}  uniformity {r['uniformity']['mean']:.4f} ± "
                  f"{r['uniformity']['std']:.4f}  (trained objectives {r['uniformity_trained']['mean']:.4f})  "
                  f"wall {r['wall_s']['mean']:.1f} s")
    report["complete"] = True
    write_json(args.out, report)
    print(f"wrote {args.out}")


def _overrides(bench: str, solver: str, preset: str, seed: int, extra: List[str]) -> List[str]:
    return [f"benchmark={bench}", "strategy=phn_ls", f"strategy.solver={solver}", f"preset={preset}",
            f"seed={seed}"] + extra


if __name__ == "__main__":
    main()
