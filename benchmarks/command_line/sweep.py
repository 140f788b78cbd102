"""Hydra multirun behind ``python -m cl_moo.run -m key=a,b ...``: sweeps on Hydra's own engines.

Hydra's sweepers expand the sweep (the basic sweeper: cartesian product; ``hydra/sweeper=optuna``:
a search) and its launchers run the jobs (in-process by default; local processes, Ray or SLURM
with the ``sweep`` extra's plugins, see ``configs/hydra/``). This module adds what a single run
has: before anything starts, every combination of the sweep is checked with
:func:`benchmarks.configuration.config.load_config` (the one validation path), and a bad one fails naming it.
Each job loads its configuration the same way from its own overrides (presets apply, explicit
overrides win), runs in its own folder ``<hydra.sweep.dir>/<job number>`` and returns its
:func:`objective` to the sweeper.

The sweep folder is checked before Hydra writes into it: one that holds a sweep is refused, unless
``resume=true`` finishes that (grid) sweep, where job n is combination n: finished jobs return their
objective untouched, a job with a checkpoint resumes, and one that saved nothing starts; a job whose
folder holds another configuration's run is refused first. A failed job records why in its folder
(``failed.txt``), so a failed sweep names every failed job.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from benchmarks.command_line.cli_flags import MULTIRUN_FLAGS
from benchmarks.configuration.config import (ConfigError, config_dir, hydra_quote, load_config, open_dict_overrides,
                                             quote_hint)
from benchmarks.runners.dispatch import check_applies, check_device, runner_for

TASK_NAME = "cl_moo"
CONFIG_NAME = "config"
INSTALL_HINT = 'install the sweep plugins with: pip install -e ".[sweep]"'
MAX_LISTED = 3  # combinations named per error in a message
FAILED = "failed.txt"  # in a job's folder: why the job failed (one line), so a sweep names every failed job
METRICS, CHECKPOINT = "metrics.json", "checkpoint.pt"  # as benchmarks.runners.run_dir names them (not imported: torch)


class SweepJobError(RuntimeError):
    """One job of a sweep failed; the message names the job, its overrides and its folder."""


@dataclass
class Sweep:
    """A validated sweep, ready for Hydra: the overrides it gets and where the jobs write."""

    overrides: List[str]
    sweep_dir: Path
    combinations: int  # checked combinations (for a search: the corners of its intervals)
    args: List[str] = field(default_factory=list)  # the command line's overrides (for the resume command)
    grid: bool = True  # the basic sweeper: job n is combination n, so the sweep can be finished with resume=true
    jobs: Optional[int] = None  # how many jobs the sweep runs (grid: its combinations; a search: n_trials)


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
        hint = quote_hint(args)
        raise ConfigError(hint or f"{str(exc).strip().splitlines()[0]}; write overrides as key=value, "
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
        if interval.start > interval.end:
            raise ConfigError(f"{key}=interval({interval.start},{interval.end}): the low end is above the high end; "
                              f"write {key}=interval({interval.end},{interval.start}) (low first)")
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
    check_device(cfg)  # device=cuda without a GPU: refused before any job folder is written


def validate_sweep(combinations: Sequence[Sequence[str]]) -> None:
    """Raises :class:`ConfigError` naming the bad combinations (at most ``MAX_LISTED``) and why."""
    bad: Dict[str, List[str]] = {}  # error message -> the combinations that give it
    for combination in combinations:
        if any(o.split("=", 1)[0].lstrip("+~") == "run_dir" for o in combination):
            raise ConfigError("run_dir is set per job in a sweep (<hydra.sweep.dir>/<job number>); "
                              "drop run_dir= and set hydra.sweep.dir=<folder> instead")
        if any(o.split("=", 1)[0].lstrip("+~") == "train.budget_s" for o in combination):
            raise ConfigError("train.budget_s pauses a single run (python -m cl_moo.run without -m); a sweep has no "
                              "time budget: drop train.budget_s=, or run the combinations one by one")
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


def prepare_sweep(args: Sequence[str]) -> Sweep:
    """Validates the whole sweep, its Hydra settings and its folder; raises :class:`ConfigError` before
    any job starts and before Hydra writes anything (a folder holding a sweep is never rewritten)."""
    args = [a for a in args if a not in MULTIRUN_FLAGS]
    task, hydra_args = split_overrides(args)
    with _hydra_app() as hydra:
        hcfg = _compose_hydra_config(hydra, hydra_args).hydra
        params = hcfg.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
        combinations = sweep_combinations(task, params, hydra.config_loader)
        if not combinations:
            raise ConfigError(f"the sweep {task} has no combination (an empty range or list?); nothing was started")
        check_hydra_settings(hcfg, task, params)
        validate_sweep(combinations)
        sweep_dir = Path(str(hcfg.sweep.dir)).resolve()  # resolved once: ${now:...} and worker cwd
        grid = str(hcfg.sweeper.get("_target_", "")).endswith("BasicSweeper")
        n_trials = hcfg.sweeper.get("n_trials")
    check_sweep_dir(sweep_dir, combinations, grid, args)
    fixed = open_dict_overrides([a for a in args if not a.startswith("hydra.sweep.dir=")])
    fixed.append(f"hydra.sweep.dir={hydra_quote(str(sweep_dir))}")
    if not any(a.startswith("hydra.job.chdir=") for a in args):
        fixed.append("hydra.job.chdir=false")  # jobs see paths as the command line did
    return Sweep(overrides=fixed, sweep_dir=sweep_dir, combinations=len(combinations), args=list(args), grid=grid,
                 jobs=len(combinations) if grid else (int(n_trials) if isinstance(n_trials, int) else None))


# ---------------------------------------------------------------------------------------------
# Hydra settings the plugins would only reject with a traceback once the sweep runs


def check_hydra_settings(hcfg: DictConfig, task: Sequence[str], params: Mapping[str, Any]) -> None:
    """Counts the plugins need (``n_trials``, ``n_jobs``) and, for an Optuna study kept in a database,
    that this search space fits the one it was searched with; raises :class:`ConfigError`."""
    counts = (("sweeper", "n_trials", "the number of trials the search runs, >= 1"),
              ("sweeper", "n_jobs", "the number of trials asked for at once, >= 1"),
              ("launcher", "n_jobs", "the number of jobs run at once, >= 1, or -1 for one per core"))
    for group, key, meaning in counts:
        value = hcfg[group].get(key)
        bad = value == 0 or (value < 0 and group == "sweeper") if isinstance(value, int) else False
        if bad and not isinstance(value, bool):
            raise ConfigError(f"hydra.{group}.{key}={value} is not valid: give {meaning}; nothing was started")
    if "Optuna" in str(hcfg.sweeper.get("_target_", "")):
        _check_optuna_study(hcfg.sweeper, task, params)


def _check_optuna_study(sweeper: DictConfig, task: Sequence[str], params: Mapping[str, Any]) -> None:
    """A study reused through ``hydra.sweeper.storage`` / ``study_name`` must get the distributions it was
    searched with (Optuna refuses a changed one once the first trial asks)."""
    storage, name = sweeper.get("storage"), sweeper.get("study_name")
    if not storage or not name:
        return
    storage = str(storage)
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        return  # a new database: nothing searched yet (and nothing created here)
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    args = [f"{k}={v}" for k, v in params.items()] + [a for a in task if _parse([a])[0].is_sweep_override()]
    try:
        distributions, _ = create_params_from_overrides(args)
    except ValueError as exc:
        raise ConfigError(f"invalid search space {args}: {exc}") from None
    try:
        study = optuna.load_study(study_name=str(name), storage=storage)
    except KeyError:
        return  # no study of that name in the database yet
    for trial in study.get_trials(deepcopy=False):
        for key, new in distributions.items():
            old = trial.distributions.get(key)
            if old is None:
                continue
            try:
                optuna.distributions.check_distribution_compatibility(old, new)
            except ValueError as exc:
                raise ConfigError(
                    f"hydra.sweeper.study_name={name} in {storage} searched {key} as {old}, and this sweep asks "
                    f"for {new} ({str(exc).rstrip('.')}); search the study's space again, or pass a new "
                    "hydra.sweeper.study_name=<name> for the new space; nothing was started") from None


# ---------------------------------------------------------------------------------------------
# the sweep folder: what it holds, and the check before Hydra writes into it


def _job_folders(sweep_dir: Path) -> Dict[int, Path]:
    """The job folders ``<sweep_dir>/<job number>`` that exist, by number."""
    if not sweep_dir.is_dir():
        return {}
    return {int(p.name): p for p in sweep_dir.iterdir() if p.name.isdigit() and p.is_dir()}


def job_state(folder: Path) -> str:
    """``finished`` (``metrics.json``), ``failed`` (the job's failure record) or ``interrupted`` (stopped,
    with or without a checkpoint)."""
    if (folder / METRICS).is_file():
        return "finished"
    return "failed" if (folder / FAILED).is_file() else "interrupted"


def _numbers(nums: Sequence[int]) -> str:
    return " ".join(str(n) for n in sorted(nums))


def describe_jobs(sweep_dir: Path, total: Optional[int] = None) -> str:
    """``2 finished (jobs 0 1), 1 interrupted (job 2), 3 not started`` for a sweep folder."""
    by_state: Dict[str, List[int]] = {}
    folders = _job_folders(sweep_dir)
    for num, folder in folders.items():
        by_state.setdefault(job_state(folder), []).append(num)
    parts = [f"{len(nums)} {state} (job{'s' if len(nums) > 1 else ''} {_numbers(nums)})"
             for state in ("finished", "failed", "interrupted") if (nums := by_state.get(state))]
    if total is not None and total > len(folders):
        parts.append(f"{total - len(folders)} not started")
    return ", ".join(parts) or "no job started"


def _holds_sweep(sweep_dir: Path) -> bool:
    return (sweep_dir / "multirun.yaml").exists() or bool(_job_folders(sweep_dir))


def _resume_requested(combinations: Sequence[Sequence[str]]) -> bool:
    return any(o.partition("=")[0].lstrip("+") == "resume" and o.partition("=")[2].lower() == "true"
               for c in combinations for o in c)


def check_sweep_dir(sweep_dir: Path, combinations: Sequence[Sequence[str]], grid: bool,
                    args: Sequence[str] = ()) -> None:
    """Refuses, before Hydra writes its ``multirun.yaml`` and the jobs' ``.hydra/`` files, a sweep into a
    folder that holds one: without ``resume=true`` always; with it, a search (its trials are sampled anew)
    or a grid whose jobs would change a started job's results (checked as a single run's resume is)."""
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise ConfigError(f"hydra.sweep.dir={sweep_dir} is an existing file, not a folder; pass "
                          "hydra.sweep.dir=<new folder>")
    resume = _resume_requested(combinations)
    if not _holds_sweep(sweep_dir):
        if resume:
            raise ConfigError(f"resume=true but hydra.sweep.dir={sweep_dir} holds no sweep (no multirun.yaml, no job "
                              "folder); drop resume=true to start the sweep")
        return
    jobs = describe_jobs(sweep_dir)
    if not resume:
        finish = (f"finish this one with the same overrides plus resume=true: {_resume_command(args, sweep_dir)}"
                  if grid else "a search cannot be finished job by job")
        raise ConfigError(f"hydra.sweep.dir={sweep_dir} already holds a sweep ({jobs}); nothing was written. Pass "
                          f"hydra.sweep.dir=<new folder> to start another, or {finish}")
    if not grid:
        raise ConfigError(f"resume=true finishes a sweep of key=a,b lists (the basic sweeper); a search samples its "
                          f"trials anew, so the jobs in hydra.sweep.dir={sweep_dir} ({jobs}) cannot be matched. "
                          "Start the search in a new hydra.sweep.dir=<folder> (hydra.sweeper.storage and "
                          "study_name keep a study's trials across sweeps)")
    for num, folder in sorted(_job_folders(sweep_dir).items()):
        if num < len(combinations):
            _check_job_resumable(num, folder, combinations[num], combinations)


def _started_config(folder: Path) -> Optional[Dict[str, Any]]:
    """The resolved configuration a job folder's run was started with: from ``metrics.json``, else from
    Hydra's ``.hydra/overrides.yaml`` of a job that has a checkpoint; None when it holds no run."""
    finished, interrupted = (folder / METRICS).is_file(), (folder / CHECKPOINT).is_file()
    if finished:
        try:
            config = json.loads((folder / METRICS).read_text()).get("config")
        except (OSError, ValueError, AttributeError):
            config = None
        if isinstance(config, dict):
            return config
    overrides = folder / ".hydra" / "overrides.yaml"
    if (finished or interrupted) and overrides.is_file():
        old = [str(o) for o in OmegaConf.load(overrides)]
        with _outside_running_hydra():
            return OmegaConf.to_container(load_config(old + [f"run_dir={hydra_quote(str(folder))}"]), resolve=True)
    return None


