"""``python -m benchmarks.experiments.paper_claims <name> [--seeds ...] [--quick --out DIR]``: run one paper claim."""

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from benchmarks.runners.run_records import write_json

from . import CLAIMS, claim_module

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "bench" / "results" / "paper_claims"
FIGURES = ROOT / "docs" / "figures" / "paper_claims"  # beside the claims' page of the documentation
MIN_SEEDS = 3


def run_claim(name: str, *, seeds: Sequence[int], quick: bool, out: Path, figures: Optional[Path] = None) -> dict:
    """Run claim ``name``; write ``<out>/<name>.json`` and ``<figures or out>/<name>.png``; return the JSON."""
    module = claim_module(name)
    if not quick and len(set(seeds)) < MIN_SEEDS:
        raise ValueError(f"a paper claim is judged over at least {MIN_SEEDS} seeds, got {list(seeds)}")
    figures = figures or out
    for folder in (out, figures):
        folder.mkdir(parents=True, exist_ok=True)
    figure = figures / f"{name}.png"
    start = time.perf_counter()
    outcome = module.run(seeds=list(seeds), quick=quick, figure=figure)
    if not figure.is_file():
        raise RuntimeError(f"claim {name!r} wrote no figure at {figure}")
    record = {
        "name": name,
        "paper": module.PAPER,
        "claim": module.CLAIM,
        "setting": module.SETTING,
        "holds": outcome.holds,
        "summary": outcome.summary,
        "checked": outcome.checked,
        "seeds": list(seeds),
        "quick": quick,
        "settings": outcome.settings,
        "numbers": outcome.numbers,
        "figure": figure.relative_to(ROOT).as_posix() if figure.is_relative_to(ROOT) else str(figure),
        "wall_s": round(time.perf_counter() - start, 1),
        "meta": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
                 "threads": torch.get_num_threads(), "device": "cpu"},
    }
    write_json(out / f"{name}.json", record)
    return record


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.paper_claims", description=__doc__)
    parser.add_argument("name", choices=sorted(CLAIMS) + ["all"], help="the claim to reproduce")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="a tiny run for tests; needs --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the JSON and the figure (default: bench/results/paper_claims and "
                             "docs/figures/paper_claims)")
    args = parser.parse_args(argv)
    negative = sorted({s for s in args.seeds if s < 0})
    if negative:
        parser.error(f"--seeds must be non-negative integers, got {negative} in {args.seeds}")
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:
        parser.error(
            f"--seeds must be distinct (results are keyed by seed, a repeat would be counted twice), got "
            f"{repeated} repeated in {args.seeds}"
        )
    if args.quick and args.out is None:
        parser.error("--quick runs are for tests and would replace the recorded results; pass --out DIR")
    names = sorted(CLAIMS) if args.name == "all" else [args.name]
    for name in names:
        if args.out is None:
            record = run_claim(name, seeds=args.seeds, quick=args.quick, out=RESULTS, figures=FIGURES)
        else:
            record = run_claim(name, seeds=args.seeds, quick=args.quick, out=args.out)
        print(f"{name}: holds={record['holds']}: {record['summary']} ({record['wall_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
