"""One run per run folder: the folder checks, the lock, ``log.txt``, and what a folder already holds.

:func:`open_run` is the one entry both runners use::

    with open_run(cfg, kind="continual") as run:
        if run.finished: return run.finished_metrics(config)
        state = run.resume_state(config, required) if run.resume else None
        ... run.log.say("after task 0 ...") ... save_checkpoint(run.checkpoint, ...) ...

* ``run_dir`` must be a folder this process can write; else :class:`RunDirError` naming the path.
* ``run_dir/.lock`` (created with ``O_EXCL``, holding pid and host) keeps a second run out
  (:class:`RunDirBusyError`); a lock whose pid no longer runs on this host is stale: reported and taken over.
* A folder with ``metrics.json`` holds a finished run: refused without ``resume=true``; with it, nothing
  is retrained or rewritten. A folder with ``checkpoint.pt`` holds an interrupted run: refused without
  ``resume=true``.
* ``log.txt`` is line-buffered; :meth:`RunLog.say` prints a progress line to stdout and to the log.
* SIGTERM ends the run like Ctrl-C (exit status 143), so the lock is released and no temp file stays.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from omegaconf import DictConfig

from benchmarks.runners.budget import RunPaused
from benchmarks.runners.checkpoint import Upgrade, check_resumable, load_checkpoint
from benchmarks.configuration.config import ConfigError
from benchmarks.runners.progress import outside_bars
from benchmarks.runners.run_records import LossMonitor, config_dict, peak_memory_mb, run_folder

LOCK, CHECKPOINT, METRICS, LOG, TENSORBOARD = ".lock", "checkpoint.pt", "metrics.json", "log.txt", "tensorboard"
NEW_FOLDER = "run_dir=<new folder>"


class RunFolderRefused(ConfigError):
    """The command line asks for something the run folder's contents forbid (a start over a run, a
    resume of nothing): a usage error, fixed by changing ``resume`` or ``run_dir``."""


class RunDirError(RuntimeError):
    """The run folder cannot be used: a file, not writable, or unreadable contents."""


class RunDirBusyError(RunDirError):
    """Another live run holds the run folder's lock."""


# ----------------------------------------------------------------------------- folder
def prepare_folder(path: Path) -> None:
    """Creates ``path`` if needed; raises :class:`RunDirError` if it is a file or cannot be written."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run_dir={path} is an existing file, not a folder; pass {NEW_FOLDER} (a folder path)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"run_dir={path} cannot be created ({exc.strerror or exc}); pass {NEW_FOLDER} in a "
                          "place you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise _not_writable(path, "permission denied")


def check_layout(path: Path) -> None:
    """The run's own folders (``tensorboard/``, ``tensorboard/avalanche/``) must not exist as files."""
    for sub in (TENSORBOARD, f"{TENSORBOARD}/avalanche"):
        place = path / sub
        if place.exists() and not place.is_dir():
            raise RunDirError(f"{place} is a file, but the run writes its TensorBoard logs into a folder of that "
                              f"name; move or delete that file, or pass {NEW_FOLDER}")


def _not_writable(path: Path, why: str) -> RunDirError:
    return RunDirError(f"run_dir={path} cannot be written ({why}); fix its permissions or pass {NEW_FOLDER}")


# ----------------------------------------------------------------------------- lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _create_lock(lock: Path) -> bool:
    """Creates ``lock`` holding this process's pid and host; False if it already exists."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise _not_writable(lock.parent, exc.strerror or str(exc)) from None
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
    return True


def _holder(lock: Path) -> Optional[Dict[str, Any]]:
    """The lock's ``{"pid", "host"}``, or None when it cannot be read."""
    try:
        info = json.loads(lock.read_text())
        return info if isinstance(info.get("pid"), int) and isinstance(info.get("host"), str) else None
    except (OSError, ValueError, AttributeError):
        return None


def _is_stale(info: Dict[str, Any]) -> bool:
    return info["host"] == socket.gethostname() and info["pid"] != os.getpid() and not _pid_alive(info["pid"])


