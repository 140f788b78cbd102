"""The speed suite (``python -m benchmarks.experiments.speed``) runs end to end at a tiny size and records
what it timed: the forms the regularizer took, every variant side by side, the ratios its goals read."""

import pytest
import torch

from benchmarks.experiments import speed

TINY = dict(hidden=(20, 20), chunk_size=500, hnet_hidden=(6, 6), emb_dim=4, chunk_emb_dim=3, batch=8)


@pytest.fixture
def tiny_preset(monkeypatch, one_thread):
    monkeypatch.setattr(speed, "PAPER", TINY)
    torch.manual_seed(0)


@pytest.mark.slow
def test_the_mip_rows_time_each_form_at_each_number_of_earlier_tasks(tiny_preset):
    out = speed.bench_regularizer_mip(torch.device("cpu"), warmup=1, reps=2, tasks=(1, 3), far=6)
    steps = out["steps"]
    assert set(steps) == {0, 1, 3, 6}
    assert steps[0]["auto_targets"] == "NoneType"  # T = 0: no earlier task, no regularizer
    for T in (1, 3):
        assert steps[T]["gram_targets"] == "HeadSnapshot" and steps[T]["recorded_outputs_targets"] == "StoredOutputs"
        assert steps[T]["auto_targets"] in ("HeadSnapshot", "StoredOutputs")
    assert steps[6]["gram_targets"] == "HeadSnapshot" and "recorded_outputs" not in steps[6]
    assert all(t["reps"] == 2 and 0 < t["min_ms"] <= t["median_ms"] <= t["max_ms"]
               for row in steps.values() for t in row.values() if isinstance(t, dict))
    assert out["auto_T3_over_T1"] == pytest.approx(steps[3]["auto"]["median_ms"] / steps[1]["auto"]["median_ms"])


def test_interleaved_timing_calls_each_function_once_per_round():
    calls = []
    out = speed.timeit_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                   warmup=2, reps=3, device=torch.device("cpu"))
    assert calls == ["a", "b"] * 5  # warm-up rounds included, never two calls of one function in a row
    assert out["a"]["reps"] == out["b"]["reps"] == 3
