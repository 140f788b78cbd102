"""Run folders, device choice, peak memory, and JSON results."""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any, Dict

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


def write_json(path: Path, data: Dict[str, Any]) -> None:
    """Writes ``data`` as JSON atomically, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(path)


def config_dict(cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
