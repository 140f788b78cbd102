"""benchmarks.solver_bench: which overrides reach which runs, and what the JSON records."""
import json
import sys

import pytest

from benchmarks import solver_bench


def test_set_reaches_every_run_and_solver_set_only_its_solver(tmp_path, monkeypatch):
    calls = []

    def fake_run(overrides):
        calls.append(overrides)
        hv = 1.0 + 0.1 * len(calls)
        return {"hypervolume": hv, "uniformity_mean": 0.5, "uniformity_trained_objectives_mean": 0.4, "wall_time_s": 2.0}

    monkeypatch.setattr(solver_bench, "_run", fake_run)
    out = tmp_path / "s.json"
    monkeypatch.setattr(sys, "argv", ["solver_bench", "--benchmarks", "multimnist", "--seeds", "0", "1",
                                      "--solvers", "ls", "hvi", "--set", "train.epochs=5",
                                      "--solver-set", "hvi:strategy.rays_per_step=4", "--out", str(out)])
    solver_bench.main()
    assert len(calls) == 4 and all("train.epochs=5" in c and "benchmark=multimnist" in c for c in calls)
    assert [("strategy.rays_per_step=4" in c) for c in calls] == [False, True, False, True]
    assert [c[2] for c in calls] == ["strategy.solver=ls", "strategy.solver=hvi"] * 2
    report = json.loads(out.read_text())
    assert report["overrides"] == ["train.epochs=5"]
    assert report["solver_overrides"] == {"hvi": ["strategy.rays_per_step=4"]}
    assert report["benchmarks"]["multimnist"]["hvi"]["hv"]["values"] == pytest.approx([1.2, 1.4])


def test_a_solver_set_for_an_unknown_solver_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["solver_bench", "--solvers", "ls", "--solver-set", "epo:strategy.eps=1"])
    with pytest.raises(SystemExit):
        solver_bench.main()
    assert "expected SOLVER:KEY=VALUE" in capsys.readouterr().err
