"""Command line behind ``python -m cl_moo.run benchmark=pmnist [key=value ...]`` (Hydra overrides).

Writes into the run folder (default ``runs/<benchmark>-<strategy>-<preset>-seed<seed>``):
TensorBoard event files, ``log.txt``, ``checkpoint.pt`` and ``metrics.json``.
"""
from __future__ import annotations

import sys
import warnings
from typing import Optional, Sequence

from .config import CONTINUAL_BENCHMARKS, CONTINUAL_STRATEGIES, PARETO_BENCHMARKS, PARETO_STRATEGIES, ConfigError, load_config


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"cl_moo.run: {exc}", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", message="No loggers specified")
    if cfg.strategy.name in CONTINUAL_STRATEGIES and cfg.benchmark.name in CONTINUAL_BENCHMARKS:
        from .cl_runner import run_cl as runner
    elif cfg.strategy.name in PARETO_STRATEGIES and cfg.benchmark.name in PARETO_BENCHMARKS:
        from .moo_runner import run_moo as runner
    else:
        print(
            f"cl_moo.run: strategy={cfg.strategy.name} does not apply to benchmark={cfg.benchmark.name}; "
            "continual: benchmark=pmnist|regression with strategy=hnet_cl|finetune; "
            "Pareto: benchmark=adult|default|bank with strategy=phn_ls|phn_epo|ls_separate",
            file=sys.stderr,
        )
        return 2
    try:
        result = runner(cfg)
    except (FileExistsError, FileNotFoundError, RuntimeError) as exc:
        print(f"cl_moo.run: {exc}", file=sys.stderr)
        return 1
    if result.get("data_note"):
        print(f"NOTE: {result['data_note']}")
    print(f"metrics: {result['tensorboard'].rsplit('/', 1)[0]}/metrics.json")
    print(f"TensorBoard logs: {result['tensorboard']}  (tensorboard --logdir {result['tensorboard']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
