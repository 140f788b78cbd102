import pytest
import torch
from torch import nn

from cl_moo import ChunkedHypernetwork, FunctionalTarget, MLPHypernetwork


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )


def test_shapes_and_unselected_parameters_stay_learnable():
    model = small_cnn()
    names = ["0.weight", "0.bias", "4.weight", "4.bias"]
    target = FunctionalTarget(model, names)
    assert list(target.layout.shapes) == [torch.Size([4, 1, 3, 3]), torch.Size([4]), torch.Size([5, 144]), torch.Size([5])]
    assert target.num_weights == 36 + 4 + 720 + 5
    assert model[1].weight.requires_grad and model[1].bias.requires_grad
    assert not model[0].weight.requires_grad


def test_given_weights_reproduce_the_model_itself():
    model = small_cnn().eval()
    x = torch.randn(7, 1, 8, 8)
    expected = model(x)
    target = FunctionalTarget(model)
    out = target(target.initial_weights(), x)
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "chunked"])
def test_batched_weights_equal_separate_calls_and_gradients_flow(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    target = FunctionalTarget(model)
    if kind == "mlp":
        hnet = MLPHypernetwork(target, 2, hidden=(8,))
    else:
        hnet = ChunkedHypernetwork(target, 2, chunk_size=20, hidden=(8,))
    cond = torch.rand(5, 2)
    weights = hnet(cond)
    x = torch.randn(5, 4, 6)
    batched = target(weights, x)
    separate = torch.stack([target([w[b] for w in weights], x[b]) for b in range(5)])
    assert (batched - separate).abs().max().item() < 1e-5
    shared = target.forward_shared(weights, x[0])
    assert (shared - torch.stack([target([w[b] for w in weights], x[0]) for b in range(5)])).abs().max() < 1e-5
    batched.sum().backward()
    grads = [p.grad for p in hnet.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_unknown_parameter_name_is_named_with_the_valid_ones():
    with pytest.raises(KeyError, match=r"'nope.weight'.*valid names are.*0\.weight"):
        FunctionalTarget(nn.Sequential(nn.Linear(2, 2)), ["nope.weight"])


def test_wrong_weight_shape_is_reported():
    target = FunctionalTarget(nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"weight 'weight' has shape \(3, 3\); expected \(2, 3\)"):
        target([torch.zeros(3, 3), torch.zeros(2)], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="forward_shared"):
        target([torch.zeros(4, 2, 3), torch.zeros(4, 2)], torch.zeros(3, 3))
