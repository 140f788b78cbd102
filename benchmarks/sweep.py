"""Hydra multirun behind ``python -m cl_moo.run -m key=a,b ...``: sweeps on Hydra's own engines.

Hydra's sweepers expand the sweep (the basic sweeper: cartesian product; ``hydra/sweeper=optuna``:
a search) and its launchers run the jobs (in-process by default; local processes, Ray or SLURM
with the ``sweep`` extra's plugins, see ``configs/hydra/``). This module adds what a single run
has: before anything starts, every combination of the sweep is checked with
:func:`benchmarks.config.load_config` (the one validation path), and a bad one fails naming it.
Each job loads its configuration the same way from its own overrides (presets apply, explicit
overrides win), runs in its own folder ``<hydra.sweep.dir>/<job number>`` and returns its
:func:`objective` to the sweeper.
"""
from __future__ import annotations

import itertools
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from .cli import MULTIRUN_FLAGS, check_applies, runner_for
from .config import ConfigError, config_dir, load_config

TASK_NAME = "cl_moo"
CONFIG_NAME = "config"
INSTALL_HINT = 'install the sweep plugins with: pip install -e ".[sweep]"'
MAX_LISTED = 3  # combinations named per error in a message


class SweepJobError(RuntimeError):
    """One job of a sweep failed; the message names the job, its overrides and its folder."""


@dataclass
class Sweep:
    """A validated sweep, ready for Hydra: the overrides it gets and where the jobs write."""

    overrides: List[str]
    sweep_dir: Path
    combinations: int  # checked combinations (for a search: the corners of its intervals)


@dataclass
class JobOutcome:
    """One finished job: its number, the overrides that vary in the sweep, its objective and folder."""

    num: int
    swept: List[str]
    objective: float
    folder: str


@dataclass
class SweepOutcome:
    """What a sweep produced: its folder, its finished jobs and, for a search, the best trial."""

    sweep_dir: Path
    jobs: List[JobOutcome] = field(default_factory=list)
    best: Optional[Dict[str, Any]] = None


def objective(result: Mapping[str, Any]) -> float:
    """The value a sweeper maximises: hypervolume, accuracy, or minus the MSE (lower MSE is better)."""
    if "hypervolume" in result:
        return float(result["hypervolume"])
    value = float(result["average_final"])
    return -value if result.get("score") == "mse" else value


# ---------------------------------------------------------------------------------------------
# Hydra plumbing


@contextmanager
def _hydra_app() -> Iterator[Any]:
    """A Hydra instance on the shipped configs (what ``@hydra.main`` would build), cleared on exit."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    version.setbase(None)  # the same version base as load_config
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(TASK_NAME, create_config_search_path(f"file://{config_dir()}"))
    try:
        yield hydra
    finally:
        GlobalHydra.instance().clear()


@contextmanager
def _outside_running_hydra() -> Iterator[None]:
    """Lets :func:`load_config` start its own Hydra while a sweep's Hydra is set up, then restores it
    (and the job name, which names the jobs' log files)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime

    running = GlobalHydra.instance().hydra
    name = JobRuntime.instance().conf.get("name") if running is not None else None
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        if running is not None:
            GlobalHydra.instance().initialize(running)
            JobRuntime.instance().set("name", name)


def _parse(args: Sequence[str], config_loader: Any = None) -> List[Any]:
    """Hydra's own parse of ``key=value`` overrides (sweeps included)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create(config_loader=config_loader).parse_overrides(list(args))
    except HydraException as exc:
        raise ConfigError(f"{str(exc).strip().splitlines()[0]}; write overrides as key=value, "
                          "and sweeps as key=a,b or key=range(0,3)") from None


def split_overrides(args: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Splits the command line into the run's overrides and Hydra's own (``hydra.*``, ``hydra/...``)."""
    task, hydra = [], []
    for arg, override in zip(args, _parse(args)):
        (hydra if override.is_hydra_override() else task).append(arg)
    return task, hydra


def _compose_hydra_config(hydra: Any, hydra_overrides: List[str]) -> DictConfig:
    """The sweep's Hydra settings (sweeper, launcher, folders); an unknown plugin says how to install it."""
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    try:
        return hydra.compose_config(CONFIG_NAME, hydra_overrides, run_mode=RunMode.MULTIRUN,
                                    validate_sweep_overrides=False)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0].rstrip(".")
        hint = f"; {INSTALL_HINT}. {_own_plugin_configs()}" if "hydra/" in first and "Could not" in first else ""
        raise ConfigError(f"invalid Hydra setting in {hydra_overrides}: {first}{hint}") from None


