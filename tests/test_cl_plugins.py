"""The continual strategy composes with Avalanche: plugins' penalties, schedulers, EWC, LwF, replay."""
import warnings

import pytest
import torch
from avalanche.benchmarks.scenarios import benchmark_from_datasets, with_task_labels
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EWCPlugin, LRSchedulerPlugin, LwFPlugin, ReplayPlugin
from torch import nn

from benchmarks.data.avalanche_streams import task_dataset
from benchmarks.data.pmnist import permuted_mnist
from cl_moo import HypernetworkOptions
from strategies import HypernetworkStrategy, TaskLabelError, build_cl_model

warnings.filterwarnings("ignore", message="No loggers specified")
pytestmark = pytest.mark.slow  # three-experience strategy runs with each plugin: outside the quick subset


@pytest.fixture(scope="module")
def tiny_pmnist(data_root):
    bench, _ = permuted_mnist(3, root=data_root, train_per_task=256, test_per_task=128, pad_to=28)
    return bench


def make_strategy(iterations=6, plugins=(), optimizer=None, model=None, **kwargs):
    torch.manual_seed(0)
    model = model or build_cl_model(nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), emb_dim=8,
                                    hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(16,)))
    return HypernetworkStrategy(model=model, lr=1e-3, beta=0.05, train_iterations=iterations, train_mb_size=32,
                                evaluator=None, plugins=list(plugins), optimizer=optimizer, **kwargs)


def hnet_params(strategy):
    return torch.cat([p.detach().reshape(-1) for p in strategy.model.hnet.parameters()])


def params_after_stream(bench, plugins):
    """The hypernetwork's parameters after 4 iterations on every training experience, with ``plugins``."""
    strategy = make_strategy(iterations=4, plugins=plugins)
    for exp in bench.train_stream:
        strategy.train(exp)
    return hnet_params(strategy)


class L2Penalty(SupervisedPlugin):
    """A plugin that adds a penalty to strategy.loss in before_backward (the EWC/LwF/SI pattern)."""

    def __init__(self, weight):
        super().__init__()
        self.weight, self.calls = weight, 0

    def before_backward(self, strategy, **kwargs):
        self.calls += 1
        strategy.loss = strategy.loss + self.weight * sum(p.pow(2).sum() for p in strategy.model.hnet.parameters())


@pytest.mark.slow
def test_a_plugins_penalty_reaches_the_gradient(tiny_pmnist):
    plain = make_strategy()
    plain.train(tiny_pmnist.train_stream[0])
    penalty = L2Penalty(10.0)
    penalised = make_strategy(plugins=[penalty])
    penalised.train(tiny_pmnist.train_stream[0])
    assert penalty.calls == 6
    assert not torch.allclose(hnet_params(plain), hnet_params(penalised))
    # the penalty shrinks the parameters it acts on
    assert hnet_params(penalised).norm() < hnet_params(plain).norm()


class LrSeen(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.lrs = []

    def before_update(self, strategy, **kwargs):
        self.lrs.append([g["lr"] for g in strategy.optimizer.param_groups])


def test_lr_scheduler_plugin_changes_the_learning_rate_used(tiny_pmnist):
    model = build_cl_model(nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), emb_dim=8,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(16,)))
    optimizer = torch.optim.Adam(model.param_groups(lr=1e-3, emb_lr=2e-3))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    seen = LrSeen()
    strategy = make_strategy(iterations=4, model=model, optimizer=optimizer,
                             plugins=[LRSchedulerPlugin(scheduler, step_granularity="iteration"), seen])
    strategy.train(tiny_pmnist.train_stream[0])
    assert [lrs[0] for lrs in seen.lrs] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    assert [lrs[1] for lrs in seen.lrs] == pytest.approx([2e-3, 1e-3, 5e-4, 2.5e-4])  # the embedding group too
    assert strategy.optimizer is optimizer
    # the optimizer persists across experiences; the plugin's default resets both groups' rates per experience
    strategy.train(tiny_pmnist.train_stream[1])
    assert seen.lrs[4] == pytest.approx([1e-3, 2e-3])


def test_a_one_group_optimizer_is_refused_before_a_scheduler_could_miss_the_embedding():
    model = build_cl_model(nn.Sequential(nn.Linear(784, 10)), emb_dim=4,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(8,)))
    with pytest.raises(ValueError, match=r"needs two.*model.param_groups"):
        make_strategy(model=model, optimizer=torch.optim.Adam(model.shared_parameters(), lr=1e-3))


