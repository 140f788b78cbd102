"""Every tensor the strategies create follows the model's device (so ``device=cuda`` runs without code
changes). On CPU-only CI the shadow-device tracker finds host tensors that would meet device tensors on
a GPU; on a machine with CUDA the same scenarios also run for real on the GPU."""
import contextlib
import warnings
from pathlib import Path

import pytest
import torch
from avalanche.training.plugins import ReplayPlugin
from torch import nn
from torch.utils.data import TensorDataset

from benchmarks.data.pmnist import permuted_mnist
from device_tracking import DeviceTracker
from cl_moo import HypernetworkOptions
from strategies import HypernetworkStrategy, ParetoHypernetworkStrategy, build_cl_model
from two_quadratics import A, B, Point

warnings.filterwarnings("ignore", message="No loggers specified")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def tiny_pmnist(data_root):
    bench, _ = permuted_mnist(3, root=data_root, train_per_task=128, test_per_task=64, pad_to=28)
    return bench


def _mixes_devices():
    w = torch.randn(3, 4).to("cpu")
    w * torch.ones(4, device=w.device)  # placed: fine
    w.sum() * torch.tensor(2.0)  # a 0-dim host scalar: CUDA accepts it
    return w * torch.ones(4)  # host tensor meets a device tensor


def test_the_tracker_finds_a_host_tensor_meeting_a_device_tensor():
    with DeviceTracker(roots=[Path(__file__).parent]) as tracker:
        _mixes_devices()
    assert len(tracker.violations) == 1, tracker.violations
    assert "test_device_placement.py" in tracker.violations[0] and "mul" in tracker.violations[0]


def _cl_run(bench, device, tracker=None):
    """Builds on the CPU (as users do), then trains and evaluates on ``device``, under ``tracker`` if given."""
    torch.manual_seed(0)
    model = build_cl_model(nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), emb_dim=8,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(16,)))
    strategy = HypernetworkStrategy(model=model, lr=1e-3, beta=0.05, lookahead=True, reg_subset=1,
                                    train_iterations=4, train_mb_size=32, eval_mb_size=64, device=device,
                                    evaluator=None, plugins=[ReplayPlugin(mem_size=32)])
    with tracker or contextlib.nullcontext():
        for exp in bench.train_stream:
            strategy.train(exp)
        strategy.eval(bench.test_stream)
        strategy.model.task_inference = "entropy"
        strategy.eval(bench.test_stream[:1])
    return strategy


def _phn_runs(device, tracker=None):
    out = []
    for solver in ("ls", "epo"):
        phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a_on, quad_b_on],
                                         hnet_options=HypernetworkOptions(hidden=(8,)), solver=solver,
                                         rays_per_step=4, lr=1e-3, train_epochs=2, train_mb_size=16, seed=0,
                                         device=device)
        data = TensorDataset(torch.zeros(32, 1))
        with tracker or contextlib.nullcontext():
            phn.train(data)
            out.append(phn.eval(data, k=5))
    return out


def quad_a_on(out):
    return (out - A.to(out.device)).pow(2).sum(-1).mean()


def quad_b_on(out):
    return (out - B.to(out.device)).pow(2).sum(-1).mean()


@pytest.mark.slow
def test_the_cl_strategy_creates_no_host_tensor_that_meets_the_model(tiny_pmnist):
    tracker = DeviceTracker()
    _cl_run(tiny_pmnist, "cpu", tracker)
    assert tracker.violations == [], "\n".join(tracker.violations)


def test_the_pareto_strategy_creates_no_host_tensor_that_meets_the_model():
    tracker = DeviceTracker()
    _phn_runs("cpu", tracker)
    assert tracker.violations == [], "\n".join(tracker.violations)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU check above runs everywhere)")
def test_both_strategies_train_and_evaluate_on_cuda(tiny_pmnist):
    strategy = _cl_run(tiny_pmnist, "cuda")
    assert all(p.device.type == "cuda" for p in strategy.model.parameters())
    fronts = _phn_runs("cuda")
    assert all(torch.isfinite(torch.as_tensor(f)).all() for f in fronts)
