"""Reliability of runs: no silent wrong results, no lost runs, every bad input named.

Continual runs use the TINY settings of tests/test_run_cli.py, Pareto runs the SMALL settings of
tests/test_moo_run.py. Interruptions are simulated in-process (``save_checkpoint`` raising
Killed, or the process sending itself SIGTERM, after its k-th call) and once for real
(kill -9 of ``python -m cl_moo.run``).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import benchmarks.runners.cl_runner as cl_runner
import benchmarks.runners.pareto_runner as pareto_runner
import benchmarks.runners.pareto_problems as pareto_problems
import benchmarks.data.regression as regression
from benchmarks.runners.checkpoint import save_checkpoint
from benchmarks.configuration.config import RESUME_SAFE_KEYS, ConfigError, load_config
from benchmarks.runners.run_records import write_json
from cl_moo.run import main

pytestmark = pytest.mark.slow  # end-to-end runs killed, resumed and refused: outside the quick subset (pytest -m 'not slow')


class Killed(BaseException):
    """A simulated kill: not an Exception, and not the KeyboardInterrupt that cl_moo.run turns into a message."""


ROOT = Path(__file__).resolve().parents[2]
TINY = [  # tests/test_run_cli.py
    "benchmark=pmnist", "benchmark.n_tasks=3", "benchmark.train_per_task=200", "benchmark.test_per_task=100",
    "benchmark.pad_to=28", "train.iterations=15", "train.batch_size=32", "hnet.hidden=[20]", "target.hidden=[30]",
    "hnet.emb_dim=8", "hnet.chunk_size=1000", "progress=false",
]
SMALL = ["benchmark.max_rows=1500", "train.epochs=1", "train.batch_size=256", "hnet.hidden=[20]",  # test_moo_run.py
         "target.hidden=[10]", "benchmark.n_eval_rays=10", "progress=false"]
PARETO = ["benchmark=adult", "strategy=phn_ls"] + SMALL + ["train.epochs=3"]
LS_SEPARATE = ["benchmark=adult", "strategy=ls_separate"] + [o for o in SMALL if not o.startswith("hnet.")]  # 10 rays
PARETO_NUMBERS = ("hypervolume", "test_losses", "test_losses_trained_objectives", "uniformity_mean",
                  "non_dominated", "epo_fallbacks", "params", "diverged")


def run(args, run_dir, data_root, *extra):
    return main(list(args) + [f"run_dir={run_dir}", f"data.root={data_root}", *extra])


def metrics(run_dir):
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def interrupt_after(monkeypatch, module, k, spy=None):
    """``module.save_checkpoint`` writes, then raises Killed at its k-th call (a killed run)."""
    original, calls = module.save_checkpoint, {"n": 0}

    def interrupted(path, payload):
        original(path, payload)
        calls["n"] += 1
        if spy is not None:
            spy(path, calls["n"])
        if calls["n"] == k:
            raise Killed

    monkeypatch.setattr(module, "save_checkpoint", interrupted)
    return lambda: monkeypatch.setattr(module, "save_checkpoint", original)


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def cl_full(tmp_path_factory, data_root):
    """An uninterrupted TINY continual run."""
    out = tmp_path_factory.mktemp("cl") / "full"
    assert run(TINY, out, data_root) == 0
    return out


@pytest.fixture(scope="module")
def cl_partial_template(tmp_path_factory, data_root):
    """A TINY continual run killed right after experience 0's checkpoint (copy it before use)."""
    out = tmp_path_factory.mktemp("cl") / "partial"
    mp = pytest.MonkeyPatch()
    try:
        interrupt_after(mp, cl_runner, 1)
        with pytest.raises(Killed):
            run(TINY, out, data_root)
    finally:
        mp.undo()
    return out


@pytest.fixture()
def cl_partial(cl_partial_template, tmp_path):
    return Path(shutil.copytree(cl_partial_template, tmp_path / "partial"))


@pytest.fixture(scope="module")
def pareto_full(tmp_path_factory, data_root):
    """An uninterrupted 3-epoch PHN-LS run."""
    out = tmp_path_factory.mktemp("pareto") / "full"
    assert run(PARETO, out, data_root) == 0
    return out