def _busy(lock: Path, info: Optional[Dict[str, Any]]) -> RunDirBusyError:
    who = f"pid {info['pid']} on host {info['host']}" if info else "a run whose lock file cannot be read"
    return RunDirBusyError(
        f"run_dir={lock.parent} is in use by another run ({who}; lock file {lock}). Wait for it to finish or "
        f"pass {NEW_FOLDER}; if you are sure no run uses this folder, delete {lock}"
    )


def acquire_lock(lock: Path) -> Optional[str]:
    """Takes ``lock``; returns a warning when a stale lock was taken over. Raises :class:`RunDirBusyError`."""
    if _create_lock(lock):
        return None
    info = _holder(lock)
    if info is None or not _is_stale(info):
        raise _busy(lock, info)
    aside = lock.with_name(f"{lock.name}.stale.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.replace(lock, aside)  # atomic: of several runs taking over, each moves a different file
    moved = _holder(aside) if aside.exists() else None
    if moved is not None and moved != info:  # the fresh lock of a run that took over first: put it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, lock)
        aside.unlink(missing_ok=True)
        raise _busy(lock, moved)
    aside.unlink(missing_ok=True)
    if not _create_lock(lock):  # another run took it over first
        raise _busy(lock, _holder(lock))
    return (f"stale lock {lock} taken over: its run (pid {info['pid']} on host {info['host']}) is no longer "
            "running; it was killed or crashed")


def release_lock(lock: Path) -> None:
    """Removes ``lock`` if this process holds it."""
    info = _holder(lock)
    if info is not None and info["pid"] == os.getpid() and info["host"] == socket.gethostname():
        lock.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- log and signals
class RunLog:
    """``log.txt``, line-buffered (a killed run keeps every line it printed)."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", buffering=1, encoding="utf-8")

    def say(self, line: str) -> None:
        """A progress line: to stdout (above the progress bar) and to the log."""
        with outside_bars(sys.stdout):
            print(line, flush=True)
        self.file.write(line + "\n")

    def note(self, line: str) -> None:
        """A line to the log only (the command line prints it itself, e.g. the run's summary)."""
        self.file.write(line + "\n")

    def warn(self, line: str) -> None:
        """A warning line: to stderr (above the progress bar) and to the log."""
        with outside_bars(sys.stderr):
            print(f"WARNING: {line}", file=sys.stderr, flush=True)
        self.file.write(f"WARNING: {line}\n")

    def close(self) -> None:
        self.file.close()


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While inside: SIGTERM raises ``SystemExit(143)``, so cleanup (lock, temp files) runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- the run folder
@dataclass
class RunFolder:
    """An open, locked run folder: where things go, what it already holds, and its log."""

    path: Path
    kind: str
    log: RunLog
    resume: bool
    finished: bool

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    def resume_state(self, config: Dict[str, Any], required: Iterable[str] = (),
                     upgrade: Optional[Upgrade] = None) -> Dict[str, Any]:
        """The checkpoint, checked to be readable, of this kind of run and of the same configuration
        (an earlier layout converted by ``upgrade``)."""
        state = load_checkpoint(self.checkpoint, required, upgrade)
        if "config" in state:
            check_resumable(state, self.kind, config, self.path)
        else:
            self.log.warn(f"{self.checkpoint} predates configuration records: resuming it unchecked")
        return state

    def divergence_warnings(self, monitor: LossMonitor, cfg: DictConfig) -> List[str]:
        """The loss monitor's divergence warnings, each naming the fix, also written to the log."""
        warnings = monitor.warnings(f"lower train.lr (now {cfg.train.lr}) and run again in a new run_dir")
        for w in warnings:
            self.log.warn(w)
        return warnings

    def health_section(self, log: Any, writer: Any = None, *, announced: bool = False) -> Dict[str, Any]:
        """The ``health`` section of ``metrics.json`` (:class:`cl_moo.health.HealthLog`), and with a TensorBoard
        ``writer`` its text tab ``health``. Each finding goes to the log, so a run that did not learn says so
        at its end; ``announced``: the findings were logged as they happened, so only their count is."""
        section = log.as_dict()
        if announced and section["warnings"]:
            self.log.warn(f"training health: {len(section['warnings'])} finding(s) above; also in {self.metrics} "
                          "(health)")
        for message in [] if announced else section["warnings"]:
            self.log.warn(f"training health: {message}")
        if writer is not None:
            text = "\n\n".join(section["warnings"]) or "no training-health warning"
            writer.add_text("health", text, 0)
        return section

    def record(self, cfg: DictConfig, device: Any, config: Dict[str, Any], built: Dict[str, Any],
               warnings: List[str]) -> Dict[str, Any]:
        """The ``metrics.json`` fields every runner writes: what ran and where, peak memory, the
        TensorBoard folder, divergence, the config and what was built."""
        return {"benchmark": cfg.benchmark.name, "strategy": cfg.strategy.name, "preset": cfg.preset,
                "seed": cfg.seed, "device": str(device), **peak_memory_mb(device),
                "tensorboard": str(self.path / "tensorboard"), "diverged": bool(warnings), "warnings": warnings,
                "config": config, "built": built}

    def finished_metrics(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """``metrics.json`` of the finished run here (checked to be of the same configuration); says so."""
        try:
            metrics = json.loads(self.metrics.read_text())
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self.metrics} cannot be read ({exc}); the run's results are lost: "
                              f"pass {NEW_FOLDER} to run it again") from None
        check_resumable({"config": metrics.get("config", config)}, self.kind, config, self.path)
        self.log.say(f"{self.path} holds a finished run: nothing to resume or retrain. Its metrics are in "
                     f"{self.metrics}")
        return metrics


def _check_contents(path: Path, resume: bool) -> bool:
    """Whether ``path`` holds a finished run; refuses a start over a run, and a resume of nothing."""
    finished, interrupted = (path / METRICS).exists(), (path / CHECKPOINT).exists()
    if not resume and finished:
        raise RunFolderRefused(f"{path} already holds a finished run ({path / METRICS}, never overwritten); pass "
                               f"{NEW_FOLDER} to start another")
    if not resume and interrupted:
        raise RunFolderRefused(f"{path} already holds a run ({CHECKPOINT}); pass resume=true to continue it, or "
                               f"{NEW_FOLDER} to start another")
    if resume and not (finished or interrupted):
        raise RunFolderRefused(f"resume=true but {path / CHECKPOINT} does not exist; drop resume=true to start "
                               "a new run")
    return finished


@contextlib.contextmanager
def open_run(cfg: DictConfig, kind: str) -> Iterator[RunFolder]:
    """Checks and locks the run folder of ``cfg``, opens its log; releases everything on exit."""
    path = run_folder(cfg)
    if cfg.resume and not path.exists():
        raise RunFolderRefused(f"resume=true but run_dir={path} does not exist; drop resume=true to start a new run")
    prepare_folder(path)
    check_layout(path)
    lock = path / LOCK
    taken_over = acquire_lock(lock)
    log: Optional[RunLog] = None
    try:
        with sigterm_as_exit():
            log = RunLog(path / LOG)
            if taken_over:
                log.warn(taken_over)
            finished = _check_contents(path, bool(cfg.resume))
            yield RunFolder(path=path, kind=kind, log=log, resume=bool(cfg.resume), finished=finished)
    finally:
        if log is not None:
            log.close()
        release_lock(lock)


Train = Callable[[DictConfig, "RunFolder", Dict[str, Any], Optional[Dict[str, Any]]], Dict[str, Any]]


def run_in_folder(cfg: DictConfig, kind: str, required: Iterable[str], train: Train,
                  upgrade: Optional[Upgrade] = None) -> Dict[str, Any]:
    """What every runner does around its training: lock the run folder, then return a finished run's
    metrics untouched, or ``train(cfg, run, config, state)`` from the checked checkpoint
    (``resume=true``, with the ``required`` entries; one of an earlier layout converted by ``upgrade``)
    or from scratch."""
    with open_run(cfg, kind) as run:
        config = config_dict(cfg)
        if run.finished:
            return run.finished_metrics(config)
        state = run.resume_state(config, required, upgrade) if run.resume else None
        try:
            return train(cfg, run, config, state)
        except RunPaused as paused:  # train.budget_s: the log says where the run stopped and how to go on
            run.log.note(str(paused))
            raise
