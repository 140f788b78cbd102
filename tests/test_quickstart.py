"""Set-up command 1 prints what the README and docs/quickstart.md say it prints (the defaults a user meets first)."""
import json
import re
from pathlib import Path

import pytest

from cl_moo.run import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"
PROMISE = r"the last one begins `after task 9: accuracy per task \[(?P<tasks>[0-9., ]+)\], average (?P<avg>[0-9.]+)`"


def _promised(path=QUICKSTART):
    """The quickstart paragraph's promise: the per-task accuracies and the average of seed 0."""
    match = re.search(PROMISE, path.read_text())
    assert match, f"{path.name}: command 1 no longer shows its expected last line"
    tasks = [float(v) for v in match["tasks"].split(",")]
    return tasks, float(match["avg"])


def test_the_readme_and_the_quickstart_page_promise_the_same_output():
    tasks, average = _promised(QUICKSTART)
    assert _promised(README) == (tasks, average)
    # the page's copy of the whole output ends with the promised line (numbers as printed, 4 digits)
    shown = re.search(r"^after task 9: accuracy per task \[(?P<tasks>[0-9., ]+)\], average (?P<avg>[0-9.]+);",
                      QUICKSTART.read_text(), re.M)
    assert shown and [float(v) for v in shown["tasks"].split(",")] == tasks and float(shown["avg"]) == average


@pytest.mark.slow  # the whole README command: about 2 minutes on 2 cores
def test_the_quickstart_ends_with_the_numbers_the_readme_shows(tmp_path, data_root, monkeypatch, capsys):
    tasks, average = _promised()
    assert len(tasks) == 10 and average == pytest.approx(sum(tasks) / 10, abs=5e-5)
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    run_dir = tmp_path / "quickstart"
    assert main(["benchmark=pmnist", "device=cpu", f"run_dir={run_dir}"]) == 0  # the README's numbers are the CPU's
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the same command; thread counts may change float rounding, hence a small tolerance
    assert metrics["average_final"] == pytest.approx(average, abs=0.005)
    assert metrics["matrix"][-1] == pytest.approx(tasks, abs=0.015)
    assert metrics["health"]["ok"], metrics["health"]["warnings"]
    assert f"average {metrics['average_final']:.4f}" in capsys.readouterr().out
