"""Issue 23, sweeps and report: a refused sweep writes nothing into the sweep it was refused by; the
sweep plugins' bad settings, Ctrl-C and failed jobs give one-line messages with the fix; an interrupted
or failed sweep is finished by one command (``resume=true``); the report counts a duplicated run once;
a fairness column that overflows its standardisation is refused; a full disk at a checkpoint, an
unquoted path and a file where the TensorBoard folder goes are each named with the fix."""
import errno
import json
import shlex
from pathlib import Path
from typing import Dict

import pytest

import benchmarks.command_line.sweep as sweep_module
from benchmarks.runners.checkpoint import CheckpointWriteError, save_checkpoint
from benchmarks.data.fairness import load_fairness
from cl_moo.data import DataFormatError
from cl_moo.report import main as report_main
from cl_moo.run import main

pytestmark = pytest.mark.slow  # whole sweeps and runs: outside the quick subset (pytest -m 'not slow')

TINY = ["benchmark=regression", "train.iterations=10", "hnet.hidden=[8]", "progress=false", "device=cpu"]


@pytest.fixture
def data_env(data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root.resolve()))


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file below ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(err: str) -> str:
    """The command's stderr, checked to be a message and not a traceback."""
    assert "Traceback" not in err, err
    return err


# --- 1. a refused sweep never rewrites the sweep in its folder ----------------------------------------


