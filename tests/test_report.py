"""``python -m cl_moo.report``: grouping over seeds, statistics, published numbers, figures, errors."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.data.published import REGRESSION_FINAL_MSE, published_for
from benchmarks.configuration.config import flatten_keys as flatten
from cl_moo.report import main as report_main
from cl_moo.run import main as run_main

REGRESSION = ["benchmark=regression", "train.iterations=5", "progress=false"]  # paper architecture, 5 steps
PARETO = ["benchmark=adult", "benchmark.max_rows=1500", "train.epochs=1", "train.batch_size=256",
          "hnet.hidden=[20]", "hnet.init=kaiming", "target.hidden=[10]", "benchmark.n_eval_rays=10", "progress=false"]
HNET_CL = "benchmark=regression strategy=hnet_cl"
FINETUNE = "benchmark=regression strategy=finetune"
PHN_LS = "benchmark=adult strategy=phn_ls"
PHN_EPO = "benchmark=adult strategy=phn_epo"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    """Six tiny real runs in four groups: regression hnet_cl x2 seeds, finetune; adult phn_ls x2, phn_epo."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CL_MOO_DATA", str(data_root))
        for seed in (0, 1):
            assert run_main(REGRESSION + [f"seed={seed}", f"run_dir={root}/reg-s{seed}"]) == 0
            assert run_main(PARETO + ["strategy=phn_ls", f"seed={seed}", f"run_dir={root}/adult/ls-s{seed}"]) == 0
        assert run_main(REGRESSION + ["strategy=finetune", f"run_dir={root}/reg-ft"]) == 0
        assert run_main(PARETO + ["strategy=phn_epo", f"run_dir={root}/adult/epo-s0"]) == 0
    return root


@pytest.fixture(scope="module")
def report(runs):
    """The report over ``runs`` (written into the folder itself: the default ``--out``)."""
    assert report_main([str(runs)]) == 0
    with open(runs / "report.csv", newline="") as handle:
        rows = {row["group"]: row for row in csv.DictReader(handle)}
    return rows, (runs / "report.md").read_text()


def _metric(paths, key):
    return np.array([json.loads(Path(p).read_text())[key] for p in paths], dtype=float)


