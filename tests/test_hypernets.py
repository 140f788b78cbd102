import pytest
import torch
from torch import nn

from cl_moo import ChunkedHypernetwork, FunctionalTarget, MLPHypernetwork, init_hypernetwork


def target_mlp():
    return FunctionalTarget(nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 10)))


def test_chunked_hypernetwork_compresses_the_target_and_reports_it():
    target = target_mlp()
    hnet = ChunkedHypernetwork(target, 8, chunk_size=300, chunk_emb_dim=8, hidden=(10, 10))
    assert hnet.num_chunks == -(-target.num_weights // 300)
    assert hnet.num_generator_params < target.num_weights
    assert hnet.compression_ratio == pytest.approx(hnet.num_generator_params / target.num_weights)
    assert "compression ratio" in hnet.summary()
    out = hnet(torch.randn(3, 8))
    assert [tuple(w.shape[1:]) for w in out] == [tuple(s) for s in target.layout.shapes]
    assert all(w.shape[0] == 3 for w in out)


def test_mlp_hypernetwork_has_one_head_per_target_tensor():
    target = target_mlp()
    hnet = MLPHypernetwork(target, 2, hidden=(16,))
    sizes = [s.stop - s.start for s in hnet.layout.slices]
    assert sizes == list(target.layout.numels)
    single = hnet(torch.rand(2))
    assert [w.shape for w in single] == list(target.layout.shapes)


def test_residual_theta0_starts_from_the_given_model():
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.fill_(0.5)
    hnet = MLPHypernetwork(FunctionalTarget(model), 1, hidden=(4,), residual=True, mip_encoding=True)
    assert torch.allclose(hnet.theta0[:12], torch.full((12,), 0.5))
    with torch.no_grad():
        hnet.head.weight.zero_(); hnet.head.bias.zero_()
    w, b = hnet(torch.tensor([0.3]))
    assert torch.allclose(w, model.weight) and torch.allclose(b, model.bias)


def test_condition_of_wrong_width_fails_clearly():
    hnet = MLPHypernetwork(target_mlp(), 3, hidden=(4,))
    with pytest.raises(ValueError, match=r"expects conditions of shape \(B, 3\).*got \(5, 2\)"):
        hnet(torch.rand(5, 2))


def test_mip_refuses_inputs_outside_unit_interval_and_says_how_to_scale():
    hnet = MLPHypernetwork(target_mlp(), 2, hidden=(4,), mip_encoding=True)
    with pytest.raises(ValueError, match=r"\[0, 1\].*minmax_scale.*input_range='unbounded'"):
        hnet(torch.tensor([[0.2, 1.7]]))
    unbounded = MLPHypernetwork(target_mlp(), 2, hidden=(4,), mip_encoding=True, input_range="unbounded")
    assert torch.isfinite(unbounded.forward_flat(torch.tensor([[-3.0, 9.0]]))).all()


def _generated_std(hnet, gammas):
    with torch.no_grad():
        return torch.stack([hnet.forward_flat(torch.full((1, 1), g)).std() for g in gammas])


def test_default_parametrization_is_proportional_to_input_magnitude():
    """MIP paper Sec. 3: with zero biases and LeakyReLU, std(theta) grows linearly with gamma."""
    torch.manual_seed(0)
    hnet = MLPHypernetwork(target_mlp(), 1, hidden=(64, 64), activation="leaky_relu")
    init_hypernetwork(hnet, "kaiming")
    std = _generated_std(hnet, [0.1, 1.0])
    assert std[1] / std[0] == pytest.approx(10.0, rel=0.02)


def test_mip_makes_weight_scale_independent_of_input_magnitude():
    """MIP Sec. 4: with encoding + residual the expected weight scale does not depend on gamma.

    For one finite-width hypernetwork ||e(gamma)|| fluctuates randomly along the encoded arc;
    the claim is about the expected scale, so the std is averaged over 16 initialisations.
    """
    gammas = torch.linspace(0, 1, 11).tolist()
    stds, enc_only = [], []
    for seed in range(16):
        torch.manual_seed(seed)
        hnet = MLPHypernetwork(
            target_mlp(), 1, hidden=(64, 64), activation="leaky_relu", mip_encoding=True, residual=True
        )
        init_hypernetwork(hnet, "kaiming")
        stds.append(_generated_std(hnet, gammas))
        # the encoding alone (no residual) also removes the proportionality
        enc = MLPHypernetwork(target_mlp(), 1, hidden=(64, 64), activation="leaky_relu", mip_encoding=True)
        init_hypernetwork(enc, "kaiming")
        enc_only.append(_generated_std(enc, gammas))
    std = torch.stack(stds).mean(0)
    assert ((std / std.mean() - 1).abs() <= 0.10).all(), std
    std_enc = torch.stack(enc_only).mean(0)
    assert ((std_enc / std_enc.mean() - 1).abs() <= 0.10).all(), std_enc


@pytest.mark.parametrize("batch", [None, 3])
def test_chunked_forward_fast_split_gives_the_same_values_and_gradients(batch):
    torch.manual_seed(0)
    hnet = ChunkedHypernetwork(target_mlp(), 4, chunk_size=700, hidden=(8,))
    cond = torch.randn(4) if batch is None else torch.randn(batch, 4)
    grads = []
    for fast in (True, False):
        hnet.zero_grad()
        weights = hnet(cond) if fast else hnet.layout.split(hnet.forward_flat(cond.reshape(-1, 4)))
        if not fast and batch is None:
            weights = [w[0] for w in weights]
        loss = sum((w * torch.linspace(-1, 1, w.numel()).reshape(w.shape)).sum() for w in weights[:-1])  # last unused
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in hnet.parameters()]))
        if fast:
            values = [w.detach().clone() for w in weights]
        else:
            assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(values, weights))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6 * float(grads[1].abs().max()))
