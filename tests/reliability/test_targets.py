"""Reliability of FunctionalTarget: "any nn.Module" holds for batched weight sets."""
import io
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cl_moo import FunctionalTarget, HypernetworkOptions
from cl_moo.target import TargetCallError, TargetFallbackWarning

B = 3


class LSTMHead(nn.Module):
    """LSTM followed by a Linear on the last hidden state."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.out(h[-1])


class Attention(nn.Module):
    """Self-attention over a sequence, mean-pooled, then a Linear."""

    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        o, _ = self.att(x, x, x, need_weights=False)
        return self.out(o.mean(1))


def bn_mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


MODELS = {
    # name: (factory, input shape, why it falls back to the loop, detected up front; None: vectorised)
    "batchnorm_train": (bn_mlp, (6, 4), "BatchNorm1d in training mode updates its running statistics"),
    "lstm": (LSTMHead, (6, 5, 4), "LSTM has no vmap batching rule"),
    "attention": (Attention, (6, 5, 8), None),
}


def weight_sets(target, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(w + 0.3 * torch.randn((B,) + w.shape, generator=g)).requires_grad_()
            for w in target.initial_weights()]


def fallback_warnings(record):
    return [w for w in record if issubclass(w.category, TargetFallbackWarning)]


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch's own note on attention under vmap
@pytest.mark.parametrize("name", list(MODELS))
def test_batched_equals_the_per_set_loop_in_values_and_gradients(name):
    factory, shape, falls_back = MODELS[name]
    torch.manual_seed(0)
    target = FunctionalTarget(factory()).train()
    weights = weight_sets(target)
    x = torch.randn(*shape)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        batched = target.forward_shared(weights, x)
        target.forward_shared(weights, x)  # a second call must not warn again
        separate = torch.stack([target([w[b] for w in weights], x) for b in range(B)])
    assert batched.shape == (B, shape[0], 2)
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-4)
    proj = torch.randn_like(batched)
    g_batched = torch.autograd.grad((batched * proj).sum(), weights)
    g_separate = torch.autograd.grad((separate * proj).sum(), weights)
    for a, b in zip(g_batched, g_separate):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    found = fallback_warnings(record)
    assert len(found) == (1 if falls_back else 0), [str(w.message) for w in found]
    if falls_back:
        message = str(found[0].message)
        assert falls_back in message and "one at a time" in message and "costs B separate forward passes" in message
    # per-set inputs (forward) agree with forward_shared
    xs = x.expand(B, *x.shape)
    torch.testing.assert_close(target(weights, xs), batched, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_unbatched_call_matches_the_module_itself(name):
    factory, shape, _ = MODELS[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(*shape)
    expected = model(x)
    target = FunctionalTarget(model)
    torch.testing.assert_close(target(target.initial_weights(), x), expected)


def test_batchnorm_running_statistics_get_one_update_with_the_mean_over_weight_sets():
    torch.manual_seed(0)
    model = bn_mlp().train()
    bn = model[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    old_mean, old_var = bn.running_mean.clone(), bn.running_var.clone()
    target = FunctionalTarget(model)
    weights = weight_sets(target)
    x = torch.randn(10, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TargetFallbackWarning)
        target.forward_shared(weights, x)
    h = torch.stack([x @ weights[0][b].T + weights[1][b] for b in range(B)]).detach()  # (B, N, 8) pre-BN
    m = bn.momentum
    torch.testing.assert_close(bn.running_mean, (1 - m) * old_mean + m * h.mean(1).mean(0))
    torch.testing.assert_close(bn.running_var, (1 - m) * old_var + m * h.var(1, unbiased=True).mean(0))
    assert int(bn.num_batches_tracked) == 1
    # eval mode uses the running statistics read-only: vectorised, no fallback, equals the loop
    target.eval()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = target.forward_shared(weights, x)
    assert not fallback_warnings(record)
    torch.testing.assert_close(out, torch.stack([target([w[b] for w in weights], x) for b in range(B)]))


class DataDependent(nn.Module):
    """No up-front sign that vmap fails: Python control flow on a tensor value, and a call counter."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        y = self.lin(x)
        return y if y.sum() > -1e9 else -y


def test_a_vmap_failure_is_caught_retried_with_the_loop_and_remembered():
    torch.manual_seed(0)
    model = DataDependent()
    target = FunctionalTarget(model, ["lin.weight", "lin.bias"])
    weights = weight_sets(target)
    x = torch.randn(4, 3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = target.forward_shared(weights, x)
        assert float(model.calls) == 1.0  # the failed vmap attempt was undone; the loop counted once
        target.forward_shared(weights, x)
    found = fallback_warnings(record)
    assert len(found) == 1 and "vmap failed" in str(found[0].message)
    expected = torch.stack([x @ weights[0][b].T + weights[1][b] for b in range(B)])
    torch.testing.assert_close(out, expected)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        raise RuntimeError("boom: unrelated failure")


def test_unrelated_errors_are_not_swallowed_by_the_fallback():
    target = FunctionalTarget(Broken())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="boom: unrelated failure") as info:
            target.forward_shared(weight_sets(target), torch.randn(4, 3))
    assert not fallback_warnings(record)
    assert target.module.calls == 1  # not retried with the loop
    assert isinstance(info.value.__cause__, RuntimeError) and "boom" in str(info.value.__cause__)