# ----------------------------------------------------------------------------- 1. resume checks the config
@pytest.mark.parametrize("change, named", [
    ("seed=1", "seed: 0 -> 1"),
    ("benchmark.n_tasks=2", "benchmark.n_tasks: 3 -> 2"),
    ("train.lr=0.5", "train.lr: 0.0003 -> 0.5"),  # the pmnist small preset's lr
])
@pytest.mark.slow
def test_resume_refuses_a_changed_result_key(cl_partial, data_root, capsys, change, named):
    before = (cl_partial / "checkpoint.pt").read_bytes()
    assert run(TINY, cl_partial, data_root, "resume=true", change) == 2
    err = capsys.readouterr().err
    assert "resume=true refused" in err and named in err and "run_dir=<new folder>" in err
    assert all(key in err for key in RESUME_SAFE_KEYS)
    assert (cl_partial / "checkpoint.pt").read_bytes() == before and not (cl_partial / "metrics.json").exists()


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_built_differently(cl_partial, data_root, capsys):
    state = torch.load(cl_partial / "checkpoint.pt", weights_only=False)
    state["built"]["target"]["hidden"] = [99]  # as if this version of the code built another target
    torch.save(state, cl_partial / "checkpoint.pt")
    assert run(TINY, cl_partial, data_root, "resume=true") == 2
    err = capsys.readouterr().err
    assert "built differently" in err and "built.target.hidden: [99] -> [30]" in err


def test_pareto_resume_refuses_a_changed_seed(tmp_path, data_root, monkeypatch, capsys):
    out = tmp_path / "p"
    interrupt_after(monkeypatch, pareto_runner, 1)
    with pytest.raises(Killed):
        run(PARETO, out, data_root)
    assert run(PARETO, out, data_root, "resume=true", "seed=1") == 2
    assert "seed: 0 -> 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 2. Pareto runs checkpoint and resume
@pytest.mark.slow
@pytest.mark.parametrize("strategy, epochs_done", [("phn_ls", 1), ("phn_epo", 1), ("phn_ls", 3)])
def test_pareto_resume_after_an_epoch_matches_the_uninterrupted_run(tmp_path, data_root, monkeypatch, capsys,
                                                                    pareto_full, strategy, epochs_done):
    args = PARETO + [f"strategy={strategy}"]
    full = pareto_full
    if strategy != "phn_ls":
        full = tmp_path / "full"
        assert run(args, full, data_root) == 0
    part = tmp_path / "part"
    restore = interrupt_after(monkeypatch, pareto_runner, epochs_done)  # killed after that epoch's checkpoint
    with pytest.raises(Killed):
        run(args, part, data_root)
    restore()
    assert torch.load(part / "checkpoint.pt", weights_only=False)["epochs_done"] == epochs_done
    assert run(args, part, data_root, "resume=true") == 0
    assert "resuming" in capsys.readouterr().out and f"after epoch {epochs_done}/3" in (part / "log.txt").read_text()
    a, b = metrics(full), metrics(part)
    for key in PARETO_NUMBERS:
        assert a[key] == b[key], key


def test_finished_pareto_run_is_reported_not_retrained(pareto_full, data_root, monkeypatch, capsys):
    before = (pareto_full / "metrics.json").read_bytes()
    mtime = (pareto_full / "metrics.json").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(pareto_runner.ParetoHypernetworkStrategy, "train", no_training)
    assert run(PARETO, pareto_full, data_root, "resume=true") == 0
    out = capsys.readouterr().out
    assert "holds a finished run" in out and str(pareto_full / "metrics.json") in out
    assert (pareto_full / "metrics.json").read_bytes() == before
    assert (pareto_full / "metrics.json").stat().st_mtime_ns == mtime


