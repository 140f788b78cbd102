"""Sweeps through Hydra multirun (``python -m cl_moo.run -m ...``): every combination checked before
anything starts, one folder per job, and Hydra's engines: the basic sweeper in-process, the joblib,
Ray and submitit launchers, and the Optuna search. The plugins come with ``pip install -e ".[sweep]"``
(also part of ``.[test]``); without them these tests fail and say so."""
import importlib
import json
from pathlib import Path
from typing import Dict

import pytest
from omegaconf import OmegaConf

from benchmarks.configuration.config import ConfigError, config_dir, load_config
from benchmarks.command_line.sweep import objective, prepare_sweep, sweep_combinations
from cl_moo.report import main as report_main
from cl_moo.run import main

pytestmark = pytest.mark.slow  # whole sweeps through Hydra's launchers: outside the quick subset (pytest -m 'not slow')

TINY_CL = ["benchmark=regression", "train.iterations=10", "hnet.hidden=[8]", "progress=false"]
TINY_PARETO = ["benchmark=adult", "strategy=phn_ls", "benchmark.max_rows=1500", "train.epochs=1",
               "train.batch_size=256", "hnet.hidden=[20]", "target.hidden=[10]", "benchmark.n_eval_rays=10",
               "progress=false"]
INSTALL = 'pip install -e ".[sweep]"'


