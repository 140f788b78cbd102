"""Permuted MNIST against von Oswald et al. 2020: one command for the results table.

``python -m benchmarks.experiments.reproduce [--rows ...] [--seeds-small 0 1 2] [--out bench/results/pmnist.json]``
runs (or resumes, or reads back when finished) each row through ``python -m cl_moo.run`` into
``runs/reproduce/<row>-seed<s>``, then writes ``bench/results/pmnist.json`` and prints a markdown
table: our number, the published one, the goal and the config overrides of each row.
``--merge`` puts the rows it ran into the existing table instead of writing a table of them alone.
``--rerun-check ROW --run-dirs ... --out F`` compares finished reruns of a row with its recorded number
(whether a change of the code moved it beyond seed noise) and leaves the table as it is.

* CL1 rows (task identity given): the runner's own final average accuracy and forgetting.
* CL3 (HNET+ENT): the CL1 model of the same row and seed, evaluated with the task inferred by
  the lowest predictive entropy over the 10 task embeddings (no training of its own).
* PMNIST-100 needs ~500k iterations; on a CPU run it with ``--pmnist100-iterations`` (fewer per
  task) and the table labels the row with the iterations used.
Rows whose runs are missing are reported as "not run", never filled in.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from benchmarks.configuration.config import load_config, resume_changes
from benchmarks.runners.run_records import config_dict, write_json

RUNS = Path("runs/reproduce")
ROWS: Dict[str, Dict[str, Any]] = {
    "pmnist10-large": {"label": "PMNIST-10, MLP 1000-1000, CL1", "overrides": ["preset=paper"],
                       "published": 97.6, "goal": ">= 97.6, forgetting <= 0.3"},
    "pmnist10-small": {"label": "PMNIST-10, MLP 100-100, CL1", "overrides": ["preset=small_target"],
                       "published": 95.05, "goal": ">= 95.5"},
    "finetune10-large": {"label": "PMNIST-10, MLP 1000-1000, fine-tuning (beta = 0)",
                         "overrides": ["preset=paper", "strategy=finetune"], "published": 90.08, "goal": "below CL1"},
    "finetune10-small": {"label": "PMNIST-10, MLP 100-100, fine-tuning (beta = 0)",
                         "overrides": ["preset=small_target", "strategy=finetune"], "published": 47.89,
                         "goal": "below CL1"},
    "pmnist10-large-reference": {"label": "PMNIST-10, MLP 1000-1000, CL1, hypercl's init (Xavier) and look-ahead",
                                 "overrides": ["preset=paper", "hnet.init=xavier", "strategy.lookahead=true"],
                                 "published": 97.6, "goal": ">= 97.6, forgetting <= 0.3"},
    "pmnist10-small-reference": {"label": "PMNIST-10, MLP 100-100, CL1, hypercl's init (Xavier) and look-ahead",
                                 "overrides": ["preset=small_target", "hnet.init=xavier", "strategy.lookahead=true"],
                                 "published": 95.05, "goal": ">= 95.5"},
    "pmnist10-small-lr3e-4": {"label": "PMNIST-10, MLP 100-100, CL1, lr 3e-4",
                              "overrides": ["preset=small_target", "train.lr=3e-4"], "published": 95.05, "goal": ">= 95.5"},
    "pmnist10-small-wide": {"label": "PMNIST-10, MLP 100-100, CL1, lr 3e-4, embeddings 96 (task) and 32 (chunk); "
                                     "hypernetwork 1.13x the target's weights",
                            "overrides": ["preset=small_target", "train.lr=3e-4", "hnet.emb_dim=96",
                                          "hnet.chunk_emb_dim=32"],
                            "published": 95.05, "goal": ">= 95.5"},
    "pmnist10-small-big": {"label": "PMNIST-10, MLP 100-100, CL1, lr 3e-4, hypernetwork 200-150-100 "
                                    "(2.32x the target's weights)",
                           "overrides": ["preset=small_target", "train.lr=3e-4", "hnet.hidden=[200,150,100]"],
                           "published": 95.05, "goal": ">= 95.5"},
    "pmnist10-small-beta0.01": {"label": "PMNIST-10, MLP 100-100, CL1, beta 0.01",
                                "overrides": ["preset=small_target", "strategy.beta=0.01"], "published": 95.05,
                                "goal": ">= 95.5"},
    "mip10-small": {"label": "PMNIST-10, MLP 100-100, MIP (encoding + residual)",
                    "overrides": ["preset=small_target", "hnet.mip=true"], "published": None, "goal": "vs default"},
    "mip10-large": {"label": "PMNIST-10, MLP 1000-1000, MIP (encoding + residual)",
                    "overrides": ["preset=paper", "hnet.mip=true"], "published": None, "goal": "vs default"},
    "pmnist100": {"label": "PMNIST-100, MLP 1000-1000, hnet 200-250-350",
                  "overrides": ["preset=paper", "benchmark.n_tasks=100", "hnet.hidden=[200,250,350]", "hnet.emb_dim=128",
                                "hnet.chunk_emb_dim=12", "hnet.chunk_size=7500", "hnet.activation=relu",
                                "strategy.beta=0.01", "train.eval_tasks=current"],
                  "published": 95.90, "goal": "wall time per task flat"},
}
# rows that need more than a CPU sitting (pmnist100) or that are the goal-miss investigation (issue 13, item 4)
EXTRA_ROWS = ("pmnist100", "pmnist10-large-reference", "pmnist10-small-reference", "pmnist10-small-lr3e-4",
              "pmnist10-small-beta0.01", "pmnist10-small-wide", "pmnist10-small-big")
CL3_FROM = {"pmnist10-large": 91.75, "pmnist10-small": None, "pmnist10-large-reference": 91.75}  # published HNET+ENT (CL3), PMNIST-10, Table 1


def run_dir(row: str, seed: int) -> Path:
    return RUNS / f"{row}-seed{seed}"


def ensure_run(row: str, seed: int, extra: List[str], execute: bool) -> Optional[Dict[str, Any]]:
    """metrics.json of the row's run; runs (or resumes) it first when ``execute``."""
    folder = run_dir(row, seed)
    metrics = folder / "metrics.json"
    if not metrics.exists() and execute:
        args = ["benchmark=pmnist", *ROWS[row]["overrides"], *extra, f"seed={seed}", "progress=false",
                f"run_dir={folder}"]
        if (folder / "checkpoint.pt").exists():
            args.append("resume=true")
        print(f"running {row} seed {seed}: python -m cl_moo.run {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, "-m", "cl_moo.run", *args], check=True)
    if not metrics.exists():
        return None
    result = json.loads(metrics.read_text())
    check_row_config(row, seed, extra, result["config"], folder)
    return result


def check_row_config(row: str, seed: int, extra: List[str], config: Dict[str, Any], folder: Path) -> None:
    """Refuses a run whose recorded config is not the row's (a row's number must come from its config)."""
    expected = config_dict(load_config(["benchmark=pmnist", *ROWS[row]["overrides"], *extra, f"seed={seed}"]))
    changes = resume_changes(config, expected)
    if changes:
        diff = ", ".join(f"{k}: run {a!r}, row {b!r}" for k, a, b in changes)
        raise SystemExit(f"{folder}/metrics.json was not run with row {row}'s config ({diff}); move it away or "
                         f"point the row at the right run")


@torch.no_grad()
def entropy_accuracy(folder: Path) -> float:
    """CL3: accuracy with the task inferred by the lowest predictive entropy (HNET+ENT)."""
    from benchmarks.runners.composition import build_cl_model_from_config
    from benchmarks.runners.cl_runner import make_benchmark
    from omegaconf import OmegaConf

    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = OmegaConf.create(state["config"])
    bench, info = make_benchmark(cfg)
    model = build_cl_model_from_config(cfg, info)
    model.ensure_tasks(state["strategy"]["num_tasks"])
    model.load_state_dict(state["strategy"]["model"])
    model.eval()
    tasks = list(state["strategy"]["trained_tasks"])
    correct = total = 0
    for exp in bench.test_stream:
        loader = torch.utils.data.DataLoader(exp.dataset, batch_size=1000)
        for x, y, _ in loader:
            _, logits = model.infer_task(x, tasks)
            correct += int((logits.argmax(-1) == y).sum())
            total += len(y)
    return correct / total


def summarise(row: str, runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    acc = np.array([100 * r["average_final"] for r in runs])
    fgt = np.array([100 * r["average_forgetting"] for r in runs])
    return {"row": row, "label": ROWS[row]["label"], "seeds": [r["seed"] for r in runs],
            "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()), "accuracy_per_seed": acc.tolist(),
            "forgetting_mean": float(fgt.mean()), "wall_time_s": [r["wall_time_s"] for r in runs],
            "iterations_per_task": runs[0]["config"]["train"]["iterations"],
            "published": ROWS[row]["published"], "goal": ROWS[row]["goal"],
            "overrides": ROWS[row]["overrides"], "data_note": runs[0].get("data_note"),
            "device": runs[0].get("device")}


def gpu_pmnist100_row(path: Path) -> Dict[str, Any]:
    """The PMNIST-100 row from a GPU session's summary: accuracy just after training each task (the
    run evaluates only that task until the last), training seconds per task, peak GPU memory, and the
    per-task-loop form's stored targets (one weight set of the target per earlier task)."""
    run = json.loads(path.read_text())["runs"]["pmnist100-short"]
    weights = 1024 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 * 10 + 10
    n = run["tasks_done"]
    acc = 100 * float(np.mean(run["accuracy_just_trained"]))
    return {"row": "pmnist100-gpu", "seeds": [0], "device": "cuda (NVIDIA H200)",
            "label": f"PMNIST-100, MLP 1000-1000, hnet 200-250-350, 300 iterations per task (paper: 5000), "
                     f"{n} of 100 tasks before the GPU session's time limit; accuracy just after training each task",
            "accuracy_mean": acc, "accuracy_std": 0.0, "accuracy_spread_over_tasks": float(100 * np.std(run["accuracy_just_trained"])),
            "forgetting_mean": None, "published": ROWS["pmnist100"]["published"],
            "goal": "wall time per task flat", "overrides": ROWS["pmnist100"]["overrides"] + ["train.iterations=300"],
            "train_s_per_task": run["train_s_per_task"], "train_s_tasks_1_on": run["train_s_tasks_1_on"],
            "peak_gpu_mb_per_task": run["peak_gpu_mb_per_task"],
            "loop_form_stored_targets_mb_at_last_task": (n - 1) * weights * 4 / 2**20, "source": str(path)}


def markdown(rows: List[Dict[str, Any]]) -> str:
    lines = ["| row | ours (accuracy %) | forgetting (points) | published | goal | seeds | config |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("not_run"):
            lines.append(f"| {r['label']} | not run | | {r['published'] or ''} | {r['goal']} | | `{' '.join(r['overrides'])}` |")
            continue
        ours = f"{r['accuracy_mean']:.2f}" + (f" ± {r['accuracy_std']:.2f}" if len(r["seeds"]) > 1 else "")
        fgt = "" if r.get("forgetting_mean") is None else f"{r['forgetting_mean']:.2f}"
        lines.append(f"| {r['label']} | {ours} | {fgt} | {r['published'] if r['published'] is not None else ''} | "
                     f"{r['goal']} | {len(r['seeds'])} | `{' '.join(r['overrides'])}` |")
    return "\n".join(lines)


def rerun_check(row: str, folders: List[Path], recorded: Path) -> Dict[str, Any]:
    """A rerun of a recorded row (its runs in ``folders``, each checked against the row's config)
    against the row in ``recorded``: per-seed accuracies, the change of the mean, and whether it lies
    within seed noise, ``|change| <= 2 sqrt(s_rec^2 / n_rec + s_new^2 / n_new)`` with the seeds'
    standard deviations (at least 0.05 points each, so that three equal seeds do not demand equality)."""
    runs = []
    for folder in folders:
        metrics = folder / "metrics.json"
        if not metrics.exists():
            raise SystemExit(f"{metrics} not found: the rerun of {row} in {folder} has not finished (resume it first)")
        result = json.loads(metrics.read_text())
        check_row_config(row, result["seed"], [], result["config"], folder)
        runs.append(result)
    new = summarise(row, runs)
    old = next((r for r in json.loads(recorded.read_text())["rows"] if r["row"] == row and not r.get("not_run")), None)
    if old is None:
        raise SystemExit(f"{recorded} holds no finished row {row!r} to compare the rerun with")
    n_old, n_new = len(old["seeds"]), len(new["seeds"])
    s_old, s_new = max(old["accuracy_std"], 0.05), max(new["accuracy_std"], 0.05)
    change = new["accuracy_mean"] - old["accuracy_mean"]
    bound = 2 * float(np.sqrt(s_old**2 / n_old + s_new**2 / n_new))
    return {"row": row, "recorded": {k: old[k] for k in ("seeds", "accuracy_mean", "accuracy_std", "accuracy_per_seed",
                                                         "forgetting_mean")},
            "rerun": {k: new[k] for k in ("seeds", "accuracy_mean", "accuracy_std", "accuracy_per_seed",
                                          "forgetting_mean", "wall_time_s", "device")},
            "rerun_folders": [str(f) for f in folders], "accuracy_change": change, "seed_noise_bound": bound,
            "within_seed_noise": abs(change) <= bound,
            "rule": "|rerun mean - recorded mean| <= 2 sqrt(s_rec^2/n_rec + s_new^2/n_new), s >= 0.05 points"}


def merge_rows(existing: List[Dict[str, Any]], new: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``existing`` with each row of ``new`` in place of the row of the same name, or appended. A row
    that was not run never replaces a finished one (``--merge`` adds results, it does not erase them)."""
    merged = list(existing)
    for row in new:
        at = next((i for i, r in enumerate(merged) if r["row"] == row["row"]), None)
        if at is None:
            merged.append(row)
        elif row.get("not_run") and not merged[at].get("not_run"):
            raise SystemExit(f"row {row['row']} has no finished runs here but is recorded in the table: "
                             f"run it (without --collect-only) or leave it out of --rows")
        else:
            merged[at] = row
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=[r for r in ROWS if r not in EXTRA_ROWS], choices=list(ROWS))
    parser.add_argument("--seeds-small", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seeds-large", type=int, nargs="+", default=[0])
    parser.add_argument("--pmnist100-iterations", type=int, default=None,
                        help="iterations per task for PMNIST-100 (the paper: 5000); fewer on a CPU")
    parser.add_argument("--collect-only", action="store_true", help="read finished runs, start nothing")
    parser.add_argument("--gpu-summary", default=None,
                        help="bench/summarize_gpu_session.py output: adds its PMNIST-100 run (cut by the session's limit)")
    parser.add_argument("--out", default="bench/results/pmnist.json")
    parser.add_argument("--rerun-check", metavar="ROW", choices=list(ROWS), default=None,
                        help="compare finished reruns of ROW (--run-dirs) with its recorded number in --recorded; "
                             "writes --out (not the table) and starts nothing")
    parser.add_argument("--merge", action="store_true",
                        help="put the rows of --rows into the existing --out table (same name: replaced), keeping "
                             "its other rows, instead of writing a table of --rows alone")
    parser.add_argument("--run-dirs", nargs="+", type=Path, default=[])
    parser.add_argument("--recorded", type=Path, default=Path("bench/results/pmnist.json"))
    args = parser.parse_args()
    if args.rerun_check:
        if not args.run_dirs or args.out == parser.get_default("out"):
            parser.error("--rerun-check needs --run-dirs and an --out other than the table's bench/results/pmnist.json")
        check = rerun_check(args.rerun_check, args.run_dirs, args.recorded)
        write_json(Path(args.out), check)
        print(json.dumps(check, indent=1))
        return
    table: List[Dict[str, Any]] = []
    for row in args.rows:
        seeds = args.seeds_small if "small" in row else args.seeds_large
        extra = [f"train.iterations={args.pmnist100_iterations}"] if row == "pmnist100" and args.pmnist100_iterations else []
        runs = [m for m in (ensure_run(row, s, extra, not args.collect_only) for s in seeds) if m is not None]
        if not runs:
            table.append({"row": row, "label": ROWS[row]["label"], "not_run": True, "published": ROWS[row]["published"],
                          "goal": ROWS[row]["goal"], "overrides": ROWS[row]["overrides"]})
            continue
        entry = summarise(row, runs)
        if row == "pmnist100" and extra:
            entry["label"] += f" ({args.pmnist100_iterations} iterations per task, not the paper's 5000)"
        table.append(entry)
        if row in CL3_FROM:
            acc = [100 * entropy_accuracy(run_dir(row, s)) for s in entry["seeds"]]
            table.append({"row": row + "-cl3", "label": ROWS[row]["label"].replace("CL1", "CL3 (HNET+ENT)"),
                          "seeds": entry["seeds"], "accuracy_mean": float(np.mean(acc)),
                          "accuracy_std": float(np.std(acc)), "accuracy_per_seed": acc, "forgetting_mean": None,
                          "published": CL3_FROM[row], "goal": "reported", "overrides": ROWS[row]["overrides"]})
    if args.gpu_summary:
        table.append(gpu_pmnist100_row(Path(args.gpu_summary)))
    if args.merge and Path(args.out).exists():
        table = merge_rows(json.loads(Path(args.out).read_text())["rows"], table)
    report = {"rows": table, "markdown": markdown(table),
              "note": "CPU runs of this session unless the row's device says cuda; see each run folder's metrics.json"}
    write_json(Path(args.out), report)
    print(report["markdown"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
