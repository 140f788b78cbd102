"""``train.budget_s``: a process stops cleanly at a checkpoint when the next unit (task, epoch, LS model)
would not fit its time budget (exit status 75), and the same command with ``resume=true`` continues;
the finished run equals one uninterrupted run."""
import json

import pytest

from benchmarks.runners.budget import PAUSED_EXIT_STATUS, RunPaused, TimeBudget
from cl_moo.run import main

CL_TINY = [
    "benchmark=pmnist", "benchmark.n_tasks=3", "benchmark.train_per_task=200", "benchmark.test_per_task=100",
    "benchmark.pad_to=28", "train.iterations=15", "train.batch_size=32", "hnet.hidden=[20]", "target.hidden=[30]",
    "hnet.emb_dim=8", "hnet.chunk_size=1000", "progress=false",
]
PARETO_TINY = ["benchmark=adult", "strategy=phn_ls", "benchmark.max_rows=600", "hnet.hidden=[6]", "target.hidden=[7]",
               "train.epochs=3", "benchmark.n_eval_rays=5", "progress=false"]
LS_TINY = ["benchmark=adult", "strategy=ls_separate", "benchmark.max_rows=600", "target.hidden=[7]", "train.epochs=1",
           "benchmark.n_eval_rays=3", "progress=false"]
PARETO_CL_TINY = ["benchmark=multimnist_seq", "strategy=phn_cl", "benchmark.n_tasks=3", "benchmark.max_train=200",
                  "benchmark.max_test=100", "train.iterations=10", "hnet.hidden=[20]", "target.hidden=[16]",
                  "benchmark.n_eval_rays=5", "progress=false"]
TINY_BUDGET = "train.budget_s=1e-6"  # far below one unit: every process runs exactly one unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pauses_when_the_longest_unit_so_far_would_end_past_the_budget(tmp_path):
    clock = FakeClock()
    budget = TimeBudget(100.0, unit="task", clock=clock)
    clock.now = 30.0
    budget.unit_done(done=1, total=5, folder=tmp_path)  # 30 used + 30 next <= 100: go on
    clock.now = 70.0
    with pytest.raises(RunPaused) as paused:  # 70 used + 40 (the longest task so far) > 100
        budget.unit_done(done=2, total=5, folder=tmp_path)
    message = str(paused.value)
    assert "paused after task 2/5" in message and "train.budget_s=100" in message
    assert f"resume=true (run_dir={tmp_path})" in message and "longer than the whole budget" not in message


def test_never_pauses_after_the_last_unit_or_without_a_budget(tmp_path):
    clock = FakeClock()
    budget = TimeBudget(1.0, unit="epoch", clock=clock)
    clock.now = 50.0
    budget.unit_done(done=3, total=3, folder=tmp_path)  # done: nothing left to pause before
    unlimited = TimeBudget(None, unit="epoch", clock=clock)
    clock.now = 1e9
    unlimited.unit_done(done=1, total=3, folder=tmp_path)


def test_recorded_units_of_earlier_processes_count_and_a_long_unit_is_named(tmp_path):
    clock = FakeClock()
    budget = TimeBudget(100.0, unit="task", recorded_s=[90.0, None], clock=clock)
    clock.now = 20.0
    with pytest.raises(RunPaused) as paused:  # 20 used + 90 (recorded by an earlier process) > 100
        budget.unit_done(done=3, total=5, folder=tmp_path)
    assert paused.value.next_s == 90.0
    long = TimeBudget(10.0, unit="task", clock=clock)
    clock.now = 45.0
    with pytest.raises(RunPaused, match="longer than the whole budget, so each call runs one task"):
        long.unit_done(done=1, total=2, folder=tmp_path)