@pytest.mark.slow
def test_a_refused_sweep_leaves_the_finished_sweep_byte_identical(tmp_path, data_env, capsys):
    sweep_dir = tmp_path / "sweep"
    assert main(["-m", *TINY, "seed=0", f"hydra.sweep.dir={sweep_dir}"]) == 0
    before = snapshot(sweep_dir)
    assert "multirun.yaml" in before and "0/.hydra/config.yaml" in before and "0/.hydra/overrides.yaml" in before
    capsys.readouterr()
    # a new sweep into the folder: refused before Hydra writes its multirun.yaml and the jobs' .hydra files
    assert main(["-m", *TINY, "seed=5", f"hydra.sweep.dir={sweep_dir}"]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"hydra.sweep.dir={sweep_dir} already holds a sweep (1 finished (job 0))" in err
    assert "hydra.sweep.dir=<new folder>" in err and "resume=true" in err
    assert snapshot(sweep_dir) == before
    # resume=true with a changed result-altering key: refused the same way, naming the job and the key
    assert main(["-m", *TINY, "seed=5", "resume=true", f"hydra.sweep.dir={sweep_dir}"]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"job 0 [" in err and str(sweep_dir / "0") in err and "seed: 0 -> 5" in err
    assert snapshot(sweep_dir) == before
    # resume=true of a folder without a sweep is refused as a single run's resume of nothing
    assert main(["-m", *TINY, "seed=0", "resume=true", f"hydra.sweep.dir={tmp_path / 'none'}"]) == 2
    assert "holds no sweep" in capsys.readouterr().err and not (tmp_path / "none").exists()


# --- 2. the plugins' settings, Ctrl-C, and finishing a sweep with one command --------------------------


@pytest.mark.parametrize("args, expected", [
    (["hydra/sweeper=cl_moo_optuna", "train.lr=interval(0.1,0.01)"], "write train.lr=interval(0.01,0.1)"),
    (["hydra/sweeper=cl_moo_optuna", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is not valid"),
    (["seed=0,1", "hydra/launcher=cl_moo_joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is not valid"),
], ids=["interval-low-above-high", "n_trials-0", "joblib-n_jobs-0"])
def test_bad_plugin_settings_are_usage_errors_before_anything_is_written(tmp_path, data_env, capsys, args, expected):
    sweep_dir = tmp_path / "sweep"
    assert main(["-m", *TINY, *args, f"hydra.sweep.dir={sweep_dir}"]) == 2
    err = one_line(capsys.readouterr().err)
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not sweep_dir.exists()


def test_a_reused_optuna_study_with_a_changed_distribution_is_refused(tmp_path, data_env, capsys):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="x", storage=storage, direction="maximize")
    lr = optuna.distributions.LogUniformDistribution(1e-4, 1e-2)  # the shipped search space of train.lr (optuna 2)
    study.add_trial(optuna.trial.create_trial(params={"train.lr": 1e-3}, distributions={"train.lr": lr}, value=0.5))
    sweep_dir = tmp_path / "sweep"
    assert main(["-m", *TINY, "hydra/sweeper=cl_moo_optuna", "hydra.sweeper.n_trials=1", "train.lr=choice(0.01,0.001)",
                 f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=x", f"hydra.sweep.dir={sweep_dir}"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "hydra.sweeper.study_name=x" in err and "train.lr" in err and "new hydra.sweeper.study_name" in err
    assert not sweep_dir.exists() and len(optuna.load_study(study_name="x", storage=storage).trials) == 1


def _runner_that(monkeypatch, fail: Dict[int, BaseException]):
    """Replaces the jobs' runner: a job whose seed is in ``fail`` raises that, the others run for real."""
    real = sweep_module.runner_for

    def runner_for(cfg):
        if int(cfg.seed) in fail:
            def stop(cfg):
                raise fail[int(cfg.seed)]
            return stop
        return real(cfg)

    monkeypatch.setattr(sweep_module, "runner_for", runner_for)


def _finish_command(err: str, tmp_path: Path) -> list:
    """The command the message gives to finish the sweep, as main's argv."""
    line = err.split("finish the sweep with: ", 1)[1].strip().splitlines()[0]
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "cl_moo.run"] and argv[-1] == "resume=true"
    return argv[3:]


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_says_which_jobs_finished_and_one_command_finishes_it(tmp_path, data_env, capsys,
                                                                                 monkeypatch):
    sweep_dir = tmp_path / "sweep"
    with monkeypatch.context() as mp:
        _runner_that(mp, {1: KeyboardInterrupt()})
        assert main(["-m", *TINY, "seed=0,1,2", f"hydra.sweep.dir={sweep_dir}"]) == 130
    err = one_line(capsys.readouterr().err)
    assert "sweep interrupted" in err and "1 finished (job 0), 1 interrupted (job 1), 1 not started" in err
    finished = (sweep_dir / "0" / "metrics.json").read_bytes()
    assert not (sweep_dir / "2").exists()
    argv = _finish_command(err, tmp_path)
    assert f"hydra.sweep.dir={sweep_dir}" in argv and "seed=0,1,2" in argv
    # the same overrides plus resume=true: job 0 is a no-op, job 1 (nothing saved) and job 2 (never started) run
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"job {n} [seed={n}]" in out for n in range(3))
    assert (sweep_dir / "0" / "metrics.json").read_bytes() == finished
    runs = {int(p.parent.name): json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}
    assert {n: m["config"]["seed"] for n, m in runs.items()} == {0: 0, 1: 1, 2: 2}


# --- 5. a failed sweep names every failed job -----------------------------------------------------------


@pytest.mark.slow
def test_a_failed_sweep_names_every_failed_job_and_resume_reruns_them(tmp_path, data_env, capsys, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    with monkeypatch.context() as mp:
        _runner_that(mp, {0: RuntimeError("boom in seed 0"), 2: ValueError("boom in seed 2")})
        assert main(["-m", *TINY, "seed=0,1,2", f"hydra.sweep.dir={sweep_dir}"]) == 1
    err = one_line(capsys.readouterr().err)
    assert "2 sweep jobs failed" in err
    for num, error in ((0, "RuntimeError: boom in seed 0"), (2, "ValueError: boom in seed 2")):
        line = next(x for x in err.splitlines() if f"sweep job {num} [" in x)
        assert f"seed={num}]" in line and line.endswith(f"failed in {sweep_dir / str(num)}: {error}")
    assert "1 finished (job 1), 2 failed (jobs 0 2)" in err
    assert main(_finish_command(err, tmp_path)) == 0
    assert sorted(int(p.parent.name) for p in sweep_dir.glob("*/metrics.json")) == [0, 1, 2]
    assert not list(sweep_dir.glob(f"*/{sweep_module.FAILED}"))


# --- 3. the report counts a duplicated run once -----------------------------------------------------


@pytest.mark.slow
def test_report_counts_seed_0_0_and_a_copied_run_once_and_says_so(tmp_path, data_env, capsys):
    import shutil

    sweep_dir = tmp_path / "sweep"
    assert main(["-m", *TINY, "seed=0,0", f"hydra.sweep.dir={sweep_dir}"]) == 0
    shutil.copytree(sweep_dir / "0", sweep_dir / "copy")
    capsys.readouterr()
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "NOTE: 2 run folder(s) repeat another run's configuration and seed and are counted once" in out
    assert f"{sweep_dir / '1'} duplicates {sweep_dir / '0'}" in out
    assert f"{sweep_dir / 'copy'} duplicates {sweep_dir / '0'}" in out
    import csv

    with open(tmp_path / "report" / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["n_seeds"] == "1" and rows[0]["seeds"] == "0"
    assert "2 duplicate run(s) left out" in (tmp_path / "report" / "report.md").read_text()


# --- 4. a fairness column whose standardisation overflows ---------------------------------------------


def _small_adult(data_root: Path, folder: Path, rows: int = 800) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = (data_root / "adult.csv").read_text().splitlines()[:rows + 1]
    cells = lines[10].split(",")
    cells[2] = "1e308"  # fnlwgt of data row 10 (file line 11): finite, but the column's sum is not
    lines[10] = ",".join(cells)
    (folder / "adult.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_a_fairness_column_that_overflows_its_standardisation_is_refused(tmp_path, data_root, capsys):
    root = _small_adult(data_root, tmp_path / "data")
    with pytest.raises(DataFormatError, match=r"adult\.csv, line 11, column 'fnlwgt'.*non-finite.*'1e308'"):
        load_fairness("adult", root, verify=False)
    assert main(["benchmark=adult", "strategy=phn_ls", f"data.root={root}", "data.verify=false", "train.epochs=1",
                 "hnet.hidden=[20]", "target.hidden=[10]", "benchmark.n_eval_rays=5", "progress=false",
                 f"run_dir={tmp_path / 'run'}"]) == 1
    err = one_line(capsys.readouterr().err)
    assert "line 11, column 'fnlwgt'" in err and "HV" not in capsys.readouterr().out


# --- 5. one line naming the path and the fix --------------------------------------------------------------


TORCH_DISK_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")


@pytest.mark.parametrize("error", [TORCH_DISK_FULL, OSError(errno.ENOSPC, "No space left on device")],
                         ids=["torch-writer", "ENOSPC"])
def test_a_full_disk_at_a_checkpoint_names_the_path_and_the_fix(tmp_path, monkeypatch, error):
    path = tmp_path / "run" / "checkpoint.pt"

    def full(*args, **kwargs):
        raise error

    save_checkpoint(path, {"step": 1})
    before = path.read_bytes()
    monkeypatch.setattr("benchmarks.runners.checkpoint.torch.save", full)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(path, {"step": 2})
    message = str(info.value)
    assert f"cannot save the checkpoint {path}" in message and "resume=true" in message
    assert "run_dir=<a folder on a disk with space>" in message and "enforce fail" not in message
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]
    with pytest.raises(CheckpointWriteError, match="no checkpoint was saved yet.*run the same command again"):
        save_checkpoint(tmp_path / "fresh" / "checkpoint.pt", {"step": 1})


def test_a_full_disk_during_a_run_is_one_line_with_exit_1(tmp_path, data_env, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise TORCH_DISK_FULL

    monkeypatch.setattr("benchmarks.runners.checkpoint.torch.save", full)
    run_dir = tmp_path / "run"
    assert main([*TINY, f"run_dir={run_dir}"]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"cannot save the checkpoint {run_dir / 'checkpoint.pt'}" in err and "enforce fail" not in err


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_an_unquoted_path_hydra_cannot_read_says_how_to_quote_it(tmp_path, capsys, multirun):
    key = "hydra.sweep.dir" if multirun else "run_dir"
    path = f"{tmp_path}/my runs (1)"
    assert main((["-m", "seed=0,1"] if multirun else []) + ["benchmark=regression", f"{key}={path}"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "LexerNoViableAlt" not in err and "mismatched input" not in err
    assert f"quote the value: {key}='{path}'" in err and f"\"{key}='{path}'\"" in err
    assert not Path(path).exists()


def test_a_file_named_tensorboard_in_the_run_folder_is_named_with_the_fix(tmp_path, data_env, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tensorboard").write_text("not a folder")
    assert main([*TINY, f"run_dir={run_dir}"]) == 1
    err = one_line(capsys.readouterr().err)
    assert "Errno 17" not in err and f"{run_dir / 'tensorboard'} is a file" in err
    assert "move or delete that file, or pass run_dir=<new folder>" in err
