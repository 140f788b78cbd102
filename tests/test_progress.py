"""Progress with an overall ETA (a bar on a terminal, periodic plain lines otherwise) and every run's summary line."""
import io
import json
import re

import pytest

from benchmarks.runners.progress import RunProgress, format_seconds
from benchmarks.runners.run_records import run_summary
from cl_moo.run import main


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_come_every_n_seconds_with_the_overall_position_and_eta():
    out, clock = io.StringIO(), FakeClock()
    progress = RunProgress(3, 100, done=100, stream=out, every_s=10, clock=clock)  # resumed after task 1 of 3
    for _ in range(200):
        clock.t += 1.0  # one iteration per second
        progress.update(loss=0.5)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 20  # one per 10 s, not one per iteration (200)
    assert lines[4] == ("progress: task 2/3 iteration 50/100, overall 50% (150/300 iterations), elapsed 50s, "
                        "ETA 2m30s, loss 0.5")  # the rate counts only this process's 50 iterations
    assert lines[-1].startswith("progress: task 3/3 iteration 100/100, overall 100% (300/300 iterations)")


def test_every_zero_writes_each_update_and_disabled_progress_writes_nothing():
    out, clock = io.StringIO(), FakeClock()
    with RunProgress(2, 3, stage_name="epoch", unit_name="batch", stream=out, every_s=0, clock=clock) as progress:
        for _ in range(4):
            clock.t += 2.0
            progress.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[0].endswith("ETA 10s")
    assert lines[3].startswith("progress: epoch 2/2 batch 1/3, overall 67% (4/6 batches)")
    silent = FakeTerminal()
    with RunProgress(2, 3, enabled=False, stream=silent, every_s=0) as progress:
        progress.update()
    assert silent.getvalue() == "" and progress.bar is None
    assert [format_seconds(s) for s in (4.4, 190, 7500)] == ["4s", "3m10s", "2h05m"]


def test_a_terminal_gets_one_bar_for_the_whole_run_with_its_eta():
    import time

    term = FakeTerminal()
    progress = RunProgress(3, 100, done=100, stream=term)
    for i in range(20):
        if i == 10:
            time.sleep(0.15)  # past tqdm's redraw interval
        progress.update(loss=0.25)
    text = term.getvalue()
    progress.close()
    assert "progress:" not in text and "\r" in text  # a bar redrawn in place, not plain lines
    assert "task 2/3 iteration 11/100" in text and "111/300 iterations" in text
    assert re.search(r"task 2/3 iteration 11/100\s+37%.*ETA \d\d:\d\d, loss=0.25", text), text


def test_summary_of_a_continual_pareto_run():
    metrics = {"benchmark": "multimnist_seq", "strategy": "phn_cl", "hypervolume": 2.5, "hv_final": [2.4, 2.6],
               "hv_forgetting_relative": [0.0125, None], "ref_point": [2.0, 2.0], "wall_time_s": 12.0,
               "warnings": [], "health": {"warnings": []}}
    summary = run_summary("continual_pareto", metrics, "runs/x")
    assert summary["final_average_hypervolume"] == 2.5 and summary["max_hv_forgetting_relative"] == 0.0125
    assert summary["line"] == ("summary: multimnist_seq phn_cl: final average HV 2.5000 over 2 tasks (ref [2.0, 2.0]), "
                               "max HV forgetting 1.25%, wall time 12.0 s; results in runs/x")


def test_a_continual_run_prints_its_summary_and_writes_it_to_metrics(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    assert main(["benchmark=regression", "train.iterations=30", "device=cpu", f"run_dir={out}"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    s = m["summary"]
    assert s["average_mse"] == m["average_final"] and s["average_forgetting"] == m["average_forgetting"]
    assert s["run_dir"] == str(out) and s["line"].startswith("summary: regression hnet_cl: average mse ")
    assert f"average mse {m['average_final']:.4f} over 3 tasks" in s["line"] and str(out) in s["line"]
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == s["line"]
    assert s["line"] in (out / "log.txt").read_text()
    # not a terminal: plain lines every 30 s (here only the closing one), not one per iteration (90)
    assert captured.err.count("progress: ") == 1
    assert "progress: task 3/3 iteration 30/30, overall 100% (90/90 iterations)" in captured.err


def test_a_pareto_run_prints_its_summary_and_writes_it_to_metrics(tmp_path, data_root, monkeypatch, capsys,
                                                                  one_thread):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    out = tmp_path / "run"
    assert main(["benchmark=adult", "strategy=phn_ls", "benchmark.max_rows=1500", "train.epochs=1",
                 "train.batch_size=256", "hnet.hidden=[20]", "target.hidden=[10]", "benchmark.n_eval_rays=10",
                 "progress=false", f"run_dir={out}"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    s = m["summary"]
    assert s["hypervolume"] == m["hypervolume"] and s["uniformity_mean"] == m["uniformity_mean"]
    assert s["line"].startswith(f"summary: adult phn_ls: HV {m['hypervolume']:.4f} (ref [1.0, 1.0, 1.0]), "
                                f"uniformity {m['uniformity_mean']:.4f}, wall time {m['wall_time_s']:.1f} s")
    assert s["line"].endswith(f"; results in {out}")
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == s["line"]
    assert "progress:" not in captured.err  # progress=false: silent


def test_summary_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind"):
        run_summary("sweep", {}, "runs/x")
