"""Results report across runs: ``python -m cl_moo.report <folder>... [--out DIR]``.

Collects every ``metrics.json`` below the folders, groups the runs by configuration (the resolved
``config`` of each run without the seed and the run-bookkeeping keys), and writes ``report.md``,
``report.csv`` and figures (``figures/*.png``) into ``--out`` (default: the first folder):
mean ± sample std (ddof=1) over seeds per group, published numbers beside ours where a group ran
a published setting (:mod:`benchmarks.data.published`), accuracy matrices and forgetting for continual
groups, and overlaid Pareto fronts per benchmark. Metric values that are NaN are left out of the
mean and counted: a cell says ``(n/N finite)`` when some runs gave NaN. A run folder that repeats
another's configuration and seed (a sweep's ``seed=0,0``, a copied folder) is counted once: the report
and the command say which.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks.configuration.config import ADDED_KEYS, flatten_keys
from benchmarks.runners.cl_figures import forgetting_figure, matrix_figure, pyplot as _pyplot, save_figure
from benchmarks.data.published import Published, published_for

METRICS_FILE = "metrics.json"
# not part of a configuration: which seed, where it ran and how it was watched
IGNORED_KEYS = ("seed", "run_dir", "resume", "progress", "device", "data.root", "data.download")
# the preset table of a benchmark file; its chosen values are already resolved into the other keys
IGNORED_PREFIXES = ("benchmark.presets.",)
CONTINUAL_METRICS = ("average_final", "average_forgetting", "bwt")
PARETO_METRICS = ("hypervolume", "uniformity_mean")
COMMON_METRICS = ("wall_time_s", "peak_rss_mb")
ALL_METRICS = CONTINUAL_METRICS + PARETO_METRICS + COMMON_METRICS
# keys every group name shows, and the keys that other differing keys may follow from
SHORT_NAMES = {"benchmark.name": "benchmark", "strategy.name": "strategy"}
ANCHORS = ("benchmark.name", "strategy.name", "preset")
MISSING = "<unset>"
# a group's mean this far from the published number is flagged: above FAR_ABOVE x published for a score
# where lower is better (MSE), below FAR_BELOW x published where higher is better (accuracy, HV)
FAR_ABOVE, FAR_BELOW = 2.0, 0.95


class ReportError(Exception):
    """The report cannot be made from the given folders; the message names the problem and the fix."""


@dataclass
class Run:
    """One finished run: its ``metrics.json`` and its grouping configuration (flattened)."""

    path: Path
    metrics: Dict[str, Any]
    config: Dict[str, Any]

    @property
    def kind(self) -> str:
        return "continual" if "matrix" in self.metrics else "pareto"

    @property
    def seed(self) -> Any:
        return self.metrics.get("seed", self.metrics["config"].get("seed"))


@dataclass
class Group:
    """Runs with the same configuration (different seeds)."""

    runs: List[Run]
    name: str = ""
    distinct: Dict[str, Any] = field(default_factory=dict)  # the keys that differ within its benchmark

    @property
    def config(self) -> Dict[str, Any]:
        return self.runs[0].config

    @property
    def kind(self) -> str:
        return self.runs[0].kind

    @property
    def benchmark(self) -> str:
        return str(self.config.get("benchmark.name", self.runs[0].metrics.get("benchmark", "?")))

    @property
    def score(self) -> str:
        return str(self.runs[0].metrics.get("score", "accuracy")) if self.kind == "continual" else ""


@dataclass(frozen=True)
class Stat:
    """Mean and sample std over the finite values of one metric in one group."""

    mean: float
    std: float
    n_finite: int
    n: int


# ---------------------------------------------------------------- collecting runs


def find_metrics(folders: Sequence[Path]) -> List[Path]:
    """Every ``metrics.json`` below ``folders`` (recursively), each once, in a stable order."""
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise ReportError(f"folder(s) not found: {', '.join(missing)}; pass existing run folders "
                          "(a run folder or any folder above run folders)")
    found = {p.resolve(): p for f in folders for p in sorted(Path(f).rglob(METRICS_FILE)) if p.is_file()}
    if not found:
        raise ReportError(f"no {METRICS_FILE} found below {', '.join(str(f) for f in folders)}; runs write it "
                          "when they finish (python -m cl_moo.run ... run_dir=<folder>)")
    return sorted(found.values())


def grouping_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The flattened config without the seed, bookkeeping keys and the benchmark's preset table; numbers
    normalised (:func:`normal_number`), so that ``strategy.beta: 0`` and ``0.0`` are one configuration."""
    flat = {**ADDED_KEYS, **flatten_keys(config)}  # a key added later means, when absent, the behaviour it had then
    return {k: normal_number(v) for k, v in flat.items()
            if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)}


