"""The results table takes each row's number only from a run made with the row's config."""
from pathlib import Path

import pytest

from benchmarks.configuration.config import load_config, resume_changes
from benchmarks.runners.run_records import config_dict
from benchmarks.experiments.reproduce import ROWS, check_row_config


def _config(*overrides):
    return config_dict(load_config(["benchmark=pmnist", *overrides]))


def test_a_run_made_with_the_rows_config_is_accepted_wherever_it_ran():
    config = _config(*ROWS["pmnist10-small"]["overrides"], "seed=1", "run_dir=elsewhere", "progress=false")
    check_row_config("pmnist10-small", 1, [], config, Path("elsewhere"))


def test_a_run_with_another_config_is_refused_naming_the_keys():
    config = _config(*ROWS["pmnist10-small"]["overrides"], "strategy.beta=0.01", "seed=0")
    with pytest.raises(SystemExit, match=r"strategy\.beta: run 0\.01, row 0\.05"):
        check_row_config("pmnist10-small", 0, [], config, Path("run"))
    with pytest.raises(SystemExit, match="seed"):
        check_row_config("pmnist10-small", 1, [], config | {"strategy": {**config["strategy"], "beta": 0.05}}, Path("r"))


def test_runs_recorded_before_a_key_existed_count_as_its_old_behaviour():
    config = _config(*ROWS["pmnist10-small"]["overrides"], "seed=0")
    old = {**config, "train": {k: v for k, v in config["train"].items() if k != "eval_tasks"}}
    check_row_config("pmnist10-small", 0, [], old, Path("old"))
    assert resume_changes(old, config) == []
    assert resume_changes(old, _config(*ROWS["pmnist10-small"]["overrides"], "seed=0", "train.eval_tasks=current"))


def test_continual_pareto_runs_from_before_start_existed_resume_as_a_fresh_draw():
    from benchmarks.runners.checkpoint import check_same_build
    from benchmarks.runners.checkpoint import ResumeMismatchError

    seq = ["benchmark=multimnist_seq", "strategy=phn_cl", "seed=0"]
    config = config_dict(load_config(seq))
    old = {**config, "strategy": {k: v for k, v in config["strategy"].items() if k != "start"}}
    assert resume_changes(old, config) == []
    assert resume_changes(old, config_dict(load_config(seq + ["strategy.start=phn"]))) == [("strategy.start", "random", "phn")]
    built = {"hnet": {"generator": "mlp", "start": "random"}}
    check_same_build({"hnet": {"generator": "mlp"}}, built, Path("old"))
    with pytest.raises(ResumeMismatchError, match="start"):
        check_same_build({"hnet": {"generator": "mlp"}}, {"hnet": {"generator": "mlp", "start": "phn"}}, Path("old"))