def _own_plugin_configs() -> str:
    """The launcher and sweeper configs shipped in ``configs/hydra/`` (named in error messages)."""
    groups = []
    for group in ("launcher", "sweeper"):
        names = sorted(p.stem for p in (config_dir() / "hydra" / group).glob("*.yaml"))
        groups.append(f"hydra/{group}={'|'.join(names)}")
    return f"cl_moo's configs: {', '.join(groups)}"


def _values(override: Any) -> List[str]:
    """The values one override takes in the sweep: every listed value; an interval's two ends."""
    key = override.get_key_element()
    if not override.is_sweep_override():
        return [f"{key}={override.get_value_element_as_str()}"]
    if override.is_discrete_sweep():
        return [f"{key}={v}" for v in override.sweep_string_iterator()]
    if override.is_interval_sweep():
        interval = override.value()
        return [f"{key}={interval.start}", f"{key}={interval.end}"]
    raise ConfigError(f"{key}: sweep type {override.value_type.name} is not supported; "
                      "use key=a,b, key=range(...), key=choice(...) or key=interval(low,high)")


def sweep_combinations(task_overrides: Sequence[str], params: Optional[Mapping[str, Any]] = None,
                       config_loader: Any = None) -> List[List[str]]:
    """Every combination of the sweep (BasicSweeper's cartesian product); ``params`` (the sweeper's
    ``hydra.sweeper.params``) come first and the command line overrides them, as in Hydra."""
    args = [f"{k}={v}" for k, v in (params or {}).items()] + list(task_overrides)
    by_key: Dict[str, List[str]] = {}
    for override in _parse(args, config_loader):
        by_key[override.get_key_element()] = _values(override)
    return [list(c) for c in itertools.product(*by_key.values())]


def _swept(combination: Sequence[str], combinations: Sequence[Sequence[str]]) -> List[str]:
    """The overrides of one combination that vary across the sweep (names it in messages)."""
    values: Dict[str, set] = {}
    for other in combinations:
        for o in other:
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    varying = [o for o in combination if len(values.get(o.partition("=")[0], ())) > 1]
    return varying or list(combination)


def _check(combination: Sequence[str]) -> None:
    """One combination through the single-run checks: load_config, then strategy fits benchmark."""
    with _outside_running_hydra():
        cfg = load_config(combination)
    check_applies(cfg)


def validate_sweep(combinations: Sequence[Sequence[str]]) -> None:
    """Raises :class:`ConfigError` naming the bad combinations (at most ``MAX_LISTED``) and why."""
    bad: Dict[str, List[str]] = {}  # error message -> the combinations that give it
    for combination in combinations:
        if any(o.split("=", 1)[0].lstrip("+~") == "run_dir" for o in combination):
            raise ConfigError("run_dir is set per job in a sweep (<hydra.sweep.dir>/<job number>); "
                              "drop run_dir= and set hydra.sweep.dir=<folder> instead")
        try:
            _check(combination)
        except ConfigError as exc:
            bad.setdefault(str(exc), []).append(f"[{' '.join(_swept(combination, combinations))}]")
    if bad:
        n_bad = sum(len(v) for v in bad.values())
        lines = [f"{' '.join(names[:MAX_LISTED])}{' ...' if len(names) > MAX_LISTED else ''}: {message}"
                 for message, names in bad.items()]
        raise ConfigError(f"{n_bad} of {len(combinations)} sweep combinations are invalid; nothing was "
                          "started. Fix or drop these values:\n  " + "\n  ".join(lines))