@pytest.mark.slow
def test_two_seeds_form_one_group_with_numpys_mean_and_std(runs, report):
    rows, markdown = report
    assert set(rows) == {HNET_CL, FINETUNE, PHN_LS, PHN_EPO}
    assert [rows[g]["n_seeds"] for g in (HNET_CL, FINETUNE, PHN_LS, PHN_EPO)] == ["2", "1", "2", "1"]
    cases = {HNET_CL: (["reg-s0", "reg-s1"], ["average_final", "average_forgetting", "bwt"]),
             PHN_LS: (["adult/ls-s0", "adult/ls-s1"], ["hypervolume", "uniformity_mean"])}
    for group, (folders, metrics) in cases.items():
        paths = [runs / f / "metrics.json" for f in folders]
        for key in metrics + ["wall_time_s", "peak_rss_mb"]:
            values = _metric(paths, key)
            assert float(rows[group][f"{key}_mean"]) == pytest.approx(np.mean(values), rel=1e-12, abs=1e-15)
            assert float(rows[group][f"{key}_std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-12, abs=1e-15)
            assert rows[group][f"{key}_n_finite"] == "2"
    assert rows[PHN_LS]["average_final_mean"] == "" and rows[HNET_CL]["hypervolume_mean"] == ""
    assert math.isnan(float(rows[FINETUNE]["bwt_std"]))  # one seed: no std
    hv = _metric([runs / "adult" / f"ls-s{s}" / "metrics.json" for s in (0, 1)], "hypervolume")
    assert f"| {PHN_LS} | 2 | {np.mean(hv):.4g} ± {np.std(hv, ddof=1):.2g} |" in markdown


def test_published_numbers_sit_beside_matching_groups(report):
    rows, markdown = report
    assert float(rows[HNET_CL]["published"]) == pytest.approx(np.mean(REGRESSION_FINAL_MSE))
    assert rows[FINETUNE]["published"] == ""  # no published fine-tuning number for the regression
    assert float(rows[PHN_LS]["published"]) == 0.658 and float(rows[PHN_EPO]["published"]) == 0.648
    assert rows[PHN_LS]["published_note"] == "different ref. point" and "Navon" in rows[PHN_LS]["published_source"]
    assert "published [source; note]" in markdown and "von Oswald et al. 2020" in markdown
    assert "Table 2; different ref. point" in markdown  # the fairness HVs' note, in the source list


def _pmnist(**changes):
    config = {"benchmark.name": "pmnist", "benchmark.n_tasks": 10, "strategy.name": "hnet_cl",
              "strategy.beta": 0.1, "strategy.task_inference": "given", "target.hidden": [1000, 1000],
              "hnet.mip": False}
    config.update({k.replace("__", "."): v for k, v in changes.items()})
    return config


def test_published_table_matches_only_the_published_settings():
    assert published_for(_pmnist(), "average_final").value == 0.976
    assert published_for(_pmnist(target__hidden=[100, 100]), "average_final").value == 0.9505
    assert published_for(_pmnist(strategy__name="finetune", strategy__beta=0.0), "average_final").value == 0.9008
    assert published_for(_pmnist(strategy__beta=0.0, target__hidden=[100, 100]), "average_final").value == 0.4789
    assert published_for(_pmnist(benchmark__n_tasks=100, target__hidden=[250]), "average_final").value == 0.959
    assert published_for(_pmnist(strategy__task_inference="entropy"), "average_final") is None
    assert published_for(_pmnist(target__hidden=[300, 300]), "average_final") is None
    assert published_for(_pmnist(), "hypervolume") is None
    bank_ls = published_for({"benchmark.name": "bank", "strategy.name": "ls_separate"}, "hypervolume")
    assert bank_ls.value == 0.704 and bank_ls.note == "different ref. point"


def _png_ok(path: Path) -> bool:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and min(pixels.shape[:2]) > 200 and pixels.std() > 0.02


def test_figures_exist_are_linked_and_not_blank(runs, report):
    _, markdown = report
    links = [line.split("](", 1)[1].rstrip(")") for line in markdown.splitlines() if line.startswith("![")]
    assert len(links) == 5  # matrix + forgetting for 2 continual groups, one front figure for adult
    assert sum("matrix" in link for link in links) == 2 and sum("forgetting" in link for link in links) == 2
    assert any("pareto-adult" in link for link in links)
    for link in links:
        path = runs / link
        assert path.stat().st_size > 5000 and _png_ok(path), link


def _copy_run(source: Path, target: Path, edit) -> None:
    metrics = json.loads((source / "metrics.json").read_text())
    edit(metrics)
    target.mkdir(parents=True)
    (target / "metrics.json").write_text(json.dumps(metrics))


def _read_csv(path: Path):
    with open(path, newline="") as handle:
        return {row["group"]: row for row in csv.DictReader(handle)}


def test_nan_values_are_counted_not_averaged(runs, tmp_path):
    def nan_bwt(m):
        m["bwt"] = float("nan")
        m["matrix"][0][0] = float("nan")

    def all_nan(m):
        nan_bwt(m)
        m["average_final"] = float("nan")

    _copy_run(runs / "reg-s0", tmp_path / "runs" / "a", nan_bwt)
    _copy_run(runs / "reg-s1", tmp_path / "runs" / "b", lambda m: None)
    for seed, folder in ((0, "c"), (1, "d")):  # a second group: a different beta, NaN in both seeds
        _copy_run(runs / f"reg-s{seed}", tmp_path / "runs" / folder,
                  lambda m: (all_nan(m), m["config"]["strategy"].update(beta=0.5)))
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    rows = _read_csv(tmp_path / "out" / "report.csv")
    beta = json.loads((runs / "reg-s0" / "metrics.json").read_text())["config"]["strategy"]["beta"]
    row = rows[HNET_CL + f" strategy.beta={beta}"]
    finite = json.loads((runs / "reg-s1" / "metrics.json").read_text())["bwt"]
    assert row["bwt_n_finite"] == "1" and float(row["bwt_mean"]) == pytest.approx(finite)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "(1/2 finite)" in markdown and "nan (0/2 finite)" in markdown
    assert math.isnan(float(rows[HNET_CL + " strategy.beta=0.5"]["average_final_mean"]))
    assert len(list((tmp_path / "out" / "figures").glob("*-matrix.png"))) == 2


def test_group_names_show_the_settings_that_differ(runs, tmp_path):
    def mip(m):
        m["config"]["hnet"]["mip"] = True

    def mip_other_seed(m):
        mip(m)
        m["config"]["seed"], m["config"]["run_dir"], m["config"]["device"] = 7, "elsewhere", "cpu"

    _copy_run(runs / "reg-s0", tmp_path / "runs" / "plain", lambda m: None)
    _copy_run(runs / "reg-s0", tmp_path / "runs" / "mip-a", mip)
    _copy_run(runs / "reg-s1", tmp_path / "runs" / "mip-b", mip_other_seed)
    _copy_run(runs / "reg-ft", tmp_path / "runs" / "ft", lambda m: None)
    assert report_main([str(tmp_path / "runs")]) == 0
    rows = _read_csv(tmp_path / "runs" / "report.csv")
    # beta follows from the strategy (finetune has beta=0) and is left out; the MIP switch is not
    assert set(rows) == {HNET_CL + " hnet.mip=false", HNET_CL + " hnet.mip=true", FINETUNE + " hnet.mip=false"}
    assert rows[HNET_CL + " hnet.mip=true"]["n_seeds"] == "2"


def test_integer_valued_floats_group_with_the_integers_recorded_before_the_structured_configs(tmp_path):
    """The structured configs record a float key written as an integer as a float (strategy.beta=0 -> 0.0);
    runs recorded before (0) and after (0.0) of the same command are one group, not two."""
    from benchmarks.command_line.results_report import group_runs, grouping_config, load_run

    def write(name, beta, lr, ref_point, seed):
        config = {"benchmark": {"name": "regression", "noise_std": beta, "ref_point": ref_point},
                  "strategy": {"name": "finetune", "beta": beta}, "train": {"lr": lr, "iterations": 5},
                  "seed": seed}
        path = tmp_path / name / "metrics.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"config": config, "matrix": [[0.1]], "seed": seed}))
        return load_run(path)

    before = write("before", 0, 1, [1, 2], 0)
    after = write("after", 0.0, 1.0, [1.0, 2.0], 1)
    assert grouping_config({"strategy": {"beta": 0.0}})["strategy.beta"] == 0
    assert grouping_config({"train": {"lr": 1.0e-4}})["train.lr"] == 1.0e-4  # other floats stay as they are
    groups = group_runs([before, after])
    assert len(groups) == 1 and len(groups[0].runs) == 2
    assert len(group_runs([before, write("other", 0.5, 1, [1, 2], 2)])) == 2


def test_flatten_keeps_lists_as_values():
    assert flatten({"a": {"b": [1, 2], "c": {"d": None}}, "e": 1}) == {"a.b": [1, 2], "a.c.d": None, "e": 1}


def test_bad_input_gives_exit_code_2_and_names_the_problem(runs, tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert report_main([str(runs), str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no metrics.json" in err and str(empty) in err
    broken = tmp_path / "broken" / "run"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"config": ')
    assert report_main([str(tmp_path / "broken")]) == 2
    assert str(broken / "metrics.json") in capsys.readouterr().err
    (broken / "metrics.json").write_text(json.dumps({"average_final": 0.5, "matrix": [[0.5]]}))
    assert report_main([str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err
    assert str(broken / "metrics.json") in err and "'config'" in err
    assert not (tmp_path / "broken" / "report.md").exists()


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    missing = tmp_path / "gone"
    done = subprocess.run([sys.executable, "-m", "cl_moo.report", str(missing)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert str(missing) in done.stderr and "Traceback" not in done.stderr


def test_health_warnings_and_numbers_far_from_published_are_marked(runs, report):
    rows, markdown = report
    for group, folders in ((HNET_CL, ["reg-s0", "reg-s1"]), (PHN_LS, ["adult/ls-s0", "adult/ls-s1"])):
        healths = [json.loads((runs / f / "metrics.json").read_text())["health"] for f in folders]
        assert rows[group]["health_recorded_runs"] == "2"
        assert rows[group]["health_warned_runs"] == str(sum(not h["ok"] for h in healths))
    # 5 iterations of the regression: a final MSE far above the published 0.0042 (lower is better)
    mean = float(rows[HNET_CL]["average_final_mean"])
    assert mean > 2 * float(rows[HNET_CL]["published"])
    assert float(rows[HNET_CL]["far_from_published"]) == pytest.approx(mean / float(rows[HNET_CL]["published"]))
    assert "**far: mean" in markdown and "training health" in markdown


def test_runs_without_a_health_section_say_not_recorded(runs, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs / "reg-s0", old / "reg-s0")
    metrics = json.loads((old / "reg-s0" / "metrics.json").read_text())
    del metrics["health"]
    (old / "reg-s0" / "metrics.json").write_text(json.dumps(metrics))
    assert report_main([str(old)]) == 0
    assert "not recorded" in (old / "report.md").read_text()