def test_building_and_loading_count_against_the_budget_but_not_as_a_unit(tmp_path):
    clock = FakeClock()
    budget = TimeBudget(600.0, unit="task", clock=clock)
    clock.now = 120.0  # building and loading
    budget.begin_units()
    clock.now = 320.0
    budget.unit_done(done=1, total=3, folder=tmp_path)  # 320 used + 200 (the task, not 320) <= 600: go on
    assert budget.durations == [200.0]
    clock.now = 520.0
    with pytest.raises(RunPaused):  # 520 + 200 > 600
        budget.unit_done(done=2, total=3, folder=tmp_path)


def test_bad_budget_values_are_usage_errors(capsys):
    for value in ("0", "-5", "nan", "soon"):
        assert main(CL_TINY + [f"train.budget_s={value}"]) == 2
        assert "train.budget_s" in capsys.readouterr().err
    assert main(["-m", *CL_TINY, "seed=0,1", "train.budget_s=60"]) == 2
    assert "a sweep has no time budget" in capsys.readouterr().err


def _run_in_windows(args, folder, capsys, expected_pauses):
    """Runs the command with a tiny budget, then ``resume=true`` until it finishes; returns the pause messages."""
    messages = []
    status = main(args + [f"run_dir={folder}", TINY_BUDGET])
    while status == PAUSED_EXIT_STATUS:
        messages.append(capsys.readouterr().err)
        assert not (folder / "metrics.json").exists()
        assert len(messages) <= expected_pauses
        status = main(args + [f"run_dir={folder}", TINY_BUDGET, "resume=true"])
    assert status == 0 and len(messages) == expected_pauses
    return messages


WINDOWS = {  # run kind: (command, unit, keys of metrics.json that must equal the uninterrupted run's)
    "continual": (CL_TINY, "task", ("matrix", "health")),
    "pareto": (PARETO_TINY, "epoch", ("test_losses", "hypervolume")),
    "continual_pareto": (PARETO_CL_TINY, "task", ("hv_matrix",)),
    "ls_separate": (LS_TINY, "LS model", ("test_losses",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(WINDOWS))
def test_a_run_in_budgeted_windows_equals_one_uninterrupted_run(kind, tmp_path, data_root, monkeypatch, capsys):
    args, unit, keys = WINDOWS[kind]
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    assert main(args + [f"run_dir={tmp_path / 'full'}"]) == 0
    messages = _run_in_windows(args, tmp_path / "windows", capsys, expected_pauses=2)
    assert f"paused after {unit} 1/3" in messages[0] and f"paused after {unit} 2/3" in messages[1]
    assert "resume=true" in messages[0] and "Traceback" not in "".join(messages)
    full, windows = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("full", "windows"))
    assert all(full[key] == windows[key] for key in keys)
    assert f"paused after {unit} 1/3" in (tmp_path / "windows" / "log.txt").read_text()


@pytest.mark.slow
def test_a_resume_may_change_or_drop_the_budget_and_keeps_the_recorded_unit_times(tmp_path, data_root, monkeypatch,
                                                                                   capsys):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    import torch

    pareto = tmp_path / "pareto"
    assert main(PARETO_TINY + [f"run_dir={pareto}", TINY_BUDGET]) == PAUSED_EXIT_STATUS
    recorded = torch.load(pareto / "checkpoint.pt", weights_only=False)["unit_s"]
    assert len(recorded) == 1 and recorded[0] > 0  # the next process estimates its epochs from this too
    assert main(PARETO_TINY + [f"run_dir={pareto}", "train.budget_s=3600", "resume=true"]) == 0
    cl = tmp_path / "cl"
    assert main(CL_TINY + [f"run_dir={cl}", TINY_BUDGET]) == PAUSED_EXIT_STATUS
    assert main(CL_TINY + [f"run_dir={cl}", "resume=true"]) == 0  # no budget now: the rest in one go
    assert main(CL_TINY + [f"run_dir={tmp_path / 'full'}"]) == 0
    full, resumed = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("full", "cl"))
    assert full["matrix"] == resumed["matrix"]
