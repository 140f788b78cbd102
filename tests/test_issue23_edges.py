"""Issue 23's edges: plugins added after construction, untrained task ids, class-incremental streams,
misspelled weight names, solver arguments, negative losses, BatchNorm statistics per task."""
import warnings

import pytest
import torch
from avalanche.benchmarks.scenarios import benchmark_from_datasets, with_task_labels
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from benchmarks.data.avalanche_streams import task_benchmark, task_dataset
from cl_moo import FunctionalTarget, HypernetworkOptions
from strategies import HypernetworkStrategy, TaskLabelError, build_cl_model
from strategies.solvers import EPO, Chebyshev, HypervolumeMaximization, LinearScalarization, SmoothChebyshev

warnings.filterwarnings("ignore", message="No loggers specified")

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(seed, *, n=300, d=16, classes=4, offset=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(classes, d, generator=g) * 2
    y = torch.randint(0, classes, (n,), generator=g)
    x = (centers[y] + 0.3 * torch.randn(n, d, generator=g)).clamp_min(0)
    return x, y + offset


def net(d=16, classes=4):
    return nn.Sequential(nn.Linear(d, 20), nn.ReLU(), nn.Linear(20, classes))


def strategy_for(module=None, *, iterations=5, plugins=(), **kwargs):
    torch.manual_seed(0)
    model = build_cl_model(module if module is not None else net(), emb_dim=4,
                           hnet_options=HypernetworkOptions(chunk_size=500, hidden=(10,)), seed=0)
    return HypernetworkStrategy(model=model, lr=1e-3, beta=0.05, train_iterations=iterations, train_mb_size=32,
                                evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]), plugins=list(plugins), health_every=None,
                                **kwargs)


@pytest.fixture(scope="module")
def two_tasks():
    tasks = [blobs(0), blobs(1)]
    return task_benchmark(tasks, tasks)


# ---------------------------------------------------------------- (a) plugins added after construction
@pytest.mark.parametrize("make, reason", [
    (lambda: __import__("avalanche.training.plugins", fromlist=["x"]).SynapticIntelligencePlugin(si_lambda=1.0),
     "importances stay 0"),
    (lambda: __import__("avalanche.training.plugins", fromlist=["x"]).LFLPlugin(lambda_e=0.1), "feature"),
])
def test_a_plugin_appended_after_construction_is_refused_at_train(two_tasks, make, reason):
    strategy = strategy_for()
    strategy.plugins.append(make())
    with pytest.raises(ValueError, match=reason):
        strategy.train(two_tasks.train_stream[0])
    assert strategy.trained_tasks == []


# ---------------------------------------------------------------- (b) task ids that were never trained
def test_the_model_refuses_a_task_id_without_an_embedding(two_tasks):
    strategy = strategy_for()
    strategy.train(two_tasks.train_stream[0])
    model = strategy.model.eval()
    x = two_tasks.test_stream[1].dataset[0][0].unsqueeze(0)
    with pytest.raises(TaskLabelError, match=r"task 1 .*not trained.*trained tasks: \[0\]"):
        model(x, 1)
    with pytest.raises(TaskLabelError, match=r"task 3 "):
        model(x.repeat(2, 1), torch.tensor([0, 3]))
    with pytest.raises(TaskLabelError, match=r"task 2 "):
        model.infer_task(x, [0, 2])
    assert model(x, 0).shape == (1, 4)
    # the untrained network (all-zero embedding) stays reachable on purpose
    assert model(x, 1, allow_untrained=True).shape == (1, 4)


