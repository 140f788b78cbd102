"""Atomic checkpoints with the random-number-generator states needed for exact resumption, and the
checks that a checkpoint may be resumed: readable, of the same kind of run, same configuration."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch

from benchmarks.configuration.config import RESUME_SAFE_KEYS, ConfigError, resume_changes

NEW_RUN_FIX = "start a new run with run_dir=<new folder>"


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read (empty, truncated, or not a checkpoint of this program)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint cannot be written (a full disk, a lost folder); the message names the path and the fix."""


class ResumeMismatchError(ConfigError, RuntimeError):
    """``resume=true`` with a configuration that would change the run's results."""


def rng_state() -> Dict[str, Any]:
    """The global Python, NumPy, torch (and CUDA) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restores what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def temp_path(path: Path) -> Path:
    """This process's temporary file beside ``path`` (``checkpoint.pt.<pid>.tmp``)."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> None:
    """Writes ``payload`` to ``path`` atomically (a crash never leaves a half-written file):
    to this process's temporary file, synced to disk, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_failed(path, exc.strerror or str(exc)) from exc
    except RuntimeError as exc:  # torch's writer: "[enforce fail at inline_container.cc:...] ... file write failed"
        if not any(s in str(exc) for s in ("inline_container", "PytorchStreamWriter", "write failed")):
            raise
        raise _write_failed(path, "the write failed, most likely because the disk is full") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _write_failed(path: Path, why: str) -> CheckpointWriteError:
    kept = (f"the previous checkpoint {path} is intact: free space there (df -h {path.parent}) and continue with "
            "the same command plus resume=true" if path.exists() else
            f"no checkpoint was saved yet: free space there (df -h {path.parent}) and run the same command again")
    return CheckpointWriteError(f"cannot save the checkpoint {path} ({why}); {kept}, or start over in "
                                "run_dir=<a folder on a disk with space>")


def _broken(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"cannot resume from {path}: the checkpoint is {problem}. It cannot be repaired; delete it "
        f"(rm {path}) and run again without resume=true to restart this run from the beginning, or {NEW_RUN_FIX}"
    )


# turns a checkpoint of an earlier layout into the current one (a runner's own; the current layout unchanged)
Upgrade = Callable[[Dict[str, Any]], Dict[str, Any]]


def nest_strategy_state(state: Dict[str, Any], keys: Iterable[str]) -> Dict[str, Any]:
    """A Pareto runner's checkpoint of the layout before the strategies' ``state_dict()``, in the current one.

    Such a checkpoint holds the strategy's parts as top-level entries (``keys``: hnet, target, generator, ...)
    and the EPO solver's fallback count as ``epo_fallbacks`` (0 for every other solver); the current layout
    has them under ``strategy``, as the strategy's ``state_dict()`` returns them, with the solver's state as
    ``solver`` (``{"fallbacks": n}``, or ``{}`` for 0: a fresh solver's count). A checkpoint that has
    ``strategy``, or lacks one of ``keys``, is returned as it is (the check of the required entries then names
    what is missing)."""
    keys = tuple(keys)
    if "strategy" in state or not all(k in state for k in keys):
        return state
    fallbacks = int(state.get("epo_fallbacks", 0))
    strategy = {**{k: state[k] for k in keys}, "solver": {"fallbacks": fallbacks} if fallbacks else {}}
    return {**{k: v for k, v in state.items() if k not in keys and k != "epo_fallbacks"}, "strategy": strategy}


def load_checkpoint(path: Path, required: Iterable[str] = (), upgrade: Optional[Upgrade] = None) -> Dict[str, Any]:
    """Reads a checkpoint; a damaged file raises :class:`CheckpointError` naming the path and the fix.
    ``upgrade`` converts an earlier layout to the current one before the ``required`` entries are checked."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise _broken(path, "empty (0 bytes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # torch raises EOFError, RuntimeError, UnpicklingError, ... for a cut file
        raise _broken(path, f"truncated or damaged ({path.stat().st_size} bytes that do not read as a checkpoint)") from None
    if upgrade is not None and isinstance(state, dict):
        state = upgrade(state)
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise _broken(path, f"not a checkpoint this program can resume (missing {missing})")
    return state


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists), so stored and fresh values compare equal."""
    return json.loads(json.dumps(value, default=str))


def _describe(changes: List[Tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes)


def check_resumable(saved: Dict[str, Any], kind: str, config: Dict[str, Any], where: Path) -> None:
    """Refuses to continue a run of another kind, or with a changed result-altering key (naming them)."""
    if saved.get("kind", kind) != kind:
        raise ResumeMismatchError(
            f"resume=true refused: {where} holds a {saved.get('kind')} run, not a {kind} run; resume it with its "
            f"own settings, or {NEW_RUN_FIX}"
        )
    changes = resume_changes(_plain(saved["config"]), _plain(config))
    if changes:
        raise ResumeMismatchError(
            f"resume=true refused: the run in {where} was started with a different configuration, and these keys "
            f"change its results: {_describe(changes)}. Resume with the original values, or {NEW_RUN_FIX}. Only "
            f"{', '.join(RESUME_SAFE_KEYS)} may differ on resume"
        )


def check_same_build(saved: Optional[Dict[str, Any]], built: Dict[str, Any], where: Path) -> None:
    """Refuses to continue when the same configuration now builds different models (the code changed)."""
    if saved is None:
        return
    changes = resume_changes({"built": _plain(saved)}, {"built": _plain(built)})
    if changes:
        raise ResumeMismatchError(
            f"resume=true refused: the checkpoint in {where} holds models built differently from what this "
            f"version builds: {_describe(changes)}. Finish it with the version that started it, or {NEW_RUN_FIX}"
        )