def require(module: str) -> None:
    """Fails (never skips) when a sweep plugin is missing, naming the install command."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{module} is not installed ({exc}); install the sweep plugins with: {INSTALL}")


@pytest.fixture
def data_env(data_root, monkeypatch):
    """CL_MOO_DATA as an absolute path: jobs in other processes inherit it."""
    monkeypatch.setenv("CL_MOO_DATA", str(data_root.resolve()))


def job_metrics(sweep_dir: Path) -> Dict[int, dict]:
    """metrics.json of every job below a sweep folder, by job number."""
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}


def sweep(tmp_path: Path, *args: str) -> Path:
    """Runs ``python -m cl_moo.run -m <args>`` into tmp_path/sweep, checks it succeeded, returns the folder."""
    sweep_dir = tmp_path / "sweep"
    assert main(["-m", *args, f"hydra.sweep.dir={sweep_dir}"]) == 0
    return sweep_dir


# --- expansion and validation: nothing starts unless every combination is valid -------------------


def test_sweep_expands_like_hydras_basic_sweeper():
    combos = sweep_combinations(["seed=0,1,2", "hnet.mip=true,false", "progress=false"])
    assert len(combos) == 6 and ["seed=1", "hnet.mip=False", "progress=False"] in combos  # as Hydra writes them
    # a search's interval is checked at both ends; the command line overrides the sweeper's params
    combos = sweep_combinations(["train.lr=interval(0.001,0.1)"], {"train.lr": "interval(1,2)", "seed": "range(2)"})
    assert combos == [["train.lr=0.001", "seed=0"], ["train.lr=0.001", "seed=1"],
                      ["train.lr=0.1", "seed=0"], ["train.lr=0.1", "seed=1"]]


def test_bad_value_anywhere_in_a_sweep_fails_before_anything_starts(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *TINY_CL, "seed=0,1", "hnet.init=hyperfan_in,he", f"hydra.sweep.dir={sweep_dir}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 of 4 sweep combinations are invalid" in err and "nothing was started" in err
    assert "[seed=0 hnet.init=he]" in err and "[seed=1 hnet.init=he]" in err and "hyperfan_in" in err
    assert not sweep_dir.exists()
    # the single-run rules hold per combination: a strategy that does not fit one benchmark
    assert main(["-m", "benchmark=regression,adult", "strategy=hnet_cl", f"hydra.sweep.dir={sweep_dir}"]) == 2
    assert "[benchmark=adult]: strategy=hnet_cl does not apply" in capsys.readouterr().err
    assert not sweep_dir.exists()


def test_a_sweep_over_benchmarks_gives_each_its_own_default_strategy():
    from benchmarks.command_line.sweep import sweep_combinations, validate_sweep

    combinations = sweep_combinations(["benchmark=regression,adult,multimnist_seq"])
    validate_sweep(combinations)  # each benchmark with its own strategy: no "does not apply"
    assert [load_config(c).strategy.name for c in combinations] == ["hnet_cl", "phn_ls", "phn_cl"]


def test_run_dir_and_unknown_plugins_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="run_dir is set per job.*hydra.sweep.dir"):
        prepare_sweep(["seed=0,1", "run_dir=somewhere"])
    with pytest.raises(ConfigError, match=r"hydra/launcher/no_such.*pip install -e \"\.\[sweep\]\".*cl_moo_joblib"):
        prepare_sweep(["seed=0,1", "hydra/launcher=no_such"])


def test_objective_is_higher_is_better():
    assert objective({"average_final": 0.9, "score": "accuracy"}) == 0.9
    assert objective({"average_final": 0.25, "score": "mse"}) == -0.25
    assert objective({"hypervolume": 0.6}) == 0.6


# --- the basic sweeper, in-process ------------------------------------------------------------------


@pytest.mark.slow
def test_multirun_runs_every_combination_in_its_own_folder(tmp_path, data_env, capsys):
    sweep_dir = sweep(tmp_path, *TINY_CL, "seed=0,1,2", "hnet.mip=true,false", "device=cpu")
    out = capsys.readouterr().out
    runs = job_metrics(sweep_dir)
    assert sorted(runs) == [0, 1, 2, 3, 4, 5]
    got = {(m["config"]["seed"], m["config"]["hnet"]["mip"]) for m in runs.values()}
    assert got == {(s, mip) for s in (0, 1, 2) for mip in (True, False)}
    for num, m in runs.items():
        assert m["config"]["run_dir"] == str(sweep_dir / str(num)) and m["device"] == "cpu"
        assert m["config"]["hnet"]["hidden"] == [8]          # the command line wins over the preset ...
        assert m["config"]["hnet"]["init"] == "kaiming"      # ... which fills the rest (regression preset)
        assert (sweep_dir / str(num) / ".hydra" / "overrides.yaml").exists()
        assert f"objective {objective(m):.6g}" in out
    assert f"python -m cl_moo.report {sweep_dir}" in out
    # the report command reads the sweep folder: one group per hnet.mip value, 3 seeds each
    assert report_main([str(sweep_dir), "--out", str(tmp_path / "report")]) == 0
    assert "| 3 |" in (tmp_path / "report" / "report.md").read_text()


def test_failed_job_is_named_with_its_folder(tmp_path, data_env, capsys):
    empty = tmp_path / "no_data"
    empty.mkdir()
    sweep_dir = tmp_path / "sweep"
    assert main(["-m", *TINY_PARETO, "seed=0,1", f"data.root={empty}", f"hydra.sweep.dir={sweep_dir}"]) == 1
    err = capsys.readouterr().err
    assert "sweep job 0" in err and "adult.csv" in err and str(sweep_dir / "0") in err


# --- launchers (the sweep extra) -------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_local_processes(tmp_path, data_env):
    require("hydra_plugins.hydra_joblib_launcher")
    sweep_dir = sweep(tmp_path, *TINY_CL, "seed=0,1", "hydra/launcher=cl_moo_joblib", "hydra.launcher.n_jobs=2")
    assert sorted(job_metrics(sweep_dir)) == [0, 1]
    launcher = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # the worker processes hold a torch each


@pytest.fixture(scope="module")
def local_ray(data_root):
    """One local Ray instance (2 CPUs) for this module; its workers inherit CL_MOO_DATA."""
    require("ray")
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CL_MOO_DATA", str(data_root.resolve()))
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=78_643_200)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.mark.slow
def test_ray_launcher_runs_jobs_as_ray_tasks(tmp_path, data_env, local_ray):
    require("hydra_plugins.hydra_ray_launcher")
    sweep_dir = sweep(tmp_path, *TINY_CL, "seed=0,1", "hydra/launcher=cl_moo_ray")
    assert sorted(job_metrics(sweep_dir)) == [0, 1]
    assert local_ray.is_initialized()  # the launcher used the running instance


@pytest.mark.slow
def test_submitit_local_launcher_runs_jobs_as_submitit_jobs(tmp_path, data_env):
    require("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = sweep(tmp_path, *TINY_CL, "seed=0,1", "hydra/launcher=cl_moo_submitit_local")
    assert sorted(job_metrics(sweep_dir)) == [0, 1]
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 2


def test_slurm_launcher_config_composes():
    require("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("config", overrides=["hydra/launcher=cl_moo_slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.timeout_min == 240 and launcher.cpus_per_task == 2


# --- hyperparameter search ---------------------------------------------------------------------------


@pytest.mark.parametrize("bench, space", [
    (TINY_CL, ["strategy.beta=tag(log,interval(0.001,0.1))"]),
    (TINY_PARETO, ["strategy.alpha=interval(0.1,1.0)"]),
], ids=["continual", "pareto"])
@pytest.mark.slow
def test_optuna_search_reports_the_best_job(tmp_path, data_env, bench, space):
    require("hydra_plugins.hydra_optuna_sweeper")
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweep_dir = sweep(tmp_path, *bench, *space, "hydra/sweeper=cl_moo_optuna", "hydra.sweeper.n_trials=3",
                      f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=tiny")
    runs = job_metrics(sweep_dir)
    assert sorted(runs) == [0, 1, 2]
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 3  # kept in the database
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    best_run = max(runs.values(), key=objective)
    assert best.best_value == pytest.approx(objective(best_run))
    assert set(best.best_params) == {"train.lr", space[0].split("=")[0]}   # the config's space and ours
    assert best.best_params["train.lr"] == pytest.approx(best_run["config"]["train"]["lr"])
