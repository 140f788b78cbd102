"""Run folders, device choice, peak memory, JSON results, and the training-divergence check."""
from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when present, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA GPU is visible; use device=auto or device=cpu")
    return torch.device(name)


def run_folder(cfg: DictConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path("runs") / f"{cfg.benchmark.name}-{cfg.strategy.name}-{cfg.preset}-seed{cfg.seed}"


def peak_memory_mb(device: torch.device) -> Dict[str, float]:
    """Peak resident memory of this process (and peak GPU memory on CUDA), in MiB."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def write_json(path: Path, data: Dict[str, Any], *, overwrite: bool = True) -> None:
    """Writes ``data`` as JSON atomically (through this process's ``<name>.<pid>.tmp``), creating the
    parent folder. ``overwrite=False``: an existing ``path`` is never replaced (:class:`FileExistsError`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, default=float))
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Renames ``tmp`` to ``path``; without ``overwrite`` by a hard link, which fails if ``path`` exists."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists and is never overwritten; use run_dir=<new folder>") from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(f"{path} already exists and is never overwritten; use run_dir=<new folder>") from None
        os.replace(tmp, path)


def config_dict(cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


class LossMonitor:
    """Training losses per segment (a task, the Pareto training, one LS model) and a divergence verdict.

    A segment diverged when the mean of its last few losses is more than ``RATIO`` times its start
    (its first loss, or the mean of its first few if lower: a loss that explodes at the first step
    must not set the baseline) and above ``FLOOR``, or, with ``bound`` (classification losses), above
    ``bound``. NaN/inf losses never get here: the strategies raise on them.
    """

    RATIO, FLOOR, WINDOW = 10.0, 1e-2, 10

    def __init__(self, bound: Optional[float] = None) -> None:
        self.bound = bound
        self.losses: Dict[str, List[float]] = {}

    def record(self, segment: str, loss: float) -> None:
        self.losses.setdefault(segment, []).append(float(loss))

    def verdict(self, segment: str) -> Optional[str]:
        """Why ``segment`` diverged, or None."""
        values = self.losses.get(segment, [])
        if len(values) < 2:
            return None
        w = max(1, min(self.WINDOW, len(values) // 4))
        start, last = min(values[0], sum(values[:w]) / w), sum(values[-w:]) / w
        rose = last > self.RATIO * max(start, self.FLOOR)
        too_big = self.bound is not None and last > self.bound
        if not (rose or too_big):
            return None
        return (f"training diverged ({segment}): the loss went from {start:.4g} at the start to {last:.4g} "
                f"(mean of the last {w} iterations)")

    def warnings(self, fix: str) -> List[str]:
        """One warning per diverged segment, each ending with ``fix``."""
        return [f"{v}; its results are not meaningful: {fix}" for v in map(self.verdict, self.losses) if v]

    def state_dict(self) -> Dict[str, Any]:
        return {"losses": {k: list(v) for k, v in self.losses.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.losses = {k: list(v) for k, v in state["losses"].items()}


def zero_hypervolume_note(losses: Any, ref: List[float], names: List[str], what: str) -> Optional[str]:
    """A warning when no model of a front lies below the reference point in every objective (HV 0), with
    the best value reached per objective; None when some model does. A front with HV 0 is a result
    that says nothing about the trade-off (typically: training did not learn, e.g. chance-level
    cross-entropies), so the runners write this note beside it instead of a bare 0."""
    values = np.asarray(losses, dtype=float)
    if values.size == 0 or bool(np.any(np.all(values < np.asarray(ref, dtype=float), axis=1))):
        return None
    best = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values.min(axis=0)))
    return (f"{what}: hypervolume 0: none of its {len(values)} models has every objective below the reference "
            f"point {list(ref)} (best per objective: {best}). The models did not learn a trade-off (a "
            "cross-entropy near ln(classes) is chance level): check train.lr and hnet.init (a chunked "
            "hypernetwork with hyperfan init collapses at lr 1e-3), or the reference point")


EPO_FALLBACK_RATE = 0.05  # above this share of rays, a PHN-EPO front is partly a PHN-LS front


def epo_fallback_message(fallbacks: int, rays: int, *, rate: float = EPO_FALLBACK_RATE) -> Optional[str]:
    """A training-health message when EPO's LP failed on more than ``rate`` of the ``rays`` it solved, else
    None. Each failed ray is trained with the linear-scalarization weights ``m r / sum(r)`` instead, so many
    failures make an EPO run a partly-LS run without anything else showing it."""
    if rays <= 0 or fallbacks / rays <= rate:
        return None
    return (f"EPO's LP failed on {fallbacks} of {rays} rays ({fallbacks / rays:.1%}, more than {rate:.0%}); those "
            "steps used the linear-scalarization weights m * r / sum(r), so the front is partly PHN-LS's. Check the "
            "losses' scale (EPO balances r_i l_i) or use strategy=phn_ls")


def run_summary(kind: str, metrics: Dict[str, Any], folder: Any) -> Dict[str, Any]:
    """The closing summary of a finished run (``kind``: continual, pareto or continual_pareto), from the numbers
    its ``metrics`` already hold: ``{name: value, ..., "line": one line of text}`` (``metrics.json`` ``summary``)."""
    values: Dict[str, Any] = {}
    if kind == "continual":
        score, n = metrics["score"], len(metrics["matrix"])
        measured = metrics.get("forgetting_measured", 0)
        values[f"average_{score}"] = metrics["average_final"]
        values["average_forgetting"] = metrics["average_forgetting"] if measured else None
        text = (f"average {score} {metrics['average_final']:.4f} over {n} tasks, average forgetting "
                + (f"{metrics['average_forgetting']:.4f} ({measured} tasks)" if measured else "not measured"))
    elif kind == "pareto":
        values.update(hypervolume=metrics["hypervolume"], uniformity_mean=metrics["uniformity_mean"],
                      ref_point=metrics["ref_point"])
        text = (f"HV {metrics['hypervolume']:.4f} (ref {metrics['ref_point']}), "
                f"uniformity {metrics['uniformity_mean']:.4f}")
    elif kind == "continual_pareto":
        forgetting = [v for v in metrics["hv_forgetting_relative"] if v is not None]
        worst = max(forgetting) if forgetting else None
        values.update(final_average_hypervolume=metrics["hypervolume"], max_hv_forgetting_relative=worst,
                      ref_point=metrics["ref_point"])
        text = (f"final average HV {metrics['hypervolume']:.4f} over {len(metrics['hv_final'])} tasks (ref "
                f"{metrics['ref_point']}), max HV forgetting " + ("not measured" if worst is None else f"{worst:.2%}"))
    else:
        raise ValueError(f"unknown kind of run {kind!r}")
    warnings = len(metrics.get("warnings", [])) + len(metrics.get("health", {}).get("warnings", []))
    values.update(wall_time_s=metrics["wall_time_s"], warnings=warnings, run_dir=str(folder))
    text += f", wall time {metrics['wall_time_s']:.1f} s"
    text += f", {warnings} warning(s) in metrics.json" if warnings else ""
    values["line"] = f"summary: {metrics['benchmark']} {metrics['strategy']}: {text}; results in {folder}"
    return values