@pytest.mark.parametrize("optimizer", [
    lambda m: torch.optim.AdamW(m.param_groups(lr=1e-3)),
    lambda m: torch.optim.Adam(m.param_groups(lr=1e-3), weight_decay=1e-4),
    lambda m: torch.optim.SGD(m.param_groups(lr=1e-3), momentum=0.9),
])
def test_lookahead_refuses_optimizers_whose_step_it_cannot_predict(optimizer):
    model = build_cl_model(nn.Sequential(nn.Linear(784, 10)), emb_dim=4,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(8,)))
    with pytest.raises(TypeError, match="look-ahead"):
        make_strategy(model=model, optimizer=optimizer(model), lookahead=True)


def test_lookahead_training_adds_the_regularizer_after_the_plugins_penalties(tiny_pmnist):
    runs = []
    for lookahead in (False, True):
        strategy = make_strategy(iterations=5, lookahead=lookahead)
        strategy.train(tiny_pmnist.train_stream[0])
        strategy.train(tiny_pmnist.train_stream[1])
        assert strategy.last_reg_loss > 0
        runs.append(hnet_params(strategy))
    assert not torch.allclose(runs[0], runs[1])


def test_an_optimizer_over_other_parameters_is_refused():
    model = build_cl_model(nn.Sequential(nn.Linear(784, 10)), emb_dim=4,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(8,)))
    with pytest.raises(ValueError, match="shared_parameters"):
        make_strategy(model=model, optimizer=torch.optim.Adam(model.hnet.head.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("plugin", [lambda: EWCPlugin(ewc_lambda=100.0), lambda: LwFPlugin(alpha=1.0)])
def test_ewc_and_lwf_run_three_experiences_and_act(tiny_pmnist, plugin):
    finals = []
    for with_plugin in (False, True):
        strategy = make_strategy(plugins=[plugin()] if with_plugin else [])
        for exp in tiny_pmnist.train_stream:
            strategy.train(exp)
        finals.append(hnet_params(strategy))
        res = strategy.eval(tiny_pmnist.test_stream)
        assert strategy.trained_tasks == [0, 1, 2] and isinstance(res, dict)
    assert not torch.allclose(finals[0], finals[1])  # the plugin's penalty changed training


class MixedBatchCheck(SupervisedPlugin):
    """Checks every mixed-task mini-batch against per-task calls of the model."""

    def __init__(self):
        super().__init__()
        self.mixed = 0

    @torch.no_grad()
    def after_forward(self, strategy, **kwargs):
        tasks = strategy.mb_task_id.unique().tolist()
        if len(tasks) < 2:
            return
        self.mixed += 1
        for t in tasks:
            mask = strategy.mb_task_id == t
            expected = strategy.model.forward_single_task(strategy.mb_x[mask], t)
            assert torch.allclose(strategy.mb_output[mask], expected, atol=1e-5)


def test_replay_sends_each_sample_through_its_own_tasks_weights(tiny_pmnist):
    check = MixedBatchCheck()
    strategy = make_strategy(iterations=8, plugins=[ReplayPlugin(mem_size=64), check])
    strategy.train(tiny_pmnist.train_stream[0])
    strategy.train(tiny_pmnist.train_stream[1])
    assert check.mixed > 0


def test_a_stream_without_task_labels_is_refused_instead_of_fine_tuning():
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    bench = with_task_labels(benchmark_from_datasets(
        train=[task_dataset(x, y, 0), task_dataset(x[:, torch.randperm(784)], y, 0)]))
    strategy = make_strategy(iterations=2)
    strategy.train(bench.train_stream[0])
    with pytest.raises(TaskLabelError, match=r"task label 0 was already trained.*return_task_id=True"):
        strategy.train(bench.train_stream[1])
    revisit = make_strategy(iterations=2, allow_task_revisit=True)
    revisit.train(bench.train_stream[0])
    revisit.train(bench.train_stream[1])
    assert revisit.trained_tasks == [0]


@pytest.mark.slow
def test_avalanche_permuted_mnist_without_task_ids_is_refused(data_root, tmp_path):
    from avalanche.benchmarks.classic import PermutedMNIST

    from benchmarks.data.pmnist import avalanche_permuted_mnist

    avalanche_permuted_mnist(2, root=data_root)  # places the idx files where torchvision reads them
    from pathlib import Path

    cache = Path.home() / ".cache" / "cl_moo" / "avalanche_mnist"
    bench = PermutedMNIST(2, return_task_id=False, seed=0, dataset_root=str(cache))
    model = build_cl_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)), emb_dim=4,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(8,)))
    strategy = make_strategy(iterations=1, model=model)
    strategy.train(bench.train_stream[0])
    with pytest.raises(TaskLabelError, match="return_task_id=True"):
        strategy.train(bench.train_stream[1])