def _quote(value: str) -> str:
    """A Hydra override value quoted as a literal string (commas in a path are not a sweep)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def prepare_sweep(args: Sequence[str]) -> Sweep:
    """Validates the whole sweep and fixes its folder; raises :class:`ConfigError` before any job starts."""
    args = [a for a in args if a not in MULTIRUN_FLAGS]
    task, hydra_args = split_overrides(args)
    with _hydra_app() as hydra:
        hcfg = _compose_hydra_config(hydra, hydra_args).hydra
        params = hcfg.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
        combinations = sweep_combinations(task, params, hydra.config_loader)
        validate_sweep(combinations)
        sweep_dir = Path(str(hcfg.sweep.dir)).resolve()  # resolved once: ${now:...} and worker cwd
    fixed = [a for a in args if not a.startswith("hydra.sweep.dir=")] + [f"hydra.sweep.dir={_quote(str(sweep_dir))}"]
    if not any(a.startswith("hydra.job.chdir=") for a in args):
        fixed.append("hydra.job.chdir=false")  # jobs see paths as the command line did
    return Sweep(overrides=fixed, sweep_dir=sweep_dir, combinations=len(combinations))


@contextmanager
def _absolute_data_root() -> Iterator[None]:
    """Makes a relative ``CL_MOO_DATA`` absolute for the jobs' processes, whatever their folder."""
    old = os.environ.get("CL_MOO_DATA")
    if old:
        os.environ["CL_MOO_DATA"] = str(Path(old).resolve())
    try:
        yield
    finally:
        if old is not None:
            os.environ["CL_MOO_DATA"] = old


@contextmanager
def _restored_logging() -> Iterator[None]:
    """Gives the root logger back as it was: Hydra sets it up for the sweep and each job."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's import logs alembic's set-up at INFO
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def launch_sweep(sweep: Sweep) -> SweepOutcome:
    """Hands the sweep to Hydra's sweeper and launcher; a failed job raises :class:`SweepJobError`."""
    with _absolute_data_root(), _restored_logging(), _hydra_app() as hydra:
        returns = hydra.multirun(CONFIG_NAME, sweep_job, sweep.overrides)
    finished = list(itertools.chain.from_iterable(returns or []))
    everyone = [list(ret.overrides) for ret in finished]
    outcome = SweepOutcome(sweep_dir=sweep.sweep_dir, jobs=[_job_outcome(r, everyone) for r in finished])
    results = sweep.sweep_dir / "optimization_results.yaml"
    if results.exists():
        outcome.best = OmegaConf.to_container(OmegaConf.load(results))
    return outcome


def _job_outcome(ret: Any, everyone: Sequence[Sequence[str]]) -> JobOutcome:
    """A finished job (Hydra's ``JobReturn``) as the command line reports it."""
    hydra_cfg = ret.hydra_cfg.hydra
    return JobOutcome(num=int(hydra_cfg.job.num), swept=_swept(list(ret.overrides), everyone),
                      objective=float(ret.return_value), folder=str(hydra_cfg.runtime.output_dir))


# ---------------------------------------------------------------------------------------------
# the task each job runs (module level, so launchers can pickle it by reference)


def sweep_job(cfg: DictConfig) -> float:
    """Hydra task: loads the job's configuration from its overrides, runs it in the job's folder
    and returns its :func:`objective`."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    folder = str(hc.runtime.output_dir)
    try:
        with _outside_running_hydra():
            job_cfg = load_config(overrides + [f"run_dir={folder}"])
        return objective(runner_for(job_cfg)(job_cfg))
    except Exception as exc:
        raise SweepJobError(f"sweep job {hc.job.num} [{' '.join(overrides)}] failed in {folder}: "
                            f"{type(exc).__name__}: {exc}") from exc