def test_ls_separate_resumes_after_its_last_finished_model(tmp_path, data_root, monkeypatch, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert run(LS_SEPARATE, full, data_root) == 0
    restore = interrupt_after(monkeypatch, pareto_runner, 4)
    with pytest.raises(Killed):
        run(LS_SEPARATE, part, data_root)
    restore()
    assert run(LS_SEPARATE, part, data_root, "resume=true") == 0
    assert "after LS model 4/10" in capsys.readouterr().out
    a, b = metrics(full), metrics(part)
    for key in PARETO_NUMBERS:
        assert a[key] == b[key], key


# ----------------------------------------------------------------------------- 3. one run per run_dir
@pytest.mark.parametrize("holder", ["live pid", "other host"])
def test_a_busy_run_dir_is_refused(tmp_path, data_root, capsys, holder):
    out = tmp_path / "busy"
    out.mkdir()
    info = ({"pid": os.getppid(), "host": socket.gethostname()} if holder == "live pid"
            else {"pid": dead_pid(), "host": "another-host.example"})
    (out / ".lock").write_text(json.dumps(info))
    assert run(PARETO, out, data_root) == 1
    err = capsys.readouterr().err
    assert "in use by another run" in err and f"pid {info['pid']}" in err and str(out / ".lock") in err
    assert json.loads((out / ".lock").read_text()) == info and not (out / "metrics.json").exists()


@pytest.mark.slow
def test_a_stale_lock_is_reported_and_taken_over(tmp_path, data_root, capsys):
    out = tmp_path / "stale"
    out.mkdir()
    pid = dead_pid()
    (out / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    assert run(PARETO, out, data_root) == 0
    err = capsys.readouterr().err
    assert "stale lock" in err and f"pid {pid}" in err and "stale lock" in (out / "log.txt").read_text()
    assert not (out / ".lock").exists() and (out / "metrics.json").exists()


def test_temp_files_are_per_process_and_foreign_ones_are_left_alone(tmp_path, monkeypatch):
    names, real_save = [], torch.save

    def spy(obj, f, *args, **kwargs):
        names.append(Path(f.name).name)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    foreign = [tmp_path / "checkpoint.pt.1.tmp", tmp_path / "metrics.json.1.tmp"]
    for f in foreign:
        f.write_text("another process's half-written file")
    save_checkpoint(tmp_path / "checkpoint.pt", {"a": 1})
    write_json(tmp_path / "metrics.json", {"a": 1}, overwrite=False)
    assert names == [f"checkpoint.pt.{os.getpid()}.tmp"]
    assert all(f.read_text() == "another process's half-written file" for f in foreign)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.pt", "metrics.json"] + [f.name for f in foreign])
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_json(tmp_path / "metrics.json", {"a": 2}, overwrite=False)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}


@pytest.mark.slow
def test_a_finished_or_interrupted_run_dir_is_refused_without_resume(cl_full, cl_partial, data_root, capsys):
    before = (cl_full / "metrics.json").read_bytes()
    assert run(TINY, cl_full, data_root) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (cl_full / "metrics.json").read_bytes() == before
    assert run(TINY, cl_partial, data_root) == 2
    assert "pass resume=true to continue it" in capsys.readouterr().err
    assert run(TINY, cl_full, data_root, "resume=true") == 0  # finished: reported, nothing rewritten
    assert "holds a finished run" in capsys.readouterr().out
    assert run(TINY, cl_full, data_root, "resume=true", "seed=1") == 2  # ... but not as another configuration (a usage error)
    assert "seed: 0 -> 1" in capsys.readouterr().err
    assert (cl_full / "metrics.json").read_bytes() == before


# ----------------------------------------------------------------------------- 4. log.txt flushed per line
@pytest.mark.slow
def test_log_has_every_line_at_sigterm_and_resume_with_harmless_changes_matches(tmp_path, data_root, cl_full,
                                                                                  monkeypatch, capsys):
    out, seen = tmp_path / "log", {}

    def spy(path, n):
        seen[n] = (out / "log.txt").read_text()  # what is on disk while the run still lives
        if n == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    original = cl_runner.save_checkpoint
    monkeypatch.setattr(cl_runner, "save_checkpoint", lambda path, payload: (original(path, payload),
                                                                            spy(path, len(seen) + 1)))
    with pytest.raises(SystemExit) as exc:
        run(TINY, out, data_root)
    assert exc.value.code == 128 + signal.SIGTERM and not (out / ".lock").exists()  # SIGTERM: lock released
    assert "after task 0" in seen[1] and "after task 1" in seen[2] and "Top1_Acc_Exp" in seen[1]
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("after task")]
    assert len(printed) == 2 and all(line in seen[2] for line in printed)

    monkeypatch.setattr(cl_runner, "save_checkpoint", original)
    assert run(TINY, out, data_root, "resume=true", "device=cpu", "data.verify=false", "data.download=false") == 0
    assert "resuming" in capsys.readouterr().out and "resuming" in (out / "log.txt").read_text()
    a, b = metrics(cl_full), metrics(out)
    assert a["matrix"] == b["matrix"] and a["average_forgetting"] == b["average_forgetting"]


