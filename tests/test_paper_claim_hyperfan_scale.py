"""Paper claim ``hyperfan_scale`` (Chang et al. 2020, Sec. 5.1): the quick run and the measured init scales."""

import math

import pytest
import torch

from benchmarks.experiments.paper_claims import ClaimOutcome, claim_module
from benchmarks.experiments.paper_claims import hyperfan_scale as claim


@pytest.fixture
def mnist_env(monkeypatch, data_root):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))


def test_quick_run_writes_figure_and_judged_outcome(tmp_path, mnist_env, one_thread):
    figure = tmp_path / "x.png"
    outcome = claim_module("hyperfan_scale").run(seeds=[0], quick=True, figure=figure)
    assert isinstance(outcome, ClaimOutcome)
    assert figure.is_file() and figure.stat().st_size > 10_000
    assert outcome.holds in (True, False, "partly")
    assert outcome.checked and all(c.endswith(("-> met", "-> not met")) for c in outcome.checked)
    met = [c.endswith("-> met") for c in outcome.checked]
    assert outcome.holds == (True if all(met) else False if not any(met) else "partly")
    seed = outcome.numbers["per_seed"]["0"]
    assert set(seed) == set(claim.TRAINED)
    for record in seed.values():
        assert len(record["activation_std"]) == claim.QUICK.depth + 1
        assert record["step"][-1] == claim.QUICK.steps
        assert all(math.isfinite(v) for v in record["loss"])
    assert outcome.settings["steps"] == claim.QUICK.steps
    assert "criteria met" in outcome.summary


def test_activation_scale_at_init_paper_width(one_thread):
    """Fig. 1 at the paper's width: hyperfan-in keeps the classical network's activation scale at every layer;
    the library's Xavier hypernet (torch Glorot on the 50 -> 250,000 output layer) shrinks them layer by layer,
    the fan-in ('kaiming') one saturates every tanh layer."""
    cfg = claim.Config(steps=1, probe_images=200)
    x = torch.randn(200, 784)
    stds = {
        init: claim.activation_stds(claim.build_model(init, cfg, seed=0), x)
        for init in ("classical", "hyperfan_in", "xavier", "kaiming")
    }
    ratio = torch.tensor(stds["hyperfan_in"]) / torch.tensor(stds["classical"])
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
    xavier = torch.tensor(stds["xavier"][: cfg.depth]) / torch.tensor(stds["classical"][: cfg.depth])
    assert (xavier[1:] < xavier[:-1]).all() and xavier[-1] < 0.25, xavier
    assert min(stds["kaiming"][: cfg.depth]) > 0.9, stds["kaiming"]


def test_hyperfan_generated_weight_variance_is_table1(one_thread):
    """Table 1, 1_ReLU = 1_HBias = 0: Var(W) = 1 / fan_in (hyperfan-in), 1 / fan_out (hyperfan-out). Per matrix
    within 30%: the shared output layer is scaled for the mean ||e||^2 of its embeddings, and one embedding's
    ||e||^2 (50 draws of U(-sqrt 3, sqrt 3)) is off that mean by about 13% (std)."""
    cfg = claim.Config(width=200, steps=1)
    for init, fan in (("hyperfan_in", 1), ("hyperfan_out", 0)):
        weights = claim.build_model(init, cfg, seed=1).weights()
        for w in weights:
            want = 1.0 / w.shape[fan]
            assert float(w.detach().var()) == pytest.approx(want, rel=0.3), (init, tuple(w.shape))


def test_settle_step_and_loss_rises():
    steps = [0, 10, 20, 30, 40]
    assert claim.settle_step(steps, [1.0, 1.0, 1.0, 1.0, 1.0]) == 0
    assert claim.settle_step(steps, [0.5, 0.8, 0.95, 1.05, 1.0]) == 20
    assert claim.settle_step(steps, [1.0, 2.0, 1.0, 3.0, 1.0]) == 40
    with pytest.raises(ValueError, match="final weight std"):
        claim.settle_step(steps, [1.0, 1.0, 1.0, 1.0, 0.0])
    assert claim.loss_rises([2.0, 1.0, 1.05, 1.5, 1.4, 1.6]) == 2


def test_embeddings_of_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="one embedding of size 50 per weight matrix"):
        claim.HyperMainnet(16, 3, "hyperfan_in", torch.zeros(3, claim.EMBEDDING_DIM))