def test_evaluating_untrained_tasks_creates_nothing_and_draws_no_random_numbers(tiny_pmnist):
    runs = []
    for evaluate_early in (False, True):
        strategy = make_strategy(iterations=5)
        strategy.train(tiny_pmnist.train_stream[0])
        if evaluate_early:
            state = torch.get_rng_state()
            strategy.eval(tiny_pmnist.test_stream)  # tasks 1 and 2 are not trained yet
            assert strategy.model.num_tasks == 1
            assert torch.equal(torch.get_rng_state(), state)
        strategy.train(tiny_pmnist.train_stream[1])
        runs.append(hnet_params(strategy))
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("emb_init", ["previous", "random"])
def test_new_task_embedding_initialisation(tiny_pmnist, emb_init):
    model = build_cl_model(nn.Sequential(nn.Linear(784, 10)), emb_dim=4,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(8,)),
                           emb_init=emb_init)
    strategy = make_strategy(iterations=3, model=model)
    strategy.train(tiny_pmnist.train_stream[0])
    e0 = model.task_embeddings[0].detach().clone()
    model.train()
    model.adaptation(tiny_pmnist.train_stream[1])
    e1 = model.task_embeddings[1].detach()
    assert torch.equal(e1, e0) == (emb_init == "previous")


@pytest.mark.parametrize("plugin,reason", [
    (lambda: __import__("avalanche.training.plugins", fromlist=["LFLPlugin"]).LFLPlugin(lambda_e=0.1), "feature"),
    (lambda: __import__("avalanche.training.plugins", fromlist=["RWalkPlugin"]).RWalkPlugin(), "task-embedding"),
    (lambda: __import__("avalanche.training.plugins", fromlist=["GDumbPlugin"]).GDumbPlugin(mem_size=64), "fresh copy"),
    (lambda: (lambda cls: cls.__new__(cls))(__import__("avalanche.training.plugins", fromlist=["CWRStarPlugin"])
                                           .CWRStarPlugin), "classifier"),
    (lambda: __import__("avalanche.training.plugins", fromlist=["SynapticIntelligencePlugin"])
     .SynapticIntelligencePlugin(si_lambda=1.0), "importances stay 0"),
])
def test_plugins_that_cannot_work_are_refused_with_the_reason(plugin, reason):
    with pytest.raises(ValueError, match=reason):
        make_strategy(plugins=[plugin()])


def test_mas_gem_and_agem_change_training(tiny_pmnist):
    from avalanche.training.plugins import AGEMPlugin, GEMPlugin, MASPlugin

    plain = params_after_stream(tiny_pmnist, [])
    for plugin in (MASPlugin(lambda_reg=1.0), GEMPlugin(patterns_per_experience=16, memory_strength=0.5),
                   AGEMPlugin(patterns_per_experience=16, sample_size=16)):
        assert not torch.allclose(plain, params_after_stream(tiny_pmnist, [plugin])), type(plugin).__name__


def _shipped_plugins():
    import inspect

    import avalanche.training.plugins as shipped
    from avalanche.core import BasePlugin

    return sorted(n for n in dir(shipped) if inspect.isclass(getattr(shipped, n))
                  and issubclass(getattr(shipped, n), BasePlugin) and n != "SupervisedPlugin")


def test_every_plugin_avalanche_ships_is_either_supported_or_refused_with_a_reason():
    from strategies.hnet_cl import SUPPORTED_PLUGINS, UNSUPPORTED_PLUGINS

    shipped = _shipped_plugins()
    assert len(shipped) >= 28  # avalanche-lib 0.6 ships 28 (a smaller count means the scan broke)
    unclassified = [n for n in shipped if n not in SUPPORTED_PLUGINS and n not in UNSUPPORTED_PLUGINS]
    both = [n for n in shipped if n in SUPPORTED_PLUGINS and n in UNSUPPORTED_PLUGINS]
    assert not unclassified and not both, (unclassified, both)


PLUGIN_ARGS = {"BiCPlugin": {"mem_size": 64, "stage_2_epochs": 1}, "CoPEPlugin": {"mem_size": 64, "p_size": 10},
               "GSS_greedyPlugin": {"mem_size": 32, "input_size": [784]}, "RARPlugin": {"batch_size_mem": 8},
               "MemoryNCMUpdate": {"mem_size": 32}, "MemoryFeCAMUpdate": {"mem_size": 32}}


