"""Command line behind ``python -m cl_moo.run benchmark=pmnist [key=value ...]`` (Hydra overrides).

Writes into the run folder (default ``runs/<benchmark>-<strategy>-<preset>-seed<seed>``):
TensorBoard event files, ``log.txt``, ``checkpoint.pt`` and ``metrics.json``.

Sweeps (Hydra multirun): ``python -m cl_moo.run -m seed=0,1,2 hnet.mip=true,false`` runs every
combination, each in its own folder ``multirun/<date>/<time>/<job number>`` (``hydra.sweep.dir=``
sets the sweep folder). Every combination is checked before any job starts; each job reports its
objective (accuracy, minus the MSE, or the hypervolume: higher is better). Launchers and the
Optuna search (``hydra/launcher=cl_moo_joblib|cl_moo_ray|cl_moo_submitit_local|cl_moo_slurm``,
``hydra/sweeper=cl_moo_optuna``) need ``pip install -e ".[sweep]"``. Collect the results with
``python -m cl_moo.report <sweep folder>``.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Sequence

from omegaconf import DictConfig

from benchmarks.runners.budget import PAUSED_EXIT_STATUS, RunPaused
from benchmarks.command_line.cli_flags import config_text, help_text, info_text, parse_flags
from benchmarks.configuration.config import ConfigError, load_config
from benchmarks.runners.dispatch import Runner, check_applies, check_device, runner_for

def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command line; exit status 0 done, 1 the run failed, 2 a usage error (a bad key or
    value, a missing GPU, a run folder that refuses the command), 75 paused at a checkpoint by
    ``train.budget_s`` (continue with ``resume=true``), 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        flags = parse_flags(argv)
        if flags.help:
            print(help_text(__doc__ or "", flags.overrides))
            return 0
        if flags.multirun:
            return _multirun(flags.overrides)
        cfg = load_config(flags.overrides)
        check_applies(cfg)
        if flags.cfg or flags.info:
            print(config_text(cfg, flags) if flags.cfg else info_text(cfg, flags))
            return 0
        check_device(cfg)
    except ConfigError as exc:
        print(f"cl_moo.run: {exc}", file=sys.stderr)
        return 2
    return _run(cfg, runner_for(cfg))


def _run(cfg: DictConfig, runner: Runner) -> int:
    from benchmarks.runners.run_records import run_folder

    try:
        result = runner(cfg)
    except RunPaused as paused:  # train.budget_s reached at a checkpoint: not a failure, but not done either
        print(f"cl_moo.run: {paused}", file=sys.stderr)
        return PAUSED_EXIT_STATUS
    except KeyboardInterrupt:
        where = run_folder(cfg)
        print(f"cl_moo.run: interrupted. {where} keeps what the last checkpoint saved; continue with the same "
              f"command plus resume=true (run_dir={where})", file=sys.stderr)
        return 130
    except ConfigError as exc:  # the run folder refuses the command (resume of nothing, changed config)
        print(f"cl_moo.run: {exc}", file=sys.stderr)
        return 2
    except (FileExistsError, FileNotFoundError, RuntimeError) as exc:
        print(f"cl_moo.run: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as exc:  # e.g. a full disk, a strategy refusing its input
        print(f"cl_moo.run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if result.get("data_note"):
        print(f"NOTE: {result['data_note']}")
    print(f"metrics: {result['tensorboard'].rsplit('/', 1)[0]}/metrics.json")
    print(f"TensorBoard logs: {result['tensorboard']}  (tensorboard --logdir {result['tensorboard']})")
    print(_summary_line(cfg, result))
    return 0


def _summary_line(cfg: DictConfig, result: Dict[str, Any]) -> str:
    """The run's summary line: from ``metrics.json`` (``summary``), or made for a run finished before it was kept."""
    from benchmarks.runners.run_records import run_folder, run_summary

    summary = result.get("summary") or run_summary(check_applies(cfg), result, run_folder(cfg))
    return summary["line"]


def _multirun(argv: Sequence[str]) -> int:
    """``-m``: checks every combination, then runs the sweep through Hydra (see :mod:`benchmarks.command_line.sweep`)."""
    from hydra.errors import HydraException

    from benchmarks.command_line.sweep import (SweepJobError, describe_jobs, failed_jobs, launch_sweep, prepare_sweep,
                                               resume_command)

    try:
        sweep = prepare_sweep(argv)
    except ConfigError as exc:
        print(f"cl_moo.run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cl_moo.run: interrupted while checking the sweep; nothing was started", file=sys.stderr)
        return 130
    print(f"sweep: {sweep.combinations} combinations checked; jobs write to {sweep.sweep_dir}/<job number>")
    finish = (f"finish the sweep with: {resume_command(sweep)}" if sweep.grid else
              "a search cannot be finished job by job: run it again in a new hydra.sweep.dir=<folder> "
              "(hydra.sweeper.storage and study_name keep its trials)")
    try:
        outcome = launch_sweep(sweep)
    except KeyboardInterrupt:
        print(f"cl_moo.run: sweep interrupted; in {sweep.sweep_dir}: {describe_jobs(sweep.sweep_dir, sweep.jobs)}. "
              f"Finished jobs are kept and an interrupted one continues from its last checkpoint: {finish}",
              file=sys.stderr)
        return 130
    except (SweepJobError, HydraException) as exc:
        failed = failed_jobs(sweep.sweep_dir) or [str(exc).strip().splitlines()[0]]
        print(f"cl_moo.run: {len(failed)} sweep job{'s' if len(failed) > 1 else ''} failed:\n  " + "\n  ".join(failed)
              + f"\nIn {sweep.sweep_dir}: {describe_jobs(sweep.sweep_dir, sweep.jobs)}. Fix the cause, then {finish}",
              file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ValueError, TypeError) as exc:  # a plugin refusing what the checks let through
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"cl_moo.run: the sweep failed: {type(exc).__name__}: {first}. In {sweep.sweep_dir}: "
              f"{describe_jobs(sweep.sweep_dir, sweep.jobs)}", file=sys.stderr)
        return 1
    for job in outcome.jobs:
        print(f"job {job.num} [{' '.join(job.swept)}]: objective {job.objective:.6g}  {job.folder}")
    if outcome.best is not None:
        print(f"best: {outcome.best.get('best_value')} with {outcome.best.get('best_params')} "
              f"({sweep.sweep_dir / 'optimization_results.yaml'})")
    print(f"sweep folder: {sweep.sweep_dir}  (report: python -m cl_moo.report {sweep.sweep_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