def _check_job_resumable(num: int, folder: Path, combination: Sequence[str],
                         combinations: Sequence[Sequence[str]]) -> None:
    from benchmarks.configuration.config import resume_changes

    old = _started_config(folder)
    if old is None:
        return
    with _outside_running_hydra():
        new = OmegaConf.to_container(load_config(list(combination) + [f"run_dir={hydra_quote(str(folder))}"]),
                                     resolve=True)
    changes = resume_changes(json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str)))
    if changes:
        what = "; ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in changes)
        raise ConfigError(f"resume=true refused: job {num} [{' '.join(_swept(combination, combinations))}] would "
                          f"run in {folder}, which holds a run started with a different configuration ({what}); "
                          "nothing was written. Resume with the sweep's original overrides (in "
                          f"{folder.parent / 'multirun.yaml'}), or pass hydra.sweep.dir=<new folder>")


def _hydra_value(value: str) -> str:
    """A path as a Hydra override value: bare when Hydra reads it as is, else quoted."""
    return value if re.fullmatch(r"[A-Za-z0-9_./:@%+-]+", value) else hydra_quote(value)


def resume_command(sweep: Sweep) -> str:
    """The one command that finishes ``sweep``: the same overrides, its folder and ``resume=true``."""
    return _resume_command(sweep.args, sweep.sweep_dir)