def test_fast_path_runs_the_module_once_and_does_not_warn():
    target = FunctionalTarget(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    calls = []
    target.module.register_forward_hook(lambda *a: calls.append(1))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        target.forward_shared(weight_sets(target), torch.randn(5, 4))
    assert len(calls) == 1 and not fallback_warnings(record)


class SharedSubmodule(nn.Module):
    """One Linear registered under two names."""

    def __init__(self):
        super().__init__()
        lin = nn.Linear(4, 4)
        self.a = lin
        self.b = lin

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class TiedAcrossModules(nn.Module):
    """Two Linears that share one weight Parameter."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize("factory", [SharedSubmodule, TiedAcrossModules])
def test_duplicate_parameters_work_batched_and_leave_the_module_intact(factory):
    torch.manual_seed(0)
    model = factory()
    target = FunctionalTarget(model)
    assert "b.weight" not in target.param_names
    weights = weight_sets(target)
    wd = dict(zip(target.param_names, weights))
    x = torch.randn(5, 4)
    out = target.forward_shared(weights, x)
    single = target([w[0] for w in weights], x)
    b_bias = "b.bias" if "b.bias" in wd else "a.bias"
    expected = torch.stack([
        torch.tanh(x @ wd["a.weight"][b].T + wd["a.bias"][b]) @ wd["a.weight"][b].T + wd[b_bias][b]
        for b in range(B)
    ])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(single, expected[0])
    for name, p in model.named_parameters(remove_duplicate=False):
        assert type(p) is nn.Parameter, name
    state = model.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    torch.save(target.state_dict(), io.BytesIO())
    buf.seek(0)
    assert set(torch.load(buf)) == set(state)


def test_selecting_two_names_of_one_tied_parameter_is_refused():
    with pytest.raises(ValueError, match="same \\(tied\\) parameter"):
        FunctionalTarget(TiedAcrossModules(), ["a.weight", "b.weight"])


def test_wrong_dtype_names_the_dtypes_and_the_fix():
    target = FunctionalTarget(nn.Linear(3, 2))
    weights = [w.double() for w in weight_sets(target)]
    with pytest.raises(TypeError, match=r"'weight' is torch.float64 .* holds torch.float32 .*target.to\(torch.float64\)"):
        target.forward_shared(weights, torch.randn(4, 3))
    with pytest.raises(TypeError, match="torch.float64"):
        target([w[0] for w in weights], torch.randn(4, 3))


@pytest.mark.parametrize("name", ["mlp", "lstm"])
@pytest.mark.parametrize("batched", [False, True])
def test_wrong_input_width_names_the_module_the_given_shape_and_the_expected_one(name, batched):
    if name == "mlp":
        target, x, expect = FunctionalTarget(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))), \
            torch.randn(5, 3), r"expects \(\.\.\., 4\)"
    else:
        target, x, expect = FunctionalTarget(LSTMHead()), torch.randn(5, 7, 3), r"expects \(N, L, 4\)"
    weights = weight_sets(target)
    if not batched:
        weights = [w[0] for w in weights]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TargetFallbackWarning)
        with pytest.raises(TargetCallError, match=rf"{type(target.module).__name__} failed on an input of shape "
                                                  rf"\({x.shape[0]}, .*{expect}") as info:
            target.forward_shared(weights, x)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__).rstrip(". ") in str(info.value)


def _other_devices():
    devices = ["meta"]  # a real second device type on every machine (tensors without storage)
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.mark.parametrize("device", _other_devices())
def test_weights_on_another_device_than_the_input_are_named(device):
    target = FunctionalTarget(nn.Linear(3, 2))
    weights = [w.detach().to(device) for w in weight_sets(target)]
    with pytest.raises(ValueError, match=rf"on {device}.* but the input is on cpu"):
        target.forward_shared(weights, torch.randn(4, 3))
    with pytest.raises(ValueError, match=rf"on {device}.* but the input is on cpu"):
        target([w[0] for w in weights], torch.randn(4, 3))


@pytest.mark.filterwarnings("ignore::cl_moo.target.TargetFallbackWarning")
@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("name", list(MODELS))
def test_a_pareto_hypernetwork_trains_these_targets(name):
    from strategies.phn import ParetoHypernetworkStrategy

    factory, shape, _ = MODELS[name]
    torch.manual_seed(0)
    n = 16
    data = TensorDataset(torch.randn(n, *shape[1:]), torch.zeros(n, 2), torch.ones(n, 2))
    phn = ParetoHypernetworkStrategy(
        target=factory().train(),
        losses=[lambda out, ya, yb: (out - ya).pow(2).mean(), lambda out, ya, yb: (out - yb).pow(2).mean()],
        hnet_options=HypernetworkOptions(hidden=(8,)), rays_per_step=4, lr=1e-2, train_epochs=2, train_mb_size=8,
    )
    before = [p.detach().clone() for p in phn.hnet.parameters()]
    phn.train(data)
    assert phn.iteration == 4
    assert any(not torch.equal(a, p) for a, p in zip(before, phn.hnet.parameters()))
    assert phn.last_losses is not None and torch.isfinite(phn.last_losses).all() and phn.last_losses.shape == (4, 2)
    losses = phn.eval(data, k=5)
    assert losses.shape == (5, 2) and (losses == losses).all() and (abs(losses) < float("inf")).all()


def test_dropout_runs_vectorised_with_an_independent_mask_per_weight_set():
    torch.manual_seed(0)
    target = FunctionalTarget(nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 2))).train()
    weights = [w.unsqueeze(0).repeat(B, *([1] * w.dim())) for w in target.initial_weights()]  # B equal sets
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = target.forward_shared(weights, torch.randn(32, 4))
    assert not fallback_warnings(record)
    assert not torch.allclose(out[0], out[1])
