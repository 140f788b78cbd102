import json

import numpy as np
import pytest

from cl_moo.moo_metrics import uniformity
from cl_moo.run import main

SMALL = ["benchmark.max_rows=1500", "train.epochs=1", "train.batch_size=256", "hnet.hidden=[20]",
         "target.hidden=[10]", "benchmark.n_eval_rays=10", "progress=false"]


def test_pareto_run_writes_hypervolume_uniformity_and_figure(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    for strategy in ("phn_ls", "phn_epo"):
        out = tmp_path / strategy
        assert main(["benchmark=adult", f"strategy={strategy}", f"run_dir={out}"] + SMALL) == 0
        m = json.loads((out / "metrics.json").read_text())
        assert 0.0 < m["hypervolume"] <= 1.0
        assert len(m["test_losses"]) == len(m["rays"]) and len(m["test_losses"][0]) == 3
        assert m["wall_time_s"] > 0 and m["ref_point"] == [1.0, 1.0, 1.0]
        assert (out / "pareto_front.png").stat().st_size > 1000
        # the trained (soft) objectives: same BCE as the evaluation objectives, gaps in [0, 1]
        hard, soft = np.array(m["test_losses"]), np.array(m["test_losses_trained_objectives"])
        np.testing.assert_allclose(soft[:, 0], hard[:, 0], rtol=1e-5)
        assert np.all((soft[:, 1:] >= 0) & (soft[:, 1:] <= 1)) and not np.allclose(soft[:, 1:], hard[:, 1:])
        expected = np.nanmean(uniformity(soft, np.array(m["rays"])))
        assert m["uniformity_trained_objectives_mean"] == pytest.approx(expected)
        assert list((out / "tensorboard").glob("events.out.tfevents*"))


def test_strategy_that_does_not_fit_the_benchmark_is_refused(capsys):
    assert main(["benchmark=adult", "strategy=hnet_cl"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_ls_separate_baseline_trains_one_plain_model_per_ray(tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    out = tmp_path / "ls"
    assert main(["benchmark=adult", "strategy=ls_separate", f"run_dir={out}"] + SMALL) == 2  # no hypernetwork
    assert "hnet.hidden is not used by benchmark=adult strategy=ls_separate" in capsys.readouterr().err
    assert main(["benchmark=adult", "strategy=ls_separate", f"run_dir={out}"]
                + [o for o in SMALL if not o.startswith("hnet.")]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["test_losses"]) == len(m["rays"])
    # one plain target network (10 hidden units after 108 inputs ... ) per ray, no hypernetwork
    per_model = m["params"] / len(m["rays"])
    assert per_model < 2000 and 0.0 < m["hypervolume"] <= 1.0
