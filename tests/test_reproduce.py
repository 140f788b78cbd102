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


def _rerun(tmp_path, row, accuracies, forgetting=0.002):
    import json

    folders = []
    for seed, acc in enumerate(accuracies):
        folder = tmp_path / f"{row}-seed{seed}"
        folder.mkdir()
        config = _config(*ROWS[row]["overrides"], f"seed={seed}", f"run_dir={folder}", "progress=false")
        (folder / "metrics.json").write_text(json.dumps({
            "seed": seed, "config": config, "average_final": acc, "average_forgetting": forgetting,
            "wall_time_s": 1.0, "device": "cpu"}))
        folders.append(folder)
    return folders


def _recorded(tmp_path, row, per_seed):
    import json

    import numpy as np

    path = tmp_path / "pmnist.json"
    path.write_text(json.dumps({"rows": [{"row": row, "seeds": list(range(len(per_seed))),
                                          "accuracy_mean": float(np.mean(per_seed)), "accuracy_std": float(np.std(per_seed)),
                                          "accuracy_per_seed": per_seed, "forgetting_mean": 0.4}]}))
    return path


def test_a_rerun_is_judged_against_the_recorded_row_by_seed_noise(tmp_path):
    from benchmarks.experiments.reproduce import rerun_check

    recorded = _recorded(tmp_path, "pmnist10-small", [94.876, 94.764, 95.006])
    (tmp_path / "a").mkdir()
    same = rerun_check("pmnist10-small", _rerun(tmp_path / "a", "pmnist10-small", [0.9490, 0.9480, 0.9495]), recorded)
    assert same["within_seed_noise"] and same["rerun"]["accuracy_per_seed"] == pytest.approx([94.90, 94.80, 94.95])
    assert same["accuracy_change"] == pytest.approx(94.883333 - 94.882, abs=1e-4)
    (tmp_path / "b").mkdir()
    moved = rerun_check("pmnist10-small", _rerun(tmp_path / "b", "pmnist10-small", [0.9440, 0.9430, 0.9445]), recorded)
    assert not moved["within_seed_noise"] and moved["accuracy_change"] < -moved["seed_noise_bound"]


def test_a_rerun_with_another_config_or_unfinished_is_refused(tmp_path):
    from benchmarks.experiments.reproduce import rerun_check

    recorded = _recorded(tmp_path, "pmnist10-small", [94.9, 94.8, 95.0])
    (tmp_path / "a").mkdir()
    folders = _rerun(tmp_path / "a", "pmnist10-small-lr3e-4", [0.95, 0.95, 0.95])
    with pytest.raises(SystemExit, match=r"train\.lr"):
        rerun_check("pmnist10-small", folders, recorded)
    with pytest.raises(SystemExit, match="has not finished"):
        rerun_check("pmnist10-small", [tmp_path / "nowhere"], recorded)


def test_merging_rows_keeps_the_others_and_never_erases_a_result():
    from benchmarks.experiments.reproduce import merge_rows

    table = [{"row": "a", "accuracy_mean": 1.0}, {"row": "b", "accuracy_mean": 2.0}]
    merged = merge_rows(table, [{"row": "b", "accuracy_mean": 3.0}, {"row": "c", "accuracy_mean": 4.0}])
    assert merged == [{"row": "a", "accuracy_mean": 1.0}, {"row": "b", "accuracy_mean": 3.0},
                      {"row": "c", "accuracy_mean": 4.0}]
    with pytest.raises(SystemExit, match="row a has no finished runs here but is recorded"):
        merge_rows(table, [{"row": "a", "not_run": True}])
