"""HypernetworkStrategy(compile=True) / train.compile=true: torch.compile of the per-batch model forward.

Compiled training equals eager within float rounding (losses of every iteration within LOSS_ATOL), a
compile failure falls back to eager with one warning, and the config key reaches the strategy of a
continual run and is refused for the Pareto runs.
"""

import warnings

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from benchmarks.configuration.config import ConfigError, load_config
from benchmarks.data.avalanche_streams import task_benchmark
from benchmarks.runners.composition import build_cl_strategy
from cl_moo import HypernetworkOptions
from strategies import HypernetworkStrategy, build_cl_model

warnings.filterwarnings("ignore", message="No loggers specified")

LOSS_ATOL = 1e-4  # compiled vs eager training loss, every iteration (inductor fuses ops: float rounding only)
ACC_ATOL = 1e-6  # evaluation accuracies (a rounding-level logit change flips no prediction here)
N_IN, N_OUT, ITERATIONS = 20, 4, 12


def synthetic_bench(n_tasks=2, n=96):
    """Linearly separable 4-class tasks of 20 features: one experience per task, task labels 0, 1, ..."""
    g = torch.Generator().manual_seed(0)
    train, test = [], []
    for _ in range(n_tasks):
        x = torch.randn(n + 64, N_IN, generator=g)
        y = (x @ torch.randn(N_IN, N_OUT, generator=g)).argmax(1)
        train.append((x[:n], y[:n]))
        test.append((x[n:], y[n:]))
    return task_benchmark(train, test)


class LossRecorder(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.losses = []

    def after_training_iteration(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))


def run(bench, target=None, **kwargs):
    torch.manual_seed(0)
    target = target or nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(), nn.Linear(16, N_OUT))
    model = build_cl_model(target, emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=100, hidden=(16,)))
    recorder = LossRecorder()
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loss_metrics(experience=True))
    strategy = HypernetworkStrategy(model=model, lr=1e-3, beta=0.01, train_iterations=ITERATIONS, train_mb_size=32,
                                    evaluator=evaluator, health_every=None, plugins=[recorder], **kwargs)
    results = {}
    for exp in bench.train_stream:
        strategy.train(exp)
        results = strategy.eval(bench.test_stream)
    scores = {k: v for k, v in results.items() if k.startswith(("Top1_Acc_Exp", "Loss_Exp"))}
    return strategy, recorder.losses, scores


@pytest.mark.slow
def test_compiled_training_equals_eager_within_tolerance():
    bench = synthetic_bench()
    eager, eager_losses, eager_scores = run(bench)
    compiled, losses, scores = run(bench, compile=True)
    assert eager.compiled is False and compiled.compiled is True
    assert compiled.compile_fallback_reason is None
    assert len(losses) == len(eager_losses) == 2 * ITERATIONS
    assert losses == pytest.approx(eager_losses, abs=LOSS_ATOL, rel=0)
    assert scores.keys() == eager_scores.keys() and scores
    for key, value in eager_scores.items():
        atol = ACC_ATOL if key.startswith("Top1") else LOSS_ATOL
        assert scores[key] == pytest.approx(value, abs=atol, rel=0), key


def fallback_warnings(record):
    return [w for w in record if issubclass(w.category, RuntimeWarning) and "compile=True" in str(w.message)]


def test_a_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", refuse)
    bench = synthetic_bench()
    _, eager_losses, eager_scores = run(bench)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        strategy, losses, scores = run(bench, compile=True)
    found = fallback_warnings(record)
    assert len(found) == 1, [str(w.message) for w in found]
    message = str(found[0].message)
    assert "RuntimeError: no compiler here" in message and "EAGERLY" in message
    assert strategy.compiled is False and strategy.compile_fallback_reason == "RuntimeError: no compiler here"
    assert losses == eager_losses and scores == eager_scores  # the eager run, bit for bit


class DataDependent(nn.Module):
    """A target dynamo cannot capture whole: its forward branches on a tensor's value."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(N_IN, N_OUT)

    def forward(self, x):
        y = self.fc(x)
        return y if y.sum() > 0 else -y


def test_a_target_dynamo_cannot_trace_falls_back():
    bench = synthetic_bench()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        strategy, losses, _ = run(bench, target=DataDependent(), compile=True)
    found = fallback_warnings(record)
    assert len(found) == 1
    assert "Data-dependent" in str(found[0].message) and "Traceback" not in str(found[0].message)
    assert strategy.compiled is False and len(losses) == 2 * ITERATIONS


def test_compile_must_be_a_bool():
    model = build_cl_model(nn.Sequential(nn.Linear(N_IN, N_OUT)), emb_dim=8,
                           hnet_options=HypernetworkOptions(chunk_size=100, hidden=(16,)))
    with pytest.raises(ValueError, match="compile must be True or False"):
        HypernetworkStrategy(model=model, compile="yes")


def test_train_compile_reaches_the_strategy_of_a_continual_run():
    for value, expected in (("true", True), ("false", False)):
        cfg = load_config(["benchmark=pmnist", f"train.compile={value}"])
        assert cfg.train.compile is expected
        model = build_cl_model(nn.Sequential(nn.Linear(N_IN, N_OUT)), emb_dim=8,
                               hnet_options=HypernetworkOptions(chunk_size=100, hidden=(16,)))
        strategy = build_cl_strategy(cfg, model, "cpu", classification=True, evaluator=None)
        assert strategy.compile_step is expected
        assert strategy.compiled is (None if expected else False)  # None: compiled at the first step
    assert load_config(["benchmark=pmnist"]).train.compile is False  # default off
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(["train.compile=maybe"])


@pytest.mark.parametrize("benchmark", ["multimnist", "multimnist_seq", "adult"])
def test_train_compile_is_refused_for_pareto_runs(benchmark):
    with pytest.raises(ConfigError, match="train.compile is not supported .*only the continual"):
        load_config([f"benchmark={benchmark}", "train.compile=true"])