class EvalCounter(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.evaluated = 0

    def after_eval_exp(self, strategy, **kwargs):
        self.evaluated += 1


def test_evaluating_an_untrained_task_is_a_stated_choice(two_tasks):
    # default: scored as the untrained network (Avalanche's full-stream evaluation), and recorded
    strategy = strategy_for()
    strategy.train(two_tasks.train_stream[0])
    results = strategy.eval(two_tasks.test_stream)
    assert "Top1_Acc_Exp/eval_phase/test_stream/Task001/Exp001" in results
    assert strategy.untrained_eval_tasks == [1]
    strategy.eval(two_tasks.test_stream[:1])
    assert strategy.untrained_eval_tasks == []
    # refuse: names the task id and the trained ids
    counter = EvalCounter()
    strict = strategy_for(untrained_tasks="refuse", plugins=[counter])
    strict.train(two_tasks.train_stream[0])
    strict.eval(two_tasks.test_stream[:1])
    assert counter.evaluated == 1
    with pytest.raises(TaskLabelError, match=r"task 1\b.*not trained.*trained tasks: \[0\].*untrained_tasks="):
        strict.eval(two_tasks.test_stream)
    assert counter.evaluated == 1  # refused before evaluating anything
    with pytest.raises(TaskLabelError, match=r"task 1\b"):
        strict.eval(iter(two_tasks.test_stream))  # a one-shot iterator: refused when it reaches the experience
    with pytest.raises(ValueError, match="untrained_tasks must be"):
        strategy_for(untrained_tasks="skip")


def test_entropy_inference_routes_untrained_task_ids_to_the_trained_tasks(two_tasks):
    strategy = strategy_for(task_inference="entropy", untrained_tasks="refuse")
    strategy.train(two_tasks.train_stream[0])
    results = strategy.eval(two_tasks.test_stream)  # task 1's samples are answered by task 0's network
    assert "Top1_Acc_Exp/eval_phase/test_stream/Task001/Exp001" in results
    assert strategy.untrained_eval_tasks == [1]


# ---------------------------------------------------------------- (c) class-incremental streams
def test_a_class_incremental_stream_is_refused_naming_entropy_inference():
    (x0, y0), (x1, y1) = blobs(0, classes=2), blobs(1, classes=2, offset=2)
    bench = with_task_labels(benchmark_from_datasets(train=[task_dataset(x0, y0, 0), task_dataset(x1, y1, 0)]))
    strategy = strategy_for()
    strategy.train(bench.train_stream[0])
    with pytest.raises(TaskLabelError, match=r'class-incremental.*task_inference="entropy"'):
        strategy.train(bench.train_stream[1])


# ---------------------------------------------------------------- (d) weight dicts with unknown keys
def test_a_weight_dict_with_a_misspelled_or_extra_key_is_refused():
    target = FunctionalTarget(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    weights = dict(zip(target.param_names, target.initial_weights()))
    x = torch.randn(5, 3)
    assert target(weights, x).shape == (5, 2)
    bad = dict(weights)
    bad["2.weihgt"] = bad.pop("2.weight")
    with pytest.raises(KeyError, match=r"unknown.*'2\.weihgt'.*did you mean '2\.weight'.*lacks.*'2\.weight'"):
        target(bad, x)
    extra = {**weights, "3.bias": torch.zeros(2)}
    with pytest.raises(KeyError, match=r"unknown.*'3\.bias'"):
        target(extra, x)
    with pytest.raises(KeyError, match=r"lacks \['0\.bias'\]"):
        target({k: v for k, v in weights.items() if k != "0.bias"}, x)


# ---------------------------------------------------------------- (e) array-like solver arguments
@pytest.mark.parametrize("make, name", [
    (lambda: Chebyshev(ideal="abc"), r"Chebyshev\(ideal="),
    (lambda: SmoothChebyshev(ideal=[[0.0, 1.0]]), r"SmoothChebyshev\(ideal="),
    (lambda: SmoothChebyshev(ideal={"a": 1}), r"SmoothChebyshev\(ideal="),
    (lambda: HypervolumeMaximization(ref="big"), r"HypervolumeMaximization\(ref="),
    (lambda: Chebyshev(ideal=[0.0, None]), r"Chebyshev\(ideal="),
    (lambda: EPO(eps="small"), r"EPO\(eps="),
])
def test_bad_array_arguments_name_the_argument_and_the_expected_form(make, name):
    with pytest.raises((TypeError, ValueError), match=name + r".*(number|numbers)"):
        make()


# ---------------------------------------------------------------- (f) negative losses: one rule
NO_WEIGHTS = torch.zeros(2, 1)


def call(solver, losses, rays=((0.5, 0.5), (0.2, 0.8))):
    losses = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    weights = torch.zeros(2, 1, dtype=torch.float64, requires_grad=True)
    return solver(losses + 0 * weights.sum(), torch.tensor(rays, dtype=torch.float64), weights)


@pytest.mark.parametrize("solver, label", [
    (EPO(), "EPO"), (Chebyshev(), "Chebyshev"), (SmoothChebyshev(), "SmoothChebyshev"),
    (HypervolumeMaximization(), "HypervolumeMaximization"),
])
def test_a_negative_loss_is_refused_by_every_solver_with_one_message(solver, label):
    with pytest.raises(ValueError, match=rf"^{label}: objective 1 has a loss of -0\.5 \(ray 1\), below 0; {label} "
                                         r"needs losses >= 0.*shift objective 1 by a constant"):
        call(solver, [[1.0, 2.0], [0.3, -0.5]])


def test_an_explicit_reference_below_the_losses_accepts_negative_losses():
    negative = [[-1.0, -2.0], [-1.5, -1.2]]
    assert torch.isfinite(call(Chebyshev(ideal=[-3.0, -3.0]), negative))
    assert torch.isfinite(call(SmoothChebyshev(ideal=-3.0), negative))
    assert torch.isfinite(call(HypervolumeMaximization(ref=[0.0, 0.0], lam=0.0), negative))
    assert torch.isfinite(call(LinearScalarization(), negative))  # shift-invariant: no reference at all
    # an explicit ideal must still be below the losses: it is what the objectives are measured from
    with pytest.raises(ValueError, match=r"^Chebyshev: objective 1 has a loss of -2 \(ray 0\), below the ideal "
                                         r"point ideal\[1\] = -1.*pass an ideal="):
        call(Chebyshev(ideal=-1.0), negative)


# ---------------------------------------------------------------- (g) BatchNorm statistics per task
def bn_run(per_task_stats, beta=1.0):
    def shifted(seed, scale, shift):
        x, y = blobs(seed)
        return x * scale + shift, y

    tasks = [shifted(0, 1.0, 0.0), shifted(1, 3.0, 2.0)]  # task 1's inputs: another scale and offset
    bench = task_benchmark(tasks, tasks)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(16, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 4))
    model = build_cl_model(module, emb_dim=4,
                           hnet_options=HypernetworkOptions(chunk_size=500, hidden=(10,)),
                           seed=0, per_task_stats=per_task_stats)
    strategy = HypernetworkStrategy(model=model, lr=1e-3, beta=beta, train_iterations=100, train_mb_size=32,
                                    evaluator=EvaluationPlugin(loggers=[]), health_every=None)
    x0, y0 = tasks[0]
    strategy.train(bench.train_stream[0])
    model.eval()
    with torch.no_grad():
        before = model(x0, 0)
    stats0 = {k: v.clone() for k, v in model.stats(0).items()} if per_task_stats else None
    strategy.train(bench.train_stream[1])
    model.eval()
    with torch.no_grad():
        after = model(x0, 0)
    accuracy = [float((o.argmax(-1) == y0).float().mean()) for o in (before, after)]
    return strategy, before, after, accuracy, stats0, bench


def test_batchnorm_running_statistics_are_kept_per_task():
    strategy, before, after, accuracy, stats0, bench = bn_run(True)
    model = strategy.model
    assert model.stat_names == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    # task 0's statistics are untouched by task 1's training (task 1 has its own, which moved)
    assert all(torch.equal(model.stats(0)[k], v) for k, v in stats0.items())
    assert not torch.allclose(model.stats(1)["1.running_mean"], stats0["1.running_mean"])
    # with the regularizer holding task 0's weights, its outputs are nearly unchanged
    assert float((after - before).norm() / before.norm()) < 0.03
    assert accuracy[1] >= accuracy[0] - 0.01
    # the statistics travel with the checkpoint
    fresh = build_cl_model(nn.Sequential(nn.Linear(16, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 4)),
                           emb_dim=4, hnet_options=HypernetworkOptions(chunk_size=500, hidden=(10,)), seed=0)
    restored = HypernetworkStrategy(model=fresh, evaluator=EvaluationPlugin(loggers=[]), health_every=None)
    restored.load_state_dict(strategy.state_dict())
    fresh.eval()
    x = torch.stack([bench.test_stream[0].dataset[i][0] for i in range(len(bench.test_stream[0].dataset))])
    with torch.no_grad():
        assert torch.equal(fresh(x, 0), after)
        # entropy inference runs every task with its own statistics
        assert torch.allclose(fresh.all_task_outputs(x, [0, 1])[0], after, atol=1e-5)  # a batched hnet call


def test_shared_batchnorm_statistics_would_change_task_0():
    """What per-task statistics prevent: with one shared set, task 1's data rewrites task 0's statistics."""
    _, before, after, accuracy, _, _ = bn_run(False)
    assert float((after - before).norm() / before.norm()) > 0.5
    assert accuracy[1] < accuracy[0] - 0.3


def test_a_target_runs_with_buffers_from_outside_and_leaves_its_own_alone():
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    target = FunctionalTarget(module)
    assert target.running_stat_names() == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    weights = target.initial_weights()
    own = {k: v.clone() for k, v in module.named_buffers()}
    mine = {"1.running_mean": torch.zeros(4), "1.running_var": torch.ones(4),
            "1.num_batches_tracked": torch.tensor(0)}
    x = torch.randn(8, 3) + 5.0
    target(weights, x, buffers=mine)  # training mode: the given statistics move
    assert int(mine["1.num_batches_tracked"]) == 1 and float(mine["1.running_mean"].abs().sum()) > 0
    assert all(torch.equal(v, own[k]) for k, v in module.named_buffers())
    batched = [w.unsqueeze(0).repeat(2, *([1] * w.dim())) for w in weights]
    with pytest.warns(UserWarning):
        target.forward_shared(batched, x, buffers=mine)  # the per-set loop, writing the given statistics
    assert int(mine["1.num_batches_tracked"]) == 2
    assert all(torch.equal(v, own[k]) for k, v in module.named_buffers())
    module.eval()
    out = target(weights, x, buffers=mine)
    assert torch.allclose(target.forward_shared(batched, x, buffers=mine)[1], out, atol=1e-6)  # vmap in eval mode
    with pytest.raises(KeyError, match="unknown name '1.running_mea'"):
        target(weights, x, buffers={"1.running_mea": torch.zeros(4)})
