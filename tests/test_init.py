import math

import cl_moo

import pytest
import torch
from torch import nn

from cl_moo import ChunkedHypernetwork, FunctionalTarget, MLPHypernetwork, init_hypernetwork, target_variances

WIDTH, DEPTH = 256, 5


def deep_target(relu: bool) -> FunctionalTarget:
    layers = []
    for i in range(DEPTH):
        layers.append(nn.Linear(WIDTH, WIDTH, bias=False))
        if relu and i < DEPTH - 1:
            layers.append(nn.ReLU())
    return FunctionalTarget(nn.Sequential(*layers))


def make_hnet(kind, target):
    if kind == "mlp":
        return MLPHypernetwork(target, 2, hidden=(256, 256), mip_encoding=True)
    return ChunkedHypernetwork(target, 2, chunk_size=8192, chunk_emb_dim=8, hidden=(64, 64),
                               activation="relu", mip_encoding=True)


def preactivation_ratio(target, weights, x):
    """Var of the last layer's pre-activation / var of the first one's, per weight set."""
    layers = [m for m in target.module if isinstance(m, nn.Linear)]
    h, first, last = x, None, None
    for i, w in enumerate(weights):
        h = torch.bmm(h, w.transpose(1, 2))
        first = h.pow(2).mean((1, 2)) if i == 0 else first
        last = h.pow(2).mean((1, 2))
        if isinstance(target.module[min(2 * i + 1, len(target.module) - 1)], nn.ReLU) and i < len(layers) - 1:
            h = torch.relu(h)
    return last / first


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "chunked"])
@pytest.mark.parametrize("scheme,fan", [("hyperfan_in", 0), ("hyperfan_out", 1)])
@pytest.mark.parametrize("relu", [False, True])
def test_hyperfan_gives_target_variance_and_keeps_activations(kind, scheme, fan, relu):
    """Chang et al. 2020: generated Var(W) = c/fan_in (or c/fan_out), activations kept through depth."""
    gain = 2.0 if relu else 1.0
    ratios, variances = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        target = deep_target(relu)
        hnet = make_hnet(kind, target)
        init_hypernetwork(hnet, scheme, target_gain=gain, probe_conditions=torch.rand(512, 2))
        with torch.no_grad():
            weights = hnet(torch.rand(16, 2))
            variances.append(torch.stack([w.var(dim=(1, 2)) for w in weights]).mean())
            ratios.append(preactivation_ratio(target, weights, torch.randn(16, 256, WIDTH)))
    expected = gain / WIDTH  # fan_in == fan_out == WIDTH here
    assert float(torch.stack(variances).mean()) == pytest.approx(expected, rel=0.20)
    median_ratio = float(torch.cat(ratios).median())
    assert 0.5 <= median_ratio <= 2.0, median_ratio


@pytest.mark.parametrize("kind", ["mlp", "chunked"])
def test_kaiming_initialised_hypernetwork_is_off_by_an_order_of_magnitude(kind):
    torch.manual_seed(0)
    target = deep_target(relu=False)
    hnet = make_hnet(kind, target)
    init_hypernetwork(hnet, "kaiming")
    with torch.no_grad():
        weights = hnet(torch.rand(16, 2))
        var = float(torch.stack([w.var(dim=(1, 2)) for w in weights]).mean())
        ratio = float(preactivation_ratio(target, weights, torch.randn(16, 64, WIDTH)).median())
    assert var * WIDTH >= 10.0
    assert ratio >= 10.0 ** DEPTH


def test_variances_for_biases_and_conv_receptive_field():
    conv = nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4))
    target = FunctionalTarget(conv)
    hnet = MLPHypernetwork(target, 2, hidden=(8,))
    v_in = target_variances(hnet, "hyperfan_in", 2.0)
    # conv weight: c / (c_b * in_channels * receptive field) with c_b = 2 (biases generated)
    assert v_in[0] == pytest.approx(2.0 / (2 * 3 * 25))
    assert v_in[1] == pytest.approx(0.5)
    v_out = target_variances(hnet, "hyperfan_out", 2.0)
    assert v_out[0] == pytest.approx(2.0 / (8 * 25))
    assert v_out[1] == pytest.approx(max(0.0, 1 - 75 / 200))
    assert v_out[3] == 0.0  # fan_in 8 > fan_out 4


@pytest.mark.slow
def test_chunked_hyperfan_matches_each_tensors_variance():
    torch.manual_seed(0)
    target = FunctionalTarget(nn.Sequential(nn.Linear(784, 100, bias=False), nn.ReLU(), nn.Linear(100, 10, bias=False)))
    # chunk boundaries aligned with the tensors: 392 chunks of layer 1, 5 of layer 2
    hnet = ChunkedHypernetwork(target, 2, chunk_size=200, hidden=(64, 64), activation="relu", mip_encoding=True)
    init_hypernetwork(hnet, "hyperfan_in", probe_conditions=torch.rand(256, 2))
    with torch.no_grad():
        w1, w2 = hnet(torch.rand(64, 2))
    assert float(w1.var()) == pytest.approx(2.0 / 784, rel=0.2)
    assert float(w2.var()) == pytest.approx(2.0 / 100, rel=0.2)


