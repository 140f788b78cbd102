"""Which runner runs a checked configuration, and the checks made before any run folder exists.

Shared by the single run (:mod:`benchmarks.command_line.cli`) and the sweep
(:mod:`benchmarks.command_line.sweep`); the runners are imported only when needed (Avalanche loads slowly).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict

from omegaconf import DictConfig

from benchmarks.configuration.config import ConfigError, families

Runner = Callable[[DictConfig], Dict[str, Any]]


def check_applies(cfg: DictConfig) -> str:
    """``"continual"``, ``"pareto"`` or ``"continual_pareto"``; raises :class:`ConfigError` when the
    strategy does not fit the benchmark."""
    for kind, benchmarks, strategies in families():
        if cfg.strategy.name in strategies and cfg.benchmark.name in benchmarks:
            return kind
    valid = "; ".join(f"{kind.replace('_', ' ')}: benchmark={'|'.join(b)} with strategy={'|'.join(s)}"
                      for kind, b, s in families())
    raise ConfigError(f"strategy={cfg.strategy.name} does not apply to benchmark={cfg.benchmark.name}; {valid}")


def runner_for(cfg: DictConfig) -> Runner:
    """The runner of a checked configuration (imported only when needed: Avalanche loads slowly)."""
    warnings.filterwarnings("ignore", message="No loggers specified")
    kind = check_applies(cfg)
    if kind == "continual":
        from benchmarks.runners.cl_runner import run_cl

        return run_cl
    if kind == "continual_pareto":
        from benchmarks.runners.continual_pareto_runner import run_pareto_cl

        return run_pareto_cl
    from benchmarks.runners.pareto_runner import run_moo

    return run_moo


def check_device(cfg: DictConfig) -> None:
    """``device=cuda`` on a machine without a visible GPU is a usage error (exit 2), found before any
    run folder is made; torch is imported only to answer this."""
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda was asked for but no CUDA GPU is visible; use device=auto or device=cpu")
