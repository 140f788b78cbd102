"""Whole-batch fetches of in-memory rows inside Avalanche's loaders (``fast_batches``): the same batches
in the same order, so training and evaluation give exactly what Avalanche's per-sample fetch gives;
anything the fast path cannot reproduce (a transform, an untagged dataset) keeps Avalanche's fetch."""
import pytest
import torch
from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import ReplayPlugin
from torch import nn
from torch.utils.data import TensorDataset

import strategies.fast_batches as fast_batches
from benchmarks.data.avalanche_streams import task_benchmark
from cl_moo import HypernetworkOptions
from strategies import HypernetworkStrategy, build_cl_model


def tasks(n_tasks=2, n=200, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, d, generator=g), torch.randint(0, 4, (n,), generator=g)
    train = [(x, y, torch.randperm(d, generator=g)) for _ in range(n_tasks)]
    return task_benchmark(train, [(x[:90], y[:90], perm) for _, _, perm in train])


def run(bench, fast, plugins=(), iterations=7):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    model = build_cl_model(net, emb_dim=4, hnet_options=HypernetworkOptions(chunk_size=300, hidden=(8,)))
    strategy = HypernetworkStrategy(model=model, beta=0.05, train_iterations=iterations, train_mb_size=32,
                                    eval_mb_size=40, fast_batches=fast, plugins=list(plugins))
    results = []
    for exp in bench.train_stream:
        strategy.train(exp)
        results.append({k: v for k, v in strategy.eval(bench.test_stream).items() if k.startswith("Top1_Acc_Exp")})
    return [p.detach().clone() for p in model.parameters()], results


@pytest.fixture
def gathers(monkeypatch):
    """Counts the whole-batch fetches."""
    count = {"n": 0}
    original = fast_batches.GatheredRows.gather

    def counted(self, indices):
        count["n"] += 1
        return original(self, indices)

    monkeypatch.setattr(fast_batches.GatheredRows, "gather", counted)
    return count


def test_training_and_evaluation_equal_avalanches_own_fetch(gathers):
    bench = tasks()
    fast_params, fast_results = run(bench, fast=True)
    assert gathers["n"] > 2 * 7  # the fast path was taken, for training and evaluation
    slow_params, slow_results = run(bench, fast=False)
    assert all(torch.equal(a, b) for a, b in zip(fast_params, slow_params))
    assert fast_results == slow_results and len(fast_results[-1]) == 2


def test_replay_batches_mixing_tasks_equal_avalanches_own_fetch(gathers):
    bench = tasks(n_tasks=3)
    fast_params, fast_results = run(bench, fast=True, plugins=[ReplayPlugin(mem_size=40)])
    assert gathers["n"] > 0
    slow_params, slow_results = run(bench, fast=False, plugins=[ReplayPlugin(mem_size=40)])
    assert all(torch.equal(a, b) for a, b in zip(fast_params, slow_params)) and fast_results == slow_results


def test_a_transform_or_an_untagged_dataset_keeps_avalanches_fetch(gathers):
    bench = tasks(n_tasks=1)
    exp = bench.train_stream[0]
    doubled = exp.dataset.replace_current_transform_group(lambda x: 2 * x)
    assert fast_batches.gathered([doubled], doubled.collate_fn, torch.device("cpu")) is None  # the probe differs
    x, y = torch.rand(50, 64), torch.randint(0, 4, (50,))
    untagged = AvalancheDataset([TensorDataset(x, y)], data_attributes=[
        DataAttribute(torch.zeros(50, dtype=torch.long), "targets_task_labels", use_in_getitem=True)])
    assert fast_batches.gathered([untagged], untagged.collate_fn, torch.device("cpu")) is None
    tagged = fast_batches.gathered([exp.dataset], exp.dataset.collate_fn, torch.device("cpu"))
    assert tagged is not None
    batch = tagged.gather([3, 0, 7])
    slow = exp.dataset.collate_fn([exp.dataset[i] for i in (3, 0, 7)])
    assert type(batch) is type(slow) and all(torch.equal(a, b) for a, b in zip(batch, slow))