def normal_number(value: Any) -> Any:
    """An integer-valued float as its int (``0.0`` -> ``0``, ``1.0`` -> ``1``), in lists too: the structured
    configs record a float key written as an integer (``strategy.beta=0``) as a float, older runs recorded
    the int, and both are the same setting."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [normal_number(v) for v in value]
    return value


def load_run(path: Path) -> Run:
    """Reads one ``metrics.json``; raises :class:`ReportError` naming the file when it is not a run's."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} is not a readable JSON file ({exc}); delete it or rerun that run") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("config"), dict):
        raise ReportError(f"{path} has no 'config' entry (the run's resolved configuration), so it cannot be "
                          "grouped; python -m cl_moo.run writes it: move the file out of the folder or rerun that run")
    if "matrix" not in metrics and "hypervolume" not in metrics:
        raise ReportError(f"{path} has neither 'matrix' (continual run) nor 'hypervolume' (Pareto run); "
                          "move it out of the folder")
    return Run(Path(path), metrics, grouping_config(metrics["config"]))


def _config_key(config: Dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def dedupe_runs(runs: Sequence[Run]) -> Tuple[List[Run], List[Tuple[Run, Run]]]:
    """The runs with each (configuration, seed) once, and ``(duplicate, kept run)`` for every other copy (a
    sweep's ``seed=0,0``, a copied run folder): a copy would count as a second seed with std 0."""
    kept: Dict[Tuple[str, str], Run] = {}
    duplicates: List[Tuple[Run, Run]] = []
    for run in sorted(runs, key=lambda r: str(r.path)):
        key = (_config_key(run.config), json.dumps(run.seed, default=str))
        if key in kept:
            duplicates.append((run, kept[key]))
        else:
            kept[key] = run
    return list(kept.values()), duplicates


def duplicate_note(duplicates: Sequence[Tuple[Run, Run]]) -> str:
    """One line per duplicate folder and the run it repeats (empty without duplicates)."""
    if not duplicates:
        return ""
    lines = [f"{len(duplicates)} run folder(s) repeat another run's configuration and seed and are counted once:"]
    lines += [f"  {dup.path.parent} duplicates {first.path.parent} (seed {dup.seed})" for dup, first in duplicates]
    return "\n".join(lines)


def group_runs(runs: Sequence[Run]) -> List[Group]:
    """Runs with equal grouping configuration form one group; groups are named and sorted."""
    by_key: Dict[str, List[Run]] = {}
    for run in runs:
        by_key.setdefault(_config_key(run.config), []).append(run)
    groups = [Group(sorted(rs, key=lambda r: (str(r.seed), str(r.path)))) for rs in by_key.values()]
    name_groups(groups)
    return sorted(groups, key=lambda g: (g.kind != "continual", g.benchmark, g.name))


# ---------------------------------------------------------------- naming groups


def format_value(value: Any) -> str:
    """Compact, command-line-like spelling: ``true``, ``[100,100]``, ``0.05``, ``null``."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _differing_keys(configs: Sequence[Dict[str, Any]]) -> List[str]:
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({format_value(c.get(k, MISSING)) for c in configs}) > 1]


def _follows_from(key: str, by: Sequence[str], configs: Sequence[Dict[str, Any]]) -> bool:
    """True when the value of ``key`` is the same in all configs that agree on ``by``."""
    seen: Dict[Tuple[str, ...], str] = {}
    for c in configs:
        anchor = tuple(format_value(c.get(k, MISSING)) for k in by)
        value = format_value(c.get(key, MISSING))
        if seen.setdefault(anchor, value) != value:
            return False
    return True


def name_groups(groups: Sequence[Group]) -> None:
    """Names each group by benchmark, strategy and the keys that tell it apart from the other groups
    of its benchmark, leaving out keys that follow from the strategy and preset (e.g. finetune's beta=0)."""
    families: Dict[str, List[Group]] = {}
    for g in groups:
        families.setdefault(g.benchmark, []).append(g)
    for family in families.values():
        configs = [g.config for g in family]
        differing = _differing_keys(configs)
        shown = [k for k in ANCHORS if k in SHORT_NAMES or k in differing]
        shown += [k for k in differing if k not in ANCHORS and not _follows_from(k, ANCHORS[1:], configs)]
        for g in family:
            g.name = " ".join(f"{SHORT_NAMES.get(k, k)}={format_value(g.config.get(k, MISSING))}" for k in shown)
            g.distinct = {k: g.config.get(k, MISSING) for k in differing}


# ---------------------------------------------------------------- statistics


def summarize(values: Sequence[Any]) -> Stat:
    """Mean and sample std (ddof=1) over the finite values; NaN where there are none (std: fewer than 2)."""
    numbers = np.array([float(v) if isinstance(v, (int, float)) else math.nan for v in values], dtype=float)
    finite = numbers[np.isfinite(numbers)]
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return Stat(mean, std, int(finite.size), int(numbers.size))


def group_stats(group: Group, metrics: Sequence[str] = ALL_METRICS) -> Dict[str, Stat]:
    """The :class:`Stat` of every metric the group's runs report."""
    return {m: summarize([r.metrics.get(m) for r in group.runs]) for m in metrics
            if any(m in r.metrics for r in group.runs)}


def format_stat(stat: Optional[Stat]) -> str:
    """``0.9123 ± 0.0041``; ``nan`` when no run gave a finite value; ``(n/N finite)`` when some did not."""
    if stat is None:
        return ""
    if stat.n_finite == 0:
        return f"nan ({stat.n_finite}/{stat.n} finite)" if stat.n > 1 else "nan"
    text = f"{stat.mean:.4g}" + (f" ± {stat.std:.2g}" if math.isfinite(stat.std) else "")
    return text + (f" ({stat.n_finite}/{stat.n} finite)" if stat.n_finite < stat.n else "")


def _csv_number(value: float) -> str:
    return repr(float(value))


# ---------------------------------------------------------------- figures


def mean_matrix(group: Group) -> Optional[np.ndarray]:
    """Mean accuracy (or MSE) matrix over seeds, ignoring NaN entries; None when the shapes differ."""
    matrices = [np.array(r.metrics["matrix"], dtype=float) for r in group.runs]
    if len({m.shape for m in matrices}) != 1 or matrices[0].ndim != 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN entry stays NaN
        return np.nanmean(np.stack(matrices), axis=0)


def plot_matrix(matrix: np.ndarray, score: str, title: str, path: Path, n_seeds: int = 1) -> None:
    """Heatmap: row i = after training task i, column j = evaluated on task j (``n_seeds > 1``: says
    the mean over that many seeds)."""
    save_figure(matrix_figure(matrix, score, title, n_seeds), path)


def plot_forgetting(matrix: np.ndarray, score: str, title: str, path: Path, n_seeds: int = 1) -> None:
    """Each task's score over the tasks trained since; just after training it vs at the end."""
    save_figure(forgetting_figure(matrix, score, title, n_seeds), path)


def _losses(run: Run) -> Optional[np.ndarray]:
    """The run's per-ray test losses ``(K, m)``, or None when it has none."""
    losses = np.array(run.metrics.get("test_losses") or [], dtype=float)
    return losses if losses.ndim == 2 and losses.size else None


def plot_fronts(groups: Sequence[Group], benchmark: str, path: Path) -> bool:
    """Per-ray test losses of every run, one colour per group; 2-D projections for 3+ objectives.
    Returns False (and writes nothing) when no run has test losses."""
    runs = [(g, r, _losses(r)) for g in groups for r in g.runs]
    runs = [(g, r, losses) for g, r, losses in runs if losses is not None]
    if not runs:
        return False
    m = runs[0][2].shape[1]
    names = list(runs[0][1].metrics.get("objectives") or [f"objective {i}" for i in range(m)])
    pairs = list(combinations(range(m), 2)) or [(0, 0)]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4.0), squeeze=False)
    markers = "os^Dv<>pP*X"
    for n, group in enumerate(groups):
        mine = [losses for g, _, losses in runs if g is group and losses.shape[1] == m]
        if not mine:
            continue
        losses = np.concatenate(mine)
        for ax, (i, j) in zip(axes[0], pairs):
            ax.scatter(losses[:, i], losses[:, j], s=14, alpha=0.6, marker=markers[n % len(markers)],
                       color=f"C{n % 10}", label=f"{group.name} (n={len(mine)})")
    for ax, (i, j) in zip(axes[0], pairs):
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
    axes[0][0].legend(fontsize=6, loc="best")
    seeds = " (all seeds)" if any(len(g.runs) > 1 for g in groups) else ""
    fig.suptitle(f"{benchmark}: test losses per evaluation ray{seeds}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:limit].strip("-.")


def _continual_figures(group: Group, stem: Path) -> List[Tuple[str, Path]]:
    """The mean matrix heatmap and the forgetting figure of one group (none when seeds' shapes differ)."""
    matrix = mean_matrix(group)
    if matrix is None:
        return []
    heatmap, forgetting = stem.with_name(stem.name + "-matrix.png"), stem.with_name(stem.name + "-forgetting.png")
    plot_matrix(matrix, group.score, group.name, heatmap, len(group.runs))
    plot_forgetting(matrix, group.score, group.name, forgetting, len(group.runs))
    return [(f"{group.score} matrix", heatmap), ("forgetting over tasks", forgetting)]


def write_figures(groups: Sequence[Group], out: Path) -> Dict[str, List[Tuple[str, Path]]]:
    """Writes every figure under ``out/figures``; returns ``{section title: [(caption, path)]}``."""
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    figures: Dict[str, List[Tuple[str, Path]]] = {}
    for n, group in enumerate(groups):
        if group.kind == "continual":
            items = _continual_figures(group, folder / f"g{n:02d}-{_slug(group.name)}")
            if items:
                figures[group.name] = items
    pareto: Dict[str, List[Group]] = {}
    for group in groups:
        if group.kind == "pareto":
            pareto.setdefault(group.benchmark, []).append(group)
    for benchmark, members in pareto.items():
        path = folder / f"pareto-{_slug(benchmark)}.png"
        if plot_fronts(members, benchmark, path):
            figures[f"Pareto fronts: {benchmark}"] = [(f"{benchmark} fronts", path)]
    return figures


# ---------------------------------------------------------------- tables


def _published(group: Group) -> Optional[Published]:
    metric = "average_final" if group.kind == "continual" else "hypervolume"
    return published_for(group.config, metric)


def health_count(group: Group) -> Tuple[int, int]:
    """(runs with training-health warnings or a divergence verdict, runs that recorded a ``health`` section)."""
    recorded = [r for r in group.runs if isinstance(r.metrics.get("health"), dict)]
    warned = [r for r in recorded if not r.metrics["health"].get("ok", True) or r.metrics.get("diverged")]
    return len(warned), len(recorded)


def health_cell(group: Group) -> str:
    warned, recorded = health_count(group)
    if not recorded:
        return "not recorded"
    text = f"{warned}/{recorded} runs warned" if warned else "ok"
    return text + (f" ({len(group.runs) - recorded} not recorded)" if recorded < len(group.runs) else "")


def far_from_published(group: Group) -> Optional[float]:
    """The ratio mean / published when it is past :data:`FAR_ABOVE` / :data:`FAR_BELOW`, else None."""
    entry = _published(group)
    if entry is None or not entry.value or "different" in entry.note:  # e.g. another reference point
        return None
    stat = group_stats(group, (entry.metric,)).get(entry.metric)
    if stat is None or not math.isfinite(stat.mean):
        return None
    ratio = stat.mean / entry.value
    lower_is_better = group.kind == "continual" and group.score == "mse"
    return ratio if (ratio > FAR_ABOVE if lower_is_better else ratio < FAR_BELOW) else None


def write_csv(groups: Sequence[Group], path: Path) -> None:
    """One row per group: n seeds, mean/std/finite count per metric, the published number if any."""
    columns = ["group", "kind", "benchmark", "strategy", "score", "n_seeds", "seeds"]
    for m in ALL_METRICS:
        columns += [f"{m}_mean", f"{m}_std", f"{m}_n_finite"]
    columns += ["published", "published_metric", "published_note", "published_source", "far_from_published",
                "health_warned_runs", "health_recorded_runs", "runs"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for group in groups:
            row: Dict[str, Any] = {
                "group": group.name, "kind": group.kind, "benchmark": group.benchmark,
                "strategy": group.config.get("strategy.name", ""), "score": group.score,
                "n_seeds": len(group.runs), "seeds": " ".join(str(r.seed) for r in group.runs),
                "runs": ";".join(str(r.path.parent) for r in group.runs),
            }
            row["health_warned_runs"], row["health_recorded_runs"] = health_count(group)
            far = far_from_published(group)
            row["far_from_published"] = "" if far is None else _csv_number(far)
            for m, stat in group_stats(group).items():
                row.update({f"{m}_mean": _csv_number(stat.mean), f"{m}_std": _csv_number(stat.std),
                            f"{m}_n_finite": stat.n_finite})
            entry = _published(group)
            if entry is not None:
                row.update({"published": _csv_number(entry.value), "published_metric": entry.metric,
                            "published_note": entry.note, "published_source": entry.source})
            writer.writerow(row)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def _published_cell(group: Group, sources: List[Published]) -> str:
    entry = _published(group)
    if entry is None:
        return ""
    if entry not in sources:
        sources.append(entry)
    far = far_from_published(group)
    flag = f" **far: mean {far:.3g}x published**" if far is not None else ""
    return f"{entry.value:.4g} [{sources.index(entry) + 1}]{flag}"


def _results_table(groups: Sequence[Group], kind: str, sources: List[Published]) -> List[str]:
    metrics = (CONTINUAL_METRICS if kind == "continual" else PARETO_METRICS) + COMMON_METRICS
    header = ["group", "seeds"] + (["score"] if kind == "continual" else [])
    header += [metrics[0], "published [source; note]"] + list(metrics[1:]) + ["training health"]
    rows = []
    for group in groups:
        stats = group_stats(group, metrics)
        cells = [group.name, str(len(group.runs))] + ([group.score] if kind == "continual" else [])
        cells += [format_stat(stats.get(metrics[0])), _published_cell(group, sources)]
        cells += [format_stat(stats.get(m)) for m in metrics[1:]] + [health_cell(group)]
        rows.append(cells)
    return _markdown_table(header, rows)


def _link(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path, out)).as_posix()


def write_markdown(groups: Sequence[Group], figures: Dict[str, List[Tuple[str, Path]]], folders: Sequence[Path],
                   out: Path, duplicates: Sequence[Tuple[Run, Run]] = ()) -> Path:
    """``report.md``: results tables, sources of published numbers, figures, and which runs form each group."""
    n_runs = sum(len(g.runs) for g in groups)
    lines = ["# Results report", "",
             f"{n_runs} runs in {len(groups)} groups, from {', '.join(f'`{f}`' for f in folders)}. "
             "Cells: mean ± sample std (ddof=1) over seeds; `(n/N finite)`: only n of N runs gave a finite "
             "value, and the mean is over those. Accuracy is a fraction; forgetting and BWT are in the units "
             "of the score. Per-metric numbers for every group are in `report.csv`. *training health*: runs "
             "whose `metrics.json` `health` section holds warnings (dead units, loss at chance, forgetting "
             "spikes, HV 0, EPO fallbacks) or that diverged; *far*: a mean above "
             f"{FAR_ABOVE:g}x a published MSE or below {FAR_BELOW:g}x a published accuracy or HV (not for "
             "numbers with a different reference point).", ""]
    if duplicates:
        lines += [f"**{len(duplicates)} duplicate run(s) left out** (the same configuration and seed as a run "
                  "counted; a copy is not another seed):", ""]
        lines += [f"* `{_link(dup.path.parent, out)}` duplicates `{_link(first.path.parent, out)}` (seed {dup.seed})"
                  for dup, first in duplicates] + [""]
    sources: List[Published] = []
    for kind, title in (("continual", "Continual learning"), ("pareto", "Pareto fronts")):
        members = [g for g in groups if g.kind == kind]
        if members:
            lines += [f"## {title}", ""] + _results_table(members, kind, sources) + [""]
    if sources:
        lines += ["Published numbers (the setting matched by benchmark, strategy and architecture, not by "
                  "training length):", ""]
        lines += [f"{i}. {s.name}: {s.value:.4g} ({s.metric}), {s.source}" + (f"; {s.note}" if s.note else "")
                  for i, s in enumerate(sources, 1)] + [""]
    if figures:
        lines += ["## Figures", ""]
        for title, items in figures.items():
            lines += [f"### {title}", ""] + [f"![{caption}]({_link(path, out)})" for caption, path in items] + [""]
    lines += ["## Groups", ""]
    rows = [[g.name, " ".join(str(r.seed) for r in g.runs),
             ", ".join(f"[{_link(r.path.parent, out)}]({_link(r.path.parent, out)})" for r in g.runs),
             " ".join(f"{k}={format_value(v)}" for k, v in g.distinct.items())] for g in groups]
    lines += _markdown_table(["group", "seeds", "runs", "settings that differ within its benchmark"], rows) + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------- entry point


def build_report(folders: Sequence[Path], out: Optional[Path] = None,
                 notes: Optional[List[str]] = None) -> Path:
    """Collects, groups and writes ``report.md``, ``report.csv`` and figures into ``out``; returns report.md.
    A run that repeats another's configuration and seed is counted once; ``notes`` gets a line saying so."""
    folders = [Path(f) for f in folders]
    runs, duplicates = dedupe_runs([load_run(p) for p in find_metrics(folders)])
    if duplicates and notes is not None:
        notes.append(duplicate_note(duplicates))
    groups = group_runs(runs)
    out = Path(out) if out is not None else folders[0]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(groups, out / "report.csv")
    figures = write_figures(groups, out)
    return write_markdown(groups, figures, folders, out, duplicates)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cl_moo.report",
        description="Report across runs: groups every metrics.json below FOLDER(s) by configuration "
                    "(ignoring the seed) and writes report.md, report.csv and figures.")
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="run folders or folders above them")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: the first FOLDER)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns 0 on success, 2 on bad input (with a message on stderr), 1 when the report cannot be written."""
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse has printed usage or help
        return exc.code if isinstance(exc.code, int) else 2
    notes: List[str] = []
    try:
        path = build_report(args.folders, args.out, notes)
    except ReportError as exc:
        print(f"cl_moo.report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cl_moo.report: cannot write the report ({exc}); pass --out <a writable folder>", file=sys.stderr)
        return 1
    for note in notes:
        print(f"NOTE: {note}")
    print(f"report: {path} (table: {path.with_suffix('.csv')}, figures: {path.parent / 'figures'})")
    return 0