def test_pareto_progress_goes_to_the_log(pareto_full):
    log = (pareto_full / "log.txt").read_text()
    assert "epoch 1/3" in log and "epoch 3/3" in log and "HV" in log


# ----------------------------------------------------------------------------- 5. config holes
@pytest.mark.parametrize("overrides, named", [
    (["benchmark=adult", "train.epochs=0"], "train.epochs=0 is not valid: must be an integer >= 1"),
    (["train.iterations=-3"], "train.iterations=-3 is not valid: must be an integer >= 1"),
    (["train.eval_batch_size=0"], "train.eval_batch_size=0 is not valid: must be an integer >= 1"),
    (["benchmark=adult", "benchmark.ref_point=[1.0,1.0]"], "benchmark.ref_point=[1.0, 1.0] is not valid: must be a list of 3"),
    (["benchmark=bank", "benchmark.ref_point=[1.0,1.0,inf]"], "benchmark.ref_point=[1.0, 1.0, inf] is not valid: must be a list of 3 finite"),
    (["train.lr=nan"], "train.lr=nan is not valid: must be a finite number > 0"),
    (["train.lr=inf"], "train.lr=inf is not valid: must be a finite number > 0"),
    (["train.lr=0"], "train.lr=0 is not valid: must be a finite number > 0"),
    (["strategy.beta=nan"], "strategy.beta=nan is not valid: must be a finite number >= 0"),
    (["strategy.beta=-1"], "strategy.beta=-1 is not valid: must be a finite number >= 0"),
    (["benchmark=adult", "strategy=phn_ls", "strategy.alpha=0"], "strategy.alpha=0 is not valid: must be a finite number > 0"),
    (["benchmark=adult", "strategy=phn_epo", "strategy.alpha=inf"], "strategy.alpha=inf is not valid"),
    (["benchmark=adult", "strategy=phn_ls", "strategy.rays_per_step=0"], "strategy.rays_per_step=0 is not valid: must be an integer >= 1"),
    (["seed=abc"], "seed='abc' is not valid: must be an integer from 0"),
    (["seed=-1"], "seed=-1 is not valid: must be an integer from 0"),
    (["benchmark.n_tasks=0"], "benchmark.n_tasks=0 is not valid: must be an integer >= 1"),
    (["benchmark=adult", "benchmark.max_rows=0"], "benchmark.max_rows=0 is not valid: must be an integer >= 1 (or null)"),
    (["hnet.hidden=[20,0]"], "hnet.hidden=[20, 0] is not valid: must be a list of integers >= 1"),
    (["target.hidden=[1.5]"], "target.hidden=[1.5] is not valid: must be a list of integers >= 1"),
    (["target.hidden=7"], "target.hidden=7 is not valid: must be a list of integers >= 1"),
    (["hnet.chunk_size=2.5"], "hnet.chunk_size=2.5 is not valid: must be an integer >= 1"),
])
def test_bad_values_fail_at_load_naming_key_value_and_range(overrides, named):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides)
    assert named in str(exc.value)


def test_bad_value_on_the_command_line_exits_2_before_any_work(tmp_path, capsys):
    assert main(["benchmark=adult", "train.epochs=0", f"run_dir={tmp_path / 'r'}"]) == 2
    assert "train.epochs=0 is not valid" in capsys.readouterr().err and not (tmp_path / "r").exists()


def _unwritable(tmp_path):
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        return folder / "run"
    return Path("/sys/cl_moo_test_run")  # root may write anywhere but not into sysfs


@pytest.mark.parametrize("where", ["file", "under a file", "unwritable"])
def test_a_run_dir_that_cannot_be_used_is_named(tmp_path, data_root, capsys, where):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    run_dir = {"file": a_file, "under a file": a_file / "run", "unwritable": _unwritable(tmp_path)}[where]
    assert run(PARETO, run_dir, data_root) == 1
    err = capsys.readouterr().err
    assert f"run_dir={run_dir}" in err and ("is an existing file" in err or "cannot be" in err)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_broken_checkpoint_is_named_with_the_fix(cl_partial, data_root, capsys, damage):
    ckpt = cl_partial / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    assert run(TINY, cl_partial, data_root, "resume=true") == 1
    err = capsys.readouterr().err
    assert f"cannot resume from {ckpt}" in err and ("empty" in err if damage == "empty" else "truncated" in err)
    assert f"rm {ckpt}" in err and "run_dir=<new folder>" in err and "Traceback" not in err
    assert not (cl_partial / ".lock").exists()