def test_the_index_of_a_data_set_is_read_once_not_at_every_evaluation(monkeypatch):
    """Avalanche makes a new eval() clone of an experience's data set for every evaluation; the clones share
    its data attributes, so the row keys and task labels are read once; a new data set is read anew."""
    reads = []
    original = fast_batches._read_index

    def counted(rows, tasks):
        reads.append(len(rows))
        return original(rows, tasks)

    monkeypatch.setattr(fast_batches, "_read_index", counted)
    bench = tasks()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    strategy = HypernetworkStrategy(model=build_cl_model(net, emb_dim=4,
                                                         hnet_options=HypernetworkOptions(chunk_size=300, hidden=(8,))),
                                    train_iterations=2, train_mb_size=32, eval_mb_size=40)
    strategy.train(bench.train_stream[0])
    reads.clear()
    first = strategy.eval(bench.test_stream)
    assert reads == [90, 90]  # one read per test experience
    assert strategy.eval(bench.test_stream) == first
    assert reads == [90, 90]  # none at the second evaluation
    keys, labels = fast_batches.row_index(bench.test_stream[1].dataset.eval())
    assert reads == [90, 90] and torch.equal(labels, torch.ones(90, dtype=torch.int64))
    assert torch.equal(keys >> 32, torch.full((90,), int(keys[0]) >> 32))
    other = tasks(seed=1)  # another data set: read anew
    fast_batches.row_index(other.test_stream[0].dataset)
    assert reads == [90, 90, 90]


def test_a_source_is_copied_to_a_device_once_and_dropped_with_its_tensor():
    t = torch.rand(4, 3)
    assert fast_batches.on_device(t, torch.device("cpu")) is t  # already there: no copy
    source = fast_batches.RowSource(t, torch.arange(4), perm=torch.tensor([2, 0, 1]))
    x, y = source.gather(torch.tensor([1, 3]), torch.device("cpu"))
    assert torch.equal(x, t[[1, 3]][:, [2, 0, 1]]) and torch.equal(y, torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="equal length"):
        fast_batches.RowSource(t, torch.arange(5))


def test_a_one_task_batch_is_routed_without_reading_its_labels_back():
    bench = tasks(n_tasks=1)
    rows = fast_batches.gathered([bench.train_stream[0].dataset], bench.train_stream[0].dataset.collate_fn,
                                 torch.device("cpu"))
    assert getattr(rows.gather([0, 5, 9])[-1], fast_batches.SINGLE_TASK) == 0
    two = tasks(n_tasks=2)
    mixed = fast_batches.gathered([e.dataset for e in two.train_stream], two.train_stream[0].dataset.collate_fn,
                                  torch.device("cpu"))
    n = len(two.train_stream[0].dataset)
    batch = mixed.gather([0, n + 1])  # one sample of each task: no shortcut, the model reads the labels
    assert torch.equal(batch[-1], torch.tensor([0, 1])) and not hasattr(batch[-1], fast_batches.SINGLE_TASK)


class EveryStep(SupervisedPlugin):
    """Reads the task loss after every iteration (a host read per step, as before)."""

    def __init__(self):
        super().__init__()
        self.values = []

    def after_training_iteration(self, strategy, **kwargs):
        self.values.append(strategy.last_task_loss)


def test_losses_read_every_few_steps_equal_those_read_every_step():
    from benchmarks.runners.cl_runner import LossRecorder
    from benchmarks.runners.run_records import LossMonitor

    monitor, every_step = LossMonitor(), EveryStep()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    model = build_cl_model(net, emb_dim=4, hnet_options=HypernetworkOptions(chunk_size=300, hidden=(8,)))
    strategy = HypernetworkStrategy(model=model, beta=0.05,
                                    train_iterations=7, train_mb_size=32, sync_every=3,
                                    plugins=[LossRecorder(monitor, every=3), every_step])
    for exp in tasks().train_stream:
        strategy.train(exp)
    assert monitor.losses == {"task 0": every_step.values[:7], "task 1": every_step.values[7:]}
    assert strategy.last_reg_loss > 0 and len(every_step.values) == 14


def test_a_nan_loss_is_reported_with_its_iteration_when_the_checks_are_read_every_few_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    model = build_cl_model(net, emb_dim=4, hnet_options=HypernetworkOptions(chunk_size=300, hidden=(8,)))
    strategy = HypernetworkStrategy(model=model, train_iterations=9, train_mb_size=32, sync_every=4)
    assert strategy.checks_every == 4
    with torch.no_grad():
        model.hnet.head.bias.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="training loss became nan at iteration 0 of task 0.*lower the learning"):
        strategy.train(tasks(n_tasks=1).train_stream[0])
    with pytest.raises(ValueError, match="sync_every must be an integer >= 1"):
        HypernetworkStrategy(model=model, sync_every=0)