def test_unknown_scheme_lists_valid_ones():
    hnet = MLPHypernetwork(deep_target(False), 2, hidden=(4,))
    with pytest.raises(ValueError, match="hyperfan_in"):
        init_hypernetwork(hnet, "he")


def _default_cl_chunked(seed=0):
    """The default CL setup of the issue: target 784-300-100-10, chunk size 2000, ELU hnet 100-75-50."""
    from cl_moo import build_hypernetwork

    torch.manual_seed(seed)
    target = FunctionalTarget(nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                                            nn.Linear(100, 10)))
    return build_hypernetwork(target, 64, chunk_size=2000, chunk_emb_dim=12, hidden=(100, 75, 50), activation="elu",
                              input_range="unbounded", probe_conditions=torch.randn(256, 64))


@pytest.mark.slow
def test_chunked_hyperfan_reaches_each_weight_tensor_and_reports_the_rest():
    with pytest.warns(UserWarning, match=r"0\.bias"):
        hnet = _default_cl_chunked()
    # measured on fresh conditions, not the probes the init used
    with torch.no_grad():
        weights = hnet(torch.randn(64, 64))
    wanted = target_variances(hnet.layout, "hyperfan_in", 2.0)
    measured = {n: float(w.pow(2).mean()) / v for n, w, v in zip(hnet.layout.names, weights, wanted)}
    for name in ("0.weight", "2.weight", "4.weight"):  # every weight tensor with more than 100 entries
        assert 0.8 <= measured[name] <= 1.25, measured
    # biases share their chunk with weights: not reachable with one shared head; reported and warned
    assert "0.bias" in hnet.summary() and "init variance / wanted variance" in hnet.summary()
    assert hnet.init_report["0.bias"] == pytest.approx(measured["0.bias"], rel=0.5)
    # chunk embeddings stay distinct: only scaled up, so directions are those of the random draw
    e = hnet.chunk_embeddings.detach()
    unit = e / e.norm(dim=1, keepdim=True)
    cos = (unit @ unit.T).abs()
    off = cos[~torch.eye(len(e), dtype=torch.bool)]
    assert float(off.mean()) < 0.4 and float(off.max()) < 0.95
    assert float(e.norm(dim=1).min()) >= 0.9 * math.sqrt(12) * 0.5  # none shrunk towards zero


@pytest.mark.slow
def test_mip_residual_starts_at_the_pretrained_model(data_root):
    """MIP (Gonzalez Ortiz et al. 2024, Eq. 5): with theta = theta_0 + Delta theta, a hypernetwork built
    around a pretrained model with theta0="keep" starts at it: ||Delta theta|| <= 5% of ||theta_0||, same accuracy."""
    import gzip

    import numpy as np

    from cl_moo import build_hypernetwork

    raw = data_root / "MNIST" / "raw"
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz") as f:
        x = torch.from_numpy(np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:3000].astype(np.float32) / 255)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz") as f:
        y = torch.from_numpy(np.frombuffer(f.read(), np.uint8, offset=8)[:3000].astype(np.int64))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        idx = torch.randint(0, 2000, (128,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        pretrained = float((model(x[2000:]).argmax(1) == y[2000:]).float().mean())
    assert pretrained > 0.85
    for init in ("hyperfan_in", "kaiming"):
        for cond_dim, rng in ((2, "unit"), (8, "unbounded")):
            target = FunctionalTarget(model)
            hnet = build_hypernetwork(target, cond_dim, hidden=(32, 32), mip=True, init=init, input_range=rng,
                                      theta0="keep")
            theta0 = hnet.theta0.detach()
            cond = torch.rand(16, cond_dim) if rng == "unit" else torch.randn(16, cond_dim)
            with torch.no_grad():
                flat = hnet.forward_flat(cond)
                rel = ((flat - theta0).norm(dim=1) / theta0.norm()).max().item()
                acc = [float((target(w, x[2000:]).argmax(1) == y[2000:]).float().mean())
                       for w in zip(*hnet(cond))]
            assert rel <= 0.05, (init, rng, rel)
            assert min(acc) >= pretrained - 0.005, (init, rng, pretrained, acc)


def test_the_default_parametrization_is_initialised_for_the_conditions_it_was_told_of():
    """Without MIP, input_range='unbounded' (e.g. N(0, 1) embeddings) must still set the init's probe conditions:
    calibrated on U[0, 1] instead, the generated variance on N(0, 1) conditions was about 3x the wanted one."""
    from cl_moo import build_hypernetwork
    from cl_moo.init import default_probe_conditions

    target = FunctionalTarget(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)))
    torch.manual_seed(0)
    hnet = build_hypernetwork(target, 4, hidden=(32, 32), input_range="unbounded")
    assert hnet.encoder.input_range == "unbounded" and (default_probe_conditions(hnet) < 0).any()
    wanted = target_variances(hnet.layout, "hyperfan_in", 2.0)
    report = cl_moo.variance_report(hnet, torch.randn(4096, 4), wanted)
    weights = [r for name, r in report.items() if name.endswith("weight")]
    assert all(0.6 < r < 1.6 for r in weights), report
