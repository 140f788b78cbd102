import math

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
