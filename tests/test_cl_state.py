"""``HypernetworkStrategy.state_dict()`` / ``load_state_dict()``: a strategy built the same way, given
the state (and the global random-number generators) after an experience, continues exactly as the
uninterrupted one: same parameters, losses, optimizer moments, regularizer targets, clock and health
record. The former names ``cl_state_dict`` / ``load_cl_state_dict`` still work, with a warning."""
import io

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from benchmarks.data.avalanche_streams import task_benchmark
from cl_moo import HypernetworkOptions
from strategies import HypernetworkStrategy, build_cl_model

HNET = HypernetworkOptions(chunk_size=300, hidden=(8,))
pytestmark = [
    pytest.mark.filterwarnings("ignore::cl_moo.health.HealthWarning"),  # random labels: nothing to learn
    pytest.mark.usefixtures("one_thread"),  # tiny tensors
]


def tasks(n_tasks=3, n=160, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, d, generator=g), torch.randint(0, 4, (n,), generator=g)
    train = [(x, y, torch.randperm(d, generator=g)) for _ in range(n_tasks)]
    return task_benchmark(train, [(x[:64], y[:64], perm) for _, _, perm in train])


class Losses(SupervisedPlugin):
    """Every training iteration's loss."""

    def __init__(self):
        super().__init__()
        self.values = []

    def after_training_iteration(self, strategy, **kwargs):
        self.values.append(float(strategy.loss.detach()))


def build(losses, init_seed=0, **kwargs):
    """The strategy, built the same way each time (the hypernetwork's init from ``init_seed``)."""
    torch.manual_seed(init_seed)
    net = nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    model = build_cl_model(net, emb_dim=4, hnet_options=HNET, seed=0)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    return HypernetworkStrategy(model=model, beta=0.05, train_iterations=6, train_mb_size=32, eval_mb_size=64,
                                plugins=[losses], evaluator=evaluator, health_every=2, **kwargs)


def experience(strategy, bench, i):
    strategy.train(bench.train_stream[i])
    return {k: v for k, v in strategy.eval(bench.test_stream).items() if k.startswith("Top1_Acc_Exp")}


def snapshot(strategy):
    return {
        "params": [p.detach().clone() for p in strategy.model.parameters()],
        "buffers": [b.clone() for b in strategy.model.buffers()],
        "optimizer": strategy.optimizer.state_dict(),
        "clock": {k: getattr(strategy.clock, k) for k in HypernetworkStrategy.CLOCK_COUNTERS},
        "total_iterations": strategy.total_iterations,
        "trained_tasks": list(strategy.trained_tasks),
        "health": strategy.health_log.as_dict(),
    }


def assert_same(a, b):
    assert len(a["params"]) == len(b["params"]) and all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
    assert all(torch.equal(x, y) for x, y in zip(a["buffers"], b["buffers"]))
    for key in ("clock", "total_iterations", "trained_tasks", "health"):
        assert a[key] == b[key], key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys() and all(torch.equal(torch.as_tensor(sa[k][n]), torch.as_tensor(sb[k][n]))
                                                     for n in sa[k])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def through_bytes(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


SETTINGS = {
    "defaults": {},
    "adam moments kept, look-ahead": {"reset_optimizer_state": False, "lookahead": True},
    "online targets, random subset": {"reg_targets": "online", "reg_subset": 1},
}


@pytest.mark.parametrize("kwargs", list(SETTINGS.values()), ids=list(SETTINGS))
def test_a_loaded_state_continues_as_uninterrupted_training(kwargs):
    bench = tasks()
    whole_losses = Losses()
    whole = build(whole_losses, **kwargs)
    whole_results = [experience(whole, bench, i) for i in range(3)]

    first_losses = Losses()
    first = build(first_losses, **kwargs)
    results = [experience(first, bench, i) for i in range(2)]
    state, rng = through_bytes(first.state_dict()), torch.get_rng_state()
    assert set(state) == set(HypernetworkStrategy.STATE_KEYS)

    resumed_losses = Losses()
    resumed = build(resumed_losses, init_seed=1, **kwargs)  # another init: the state must replace it
    assert not torch.equal(next(resumed.model.hnet.parameters()), next(first.model.hnet.parameters()))
    resumed.load_state_dict(state)
    assert_same(snapshot(resumed), snapshot(first))  # everything restored, before any training
    torch.set_rng_state(rng)  # the runners restore the global generators beside the strategy's state
    results.append(experience(resumed, bench, 2))

    assert results == whole_results
    assert first_losses.values + resumed_losses.values == whole_losses.values
    assert_same(snapshot(resumed), snapshot(whole))


def test_the_state_holds_the_regularizer_targets_and_the_current_task():
    bench = tasks()
    strategy = build(Losses())
    for i in range(2):
        experience(strategy, bench, i)
    state = strategy.state_dict()
    assert state["current_task"] == 1 and state["trained_tasks"] == [0, 1] and state["num_tasks"] == 2
    assert state["regularizer"]["tasks"] == [0]  # recorded before task 1: task 0's targets
    fresh = build(Losses(), init_seed=1)
    fresh.load_state_dict(state)
    assert fresh.regularizer.tasks == [0] and fresh.current_task == 1
    # the penalty of the loaded strategy equals the original's (same targets, same hypernetwork)
    for s in (strategy, fresh):
        s.model.eval()
    penalties = [s.regularizer.penalty(s.model.hnet, s.model.embeddings([0])) for s in (strategy, fresh)]
    assert torch.equal(penalties[0], penalties[1])
    # the optimizer's task-embedding group is the current task's embedding, as training left it
    assert fresh.optimizer.param_groups[1]["params"][0] is fresh.model.task_embeddings[1]


def test_a_state_of_the_former_layout_loads_and_continues():
    """A checkpoint written by cl_state_dict() before the optimizer, regularizer and clock were in it: the
    optimizer state was reset at every experience and the targets are recorded anew, so training continues
    as uninterrupted training does."""
    bench = tasks()
    whole_losses = Losses()
    whole = build(whole_losses)
    for i in range(3):
        experience(whole, bench, i)
    first = build(Losses())
    for i in range(2):
        experience(first, bench, i)
    state = first.state_dict()
    old = {k: state[k] for k in ("model", "num_tasks", "known_tasks", "trained_tasks", "total_iterations",
                                 "health")}
    old["optimizer_lrs"] = [g["lr"] for g in first.optimizer.param_groups]
    rng = torch.get_rng_state()
    resumed_losses = Losses()
    resumed = build(resumed_losses, init_seed=1)
    resumed.load_state_dict(old)
    torch.set_rng_state(rng)
    experience(resumed, bench, 2)
    assert resumed_losses.values == whole_losses.values[-6:]
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.parameters(), whole.model.parameters()))


def test_an_incomplete_state_is_refused_and_the_former_names_warn():
    strategy = build(Losses())
    with pytest.raises(KeyError, match=r"lacks \['model'\]"):
        strategy.load_state_dict({k: v for k, v in strategy.state_dict().items() if k != "model"})
    with pytest.deprecated_call(match="use state_dict"):
        state = strategy.cl_state_dict()
    with pytest.deprecated_call(match="use load_state_dict"):
        strategy.load_cl_state_dict(state)