def _resume_command(args: Sequence[str], sweep_dir: Path) -> str:
    keep = [a for a in args if a not in MULTIRUN_FLAGS and not a.startswith("hydra.sweep.dir=")
            and a.partition("=")[0].lstrip("+~") != "resume"]
    return shlex.join(["python", "-m", "cl_moo.run", "-m", *keep, f"hydra.sweep.dir={_hydra_value(str(sweep_dir))}",
                       "resume=true"])


def failed_jobs(sweep_dir: Path) -> List[str]:
    """``sweep job <n> [<overrides>] failed in <folder>: <error>`` for every job of the folder that recorded
    a failure (its ``failed.txt``), by job number."""
    lines = []
    for num, folder in sorted(_job_folders(sweep_dir).items()):
        if job_state(folder) == "failed":
            why = (folder / FAILED).read_text(errors="replace").strip().splitlines() or ["(no reason recorded)"]
            lines.append(why[0])
    return lines


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
    record = Path(folder) / FAILED
    record.unlink(missing_ok=True)  # a failure of an earlier attempt
    try:
        with _outside_running_hydra():
            job_cfg = load_config(overrides + [f"run_dir={hydra_quote(folder)}"])
        if job_cfg.resume and not ((Path(folder) / METRICS).exists() or (Path(folder) / CHECKPOINT).exists()):
            job_cfg.resume = False  # finishing a sweep: this job never saved anything, so it starts
        return objective(runner_for(job_cfg)(job_cfg))
    except Exception as exc:
        error = SweepJobError(f"sweep job {hc.job.num} [{' '.join(overrides)}] failed in {folder}: "
                              f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        try:
            record.write_text(f"{error}\n")
        except OSError:
            pass  # a full disk or a removed folder: the launcher still reports this job
        raise error from exc