# ----------------------------------------------------------------------------- 6. divergence and NaN
@pytest.mark.slow
def test_divergence_without_nan_is_flagged(tmp_path, data_root, cl_full, capsys):
    out = tmp_path / "div"
    assert run(["benchmark=regression", "train.lr=1e6", "train.iterations=40", "progress=false"], out, data_root) == 0
    m = metrics(out)
    assert m["diverged"] is True and len(m["warnings"]) >= 1
    assert "training diverged (task 0)" in m["warnings"][0] and "lower train.lr" in m["warnings"][0]
    err = capsys.readouterr().err
    assert "WARNING: training diverged" in err and "WARNING: training diverged" in (out / "log.txt").read_text()
    assert metrics(cl_full)["diverged"] is False and metrics(cl_full)["warnings"] == []


def test_healthy_pareto_run_is_not_flagged(pareto_full):
    assert metrics(pareto_full)["diverged"] is False and metrics(pareto_full)["warnings"] == []
    assert metrics(pareto_full)["hypervolume"] > 0 and metrics(pareto_full)["hypervolume_note"] is None


def test_nan_losses_fail_with_a_clear_error(tmp_path, data_root, monkeypatch, capsys):
    from benchmarks.data.avalanche_streams import task_benchmark

    def nan_regression(**kwargs):
        x = torch.linspace(0, 1, 20).unsqueeze(1)
        return task_benchmark([(x, x * float("nan"))] * 3, [(x, x)] * 3), {"input_size": 1, "output_size": 1,
                                                                           "fallback": None}

    monkeypatch.setattr(regression, "regression_1d", nan_regression)  # what the registry's loader calls
    out = tmp_path / "nan_cl"
    assert run(["benchmark=regression", "train.iterations=5", "progress=false"], out, data_root) == 1
    assert "training loss became nan" in capsys.readouterr().err
    assert not (out / "metrics.json").exists() and not (out / ".lock").exists()

    def nan_loss(z, y, s):
        return z.mean() * float("nan")

    monkeypatch.setattr(pareto_problems, "FAIRNESS_LOSSES", [nan_loss] + list(pareto_problems.FAIRNESS_LOSSES[1:]))
    for args, message in ((PARETO, "a loss became NaN/inf"), (LS_SEPARATE, "got a NaN/inf loss")):
        out = tmp_path / args[1].split("=")[1]
        assert run(args, out, data_root) == 1
        assert message in capsys.readouterr().err
        assert not (out / "metrics.json").exists() and not (out / ".lock").exists()


# ----------------------------------------------------------------------------- 7. messages kept
def test_unfit_strategy_and_missing_data_keep_their_messages(tmp_path, capsys):
    assert main(["benchmark=adult", "strategy=hnet_cl"]) == 2
    assert "does not apply" in capsys.readouterr().err
    out = tmp_path / "r"
    assert main(PARETO + [f"run_dir={out}", f"data.root={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "adult.csv" in err and str(tmp_path) in err
    assert not (out / ".lock").exists()


# ----------------------------------------------------------------------------- real kill -9 and SIGTERM
def _start(args, out, data_root, logs):
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    cmd = [sys.executable, "-m", "cl_moo.run", *args, f"run_dir={out}", f"data.root={data_root}"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(logs / "out.txt", "a"), stderr=open(logs / "err.txt", "a"))


def _wait_for(proc, ready, what, timeout=120.0):
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.slow
def test_kill_9_then_resume_matches_the_uninterrupted_run(tmp_path, data_root, cl_full, capsys):
    out, logs = tmp_path / "killed", tmp_path
    proc = _start(TINY, out, data_root, logs)
    _wait_for(proc, lambda: (out / "checkpoint.pt").exists(), "the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists() and (out / ".lock").exists()  # killed: its lock is left, stale
    assert "after task 0" in (out / "log.txt").read_text()  # flushed per line
    assert not list(out.glob("*.tmp"))

    assert run(TINY, out, data_root, "resume=true") == 0
    assert f"pid {proc.pid}" in capsys.readouterr().err  # the stale lock, reported and taken over
    a, b = metrics(cl_full), metrics(out)
    assert a["matrix"] == b["matrix"] and a["average_forgetting"] == b["average_forgetting"]