@pytest.mark.parametrize("name", ["BiCPlugin", "CoPEPlugin", "FeatureDistillationPlugin", "FromScratchTrainingPlugin",
                                  "GSS_greedyPlugin", "GenerativeReplayPlugin", "TrainGeneratorAfterExpPlugin",
                                  "RARPlugin", "NCMOracle", "FeCAMOracle", "CurrentDataNCMUpdate", "MemoryNCMUpdate",
                                  "CurrentDataFeCAMUpdate", "MemoryFeCAMUpdate"])
def test_plugins_that_crashed_with_foreign_errors_are_refused_with_the_reason(name):
    import avalanche.training.plugins as shipped
    from strategies.hnet_cl import UNSUPPORTED_PLUGINS

    plugin = getattr(shipped, name)(**PLUGIN_ARGS.get(name, {}))
    with pytest.raises(ValueError, match=f"{name} does not work with HypernetworkStrategy: .*") as refused:
        make_strategy(plugins=[plugin])
    assert UNSUPPORTED_PLUGINS[name][:40] in str(refused.value)


def test_mir_replays_stored_samples_and_changes_training(tiny_pmnist):
    from avalanche.training.plugins import MIRPlugin

    mir = MIRPlugin(batch_size_mem=8, mem_size=32)
    assert not torch.allclose(params_after_stream(tiny_pmnist, []), params_after_stream(tiny_pmnist, [mir]))
    assert len(mir.storage_policy.buffer) == 32


def test_early_stopping_stops_a_task_when_the_validation_metric_stalls(tiny_pmnist):
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EarlyStoppingPlugin, EvaluationPlugin

    def iterations(plugins):
        torch.manual_seed(0)
        model = build_cl_model(nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), emb_dim=8,
                               hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(16,)))
        strategy = HypernetworkStrategy(model=model, lr=1e-3, beta=0.05, train_iterations=60, train_mb_size=32,
                                        evaluator=EvaluationPlugin(accuracy_metrics(stream=True)), plugins=plugins,
                                        eval_every=5, peval_mode="iteration")
        strategy.train(tiny_pmnist.train_stream[0], eval_streams=[tiny_pmnist.test_stream[0]])
        return strategy.total_iterations

    # a margin of 0.5 accuracy is never gained between two checks: patience 1 stops at the second check
    stopper = EarlyStoppingPlugin(patience=1, val_stream_name="test_stream", peval_mode="iteration", margin=0.5)
    assert iterations([]) == 60
    assert iterations([stopper]) < 60


@pytest.mark.parametrize("reset_optimizer_state", [True, False])
def test_avalanche_checkpointing_resumes_bit_identically_without_excluding_the_optimizer(
        tiny_pmnist, tmp_path, reset_optimizer_state):
    from avalanche.checkpointing import maybe_load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoint.pkl"
    through = make_strategy(reset_optimizer_state=reset_optimizer_state)
    through.train(tiny_pmnist.train_stream[0])
    save_checkpoint(through, str(path))  # dill; failed with "Can't pickle sentinel" before
    rng = torch.get_rng_state()
    through.train(tiny_pmnist.train_stream[1])
    resumed, start = maybe_load_checkpoint(make_strategy(reset_optimizer_state=reset_optimizer_state), str(path))
    assert start == 1 and resumed.trained_tasks == [0]
    if not reset_optimizer_state:  # Adam's moments came back with the optimizer
        assert resumed.optimizer.state and all(s["step"] > 0 for s in resumed.optimizer.state.values())
    torch.set_rng_state(rng)
    resumed.train(tiny_pmnist.train_stream[1])
    assert torch.equal(hnet_params(through), hnet_params(resumed))


def test_a_checkpoint_refuses_an_optimizer_over_tensors_outside_the_model(tiny_pmnist, tmp_path):
    import pickle

    from strategies.optimizer_pickling import OptimizerPicklingError

    strategy = make_strategy()
    strategy.optimizer.add_param_group({"params": [torch.zeros(3, requires_grad=True)]})
    with pytest.raises(OptimizerPicklingError, match="not parameters of the strategy's model.*exclude"):
        pickle.dumps(strategy)
    from avalanche.checkpointing import save_checkpoint

    save_checkpoint(strategy, str(tmp_path / "without_optimizer.pkl"), exclude=["optimizer"])  # the fix it names
    assert (tmp_path / "without_optimizer.pkl").stat().st_size > 0
