"""The defaults matrix, small version: every default a user meets first still learns (2 seeds, tiny sizes)."""
import json

import pytest

from benchmarks.experiments.defaults_matrix import ROWS, main, run_matrix

pytestmark = pytest.mark.slow  # trains every default on two seeds: outside the quick subset (pytest -m 'not slow')

# not here: cli_multimnist_seq and api_phn_cl (a continual Pareto run that learns takes 1-2 minutes a seed)
SMALL_ROWS = ["api_pmnist", "api_splitmnist", "cli_pmnist", "cli_regression", "cli_adult", "cli_splitmnist", "api_phn"]


@pytest.fixture(scope="module")
def small_report(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("matrix") / "defaults_matrix.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CL_MOO_DATA", str(data_root))
        report = run_matrix(SMALL_ROWS, [0, 1], small=True, out=out, say=lambda line: None)
    return report, out


@pytest.mark.slow
def test_every_default_learns_on_both_seeds(small_report):
    report, _ = small_report
    failing = {name: row["seeds_failing"] for name, row in report["rows"].items() if not row["met"]}
    assert not failing, f"defaults that stopped learning: {failing}; see {json.dumps(report['rows'], default=str)[:2000]}"
    assert report["met"]


def test_the_json_records_each_seed_its_bar_and_health(small_report):
    report, out = small_report
    written = json.loads(out.read_text())
    assert written["small"] is True and written["seeds"] == [0, 1]
    for name in SMALL_ROWS:
        row = written["rows"][name]
        assert row["bar"] == ROWS[name]["bar"] and set(row["per_seed"]) == {"0", "1"}
        for result in row["per_seed"].values():
            assert {"ok", "warnings", "findings"} <= set(result["health"]) and result["wall_s"] > 0
    goal = written["rows"]["cli_regression"]["median_goal"]
    worst = sorted(r["worst_final_mse"] for r in written["rows"]["cli_regression"]["per_seed"].values())
    assert goal["seeds"] == 2 and goal["median_worst_final_mse"] == pytest.approx(sum(worst) / 2)
    assert goal["met"] == (goal["median_worst_final_mse"] <= 0.0025)
    pm = written["rows"]["cli_pmnist"]["per_seed"]["0"]
    assert len(pm["matrix"]) == 3 and pm["met"] == (min(pm["final"]) >= 0.7)
    adult = written["rows"]["cli_adult"]["per_seed"]["1"]
    assert adult["strategy"] == "phn_ls"  # benchmark=adult alone runs its default strategy
    assert 0.4 < adult["constant_predictor_hv"] < 0.5  # 1 - BCE of Adult's ~24% positive rate
    assert adult["met"] == (adult["hypervolume"] > adult["constant_predictor_hv"])


def test_unknown_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown rows"):
        run_matrix(["api_pmnist", "nope"], [0], small=True, out=None)
    with pytest.raises(SystemExit):
        main(["--rows", "nope"])


def test_merge_keeps_the_other_rows_and_refuses_another_kind(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    out = tmp_path / "matrix.json"
    out.write_text(json.dumps({"small": True, "seeds": [0], "rows": {"kept_row": {"met": True}}, "notes": "earlier"}))
    report = run_matrix(["cli_adult"], [0], small=True, out=out, say=lambda line: None, merge=True)
    written = json.loads(out.read_text())
    assert set(written["rows"]) == {"kept_row", "cli_adult"} and report["met"] == written["met"]
    assert written["notes"][0] == "earlier" and "cli_adult" in written["notes"][1]
    with pytest.raises(ValueError, match="small=True rows, not small=False"):
        run_matrix(["cli_adult"], [0], small=False, out=out, say=lambda line: None, merge=True)
