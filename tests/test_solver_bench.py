"""benchmarks.experiments.solver_bench: which overrides reach which runs, and what the JSON records."""
import json
import re
import sys

import pytest

from benchmarks.experiments import solver_bench


def test_set_reaches_every_run_and_solver_set_only_its_solver(tmp_path, monkeypatch):
    calls = []

    def fake_run(overrides):
        calls.append(overrides)
        hv = 1.0 + 0.1 * len(calls)
        return {"hypervolume": hv, "uniformity_mean": 0.5, "uniformity_trained_objectives_mean": 0.4, "wall_time_s": 2.0}

    monkeypatch.setattr(solver_bench, "_run", fake_run)
    out = tmp_path / "s.json"
    monkeypatch.setattr(sys, "argv", ["solver_bench", "--benchmarks", "multimnist", "--seeds", "0", "1",
                                      "--solvers", "ls", "hvi", "--set", "train.epochs=5", "--set", "benchmark.max_train=100",
                                      "--solver-set", "hvi:strategy.rays_per_step=4", "--out", str(out)])
    solver_bench.main()
    assert len(calls) == 4 and all({"train.epochs=5", "benchmark.max_train=100", "benchmark=multimnist"} <= set(c)
                                   for c in calls)
    assert [("strategy.rays_per_step=4" in c) for c in calls] == [False, True, False, True]
    assert [c[2] for c in calls] == ["strategy.solver=ls", "strategy.solver=hvi"] * 2
    report = json.loads(out.read_text())
    assert report["complete"] is True
    assert report["overrides"] == ["train.epochs=5", "benchmark.max_train=100"]  # a repeated --set adds
    assert report["solver_overrides"] == {"hvi": ["strategy.rays_per_step=4"]}
    assert report["benchmarks"]["multimnist"]["hvi"]["hv"]["values"] == pytest.approx([1.2, 1.4])


def test_a_solver_set_for_an_unknown_solver_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["solver_bench", "--solvers", "ls", "--solver-set", "epo:strategy.eps=1"])
    with pytest.raises(SystemExit):
        solver_bench.main()
    assert "expected SOLVER:KEY=VALUE" in capsys.readouterr().err


def test_each_benchmark_is_kept_as_soon_as_it_is_done(tmp_path, monkeypatch):
    def fake_run(overrides):
        if "benchmark=default" in overrides:
            raise RuntimeError("interrupted")
        return {"hypervolume": 0.7, "uniformity_mean": 0.5, "uniformity_trained_objectives_mean": 0.4, "wall_time_s": 1.0}

    monkeypatch.setattr(solver_bench, "_run", fake_run)
    out = tmp_path / "s.json"
    monkeypatch.setattr(sys, "argv", ["solver_bench", "--benchmarks", "adult", "default", "--seeds", "0",
                                      "--solvers", "ls", "--out", str(out)])
    with pytest.raises(RuntimeError, match="interrupted"):
        solver_bench.main()
    report = json.loads(out.read_text())
    assert report["complete"] is False and list(report["benchmarks"]) == ["adult"]
    assert report["requested"] == {"benchmarks": ["adult", "default"], "solvers": ["ls"]}


@pytest.mark.parametrize("argv, message", [
    (["--set", "seed=5"], "other than"),
    (["--solver-set", "ls:strategy.solver=hvi"], "other than"),
    (["--solver-set", "ls:strategy.colour=red"], "benchmark=adult solver=ls: .*strategy.colour"),
])
def test_bad_overrides_are_refused_before_any_run(argv, message, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(solver_bench, "_run", lambda overrides: calls.append(overrides))
    monkeypatch.setattr(sys, "argv", ["solver_bench", "--benchmarks", "adult", "--solvers", "ls", "epo"] + argv)
    with pytest.raises(SystemExit):
        solver_bench.main()
    assert calls == []
    assert re.search(message, capsys.readouterr().err)
