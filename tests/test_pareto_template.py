"""The Pareto strategies as Avalanche templates (issue 24, item 4): Avalanche's loop and plugins drive
ParetoHypernetworkStrategy.train; the continual Pareto regularizer is the same OutputRegularizerPlugin
as the continual strategy's; one options object (hnet_options) instead of the builder's keywords."""

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import LRSchedulerPlugin
from avalanche.training.templates import SupervisedTemplate
from torch.utils.data import TensorDataset

from cl_moo import HypernetworkOptions, build_hypernetwork
from strategies import OutputRegularizerPlugin
from strategies.phn import PHN_HNET_DEFAULTS, ParetoHypernetworkStrategy
from strategies.phn_cl import CONTINUAL_PARETO_HNET_DEFAULTS, ContinualParetoStrategy
from two_quadratics import A, B, Point, quad_a, quad_b

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = TensorDataset(torch.zeros(32, 1))  # 4 batches of 8


def phn(**kw):
    args = dict(
        target=Point(),
        losses=[quad_a, quad_b],
        hnet_options=HypernetworkOptions(hidden=(8,)),
        rays_per_step=2,
        lr=1e-2,
        train_mb_size=8,
        seed=0,
    )
    args.update(kw)
    return ParetoHypernetworkStrategy(**args)


class Calls(SupervisedPlugin):
    """Counts Avalanche's callbacks."""

    def __init__(self):
        super().__init__()
        self.n_backward = self.n_updates = self.n_epochs = 0
        self.losses_seen = []

    def before_backward(self, strategy, **kwargs):
        self.n_backward += 1
        self.losses_seen.append(float(strategy.loss.detach()))

    def after_update(self, strategy, **kwargs):
        self.n_updates += 1

    def after_training_epoch(self, strategy, **kwargs):
        self.n_epochs += 1


def test_the_pareto_strategy_is_an_avalanche_template_whose_loop_calls_avalanche_plugins():
    calls = Calls()
    s = phn(plugins=[calls], train_epochs=2)
    assert isinstance(s, SupervisedTemplate)
    s.train(DATA)
    assert calls.n_backward == calls.n_updates == 8 and calls.n_epochs == 2
    assert s.iteration == 8 and s.clock.train_iterations == 8


class Penalty(SupervisedPlugin):
    """Adds ``weight * sum(theta(r)^2)`` of the current rays' weights to the loss, as EWC-like plugins do."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def before_backward(self, strategy, **kwargs):
        strategy.loss = (
            strategy.loss + self.weight * strategy.hnet.forward_flat(strategy.last_rays_of_step()).pow(2).sum()
        )


def test_a_plugin_penalty_reaches_the_backward_pass():
    class Penalised(ParetoHypernetworkStrategy):
        def last_rays_of_step(self):
            return self._rays

    def trained(weight):
        s = Penalised(
            target=Point(),
            losses=[quad_a, quad_b],
            hnet_options=HypernetworkOptions(hidden=(8,)),
            rays_per_step=2,
            lr=1e-2,
            train_mb_size=8,
            seed=0,
            plugins=[Penalty(weight)],
        )
        s.train(DATA, steps=5)
        return torch.cat([p.detach().flatten() for p in s.hnet.parameters()])

    assert torch.equal(trained(0.0), trained(0.0))
    assert not torch.allclose(trained(0.0), trained(1.0))


def test_lr_scheduler_plugin_sets_the_learning_rate_of_the_steps():
    lrs = []

    class LR:
        def after_training_iteration(self, strategy, **kwargs):
            lrs.append(strategy.optimizer.param_groups[0]["lr"])

    s = phn(train_epochs=3)
    scheduler = torch.optim.lr_scheduler.StepLR(s.optimizer, step_size=1, gamma=0.5)
    s.plugins += [LRSchedulerPlugin(scheduler), LR()]
    s.train(DATA)
    assert lrs == pytest.approx([1e-2] * 4 + [5e-3] * 4 + [2.5e-3] * 4)


def test_stop_training_from_a_plugin_ends_the_call_without_another_batch():
    class StopAfter(SupervisedPlugin):
        def after_training_iteration(self, strategy, **kwargs):
            if strategy.iteration == 3:
                strategy.stop_training()

    s = phn(plugins=[StopAfter()], train_epochs=5)
    s.train(DATA)
    assert s.iteration == 3
    s.plugins = s.plugins[1:]
    s.train(DATA, steps=2)  # a new call trains again
    assert s.iteration == 5


def test_objective_only_training_runs_the_same_loop():
    calls = Calls()

    def qa(w):
        return (w["theta"] - A).pow(2).sum()

    def qb(w):
        return (w["theta"] - B).pow(2).sum()

    s = ParetoHypernetworkStrategy(
        target=Point(),
        losses=[qa, qb],
        objective_only=True,
        rays_per_step=3,
        seed=0,
        hnet_options=HypernetworkOptions(hidden=(8,)),
        plugins=[calls],
    )
    s.train(steps=7)
    assert calls.n_backward == 7 and calls.n_epochs == 1 and s.iteration == 7
    assert s.eval(k=5).shape == (5, 2)


def test_no_logger_prints_and_no_warning_is_raised(capsys, recwarn):
    s = phn()
    s.train(DATA, steps=2)
    s.eval(DATA, k=3)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert not [w for w in recwarn if "avalanche" in str(w.filename)], [str(w.message) for w in recwarn]


# ---------------------------------------------------------------- hnet_options
def test_hnet_options_default_to_the_strategies_defaults():
    built = phn(hnet_options=None).hnet
    want = phn(hnet_options=PHN_HNET_DEFAULTS).hnet
    assert built.state_dict().keys() == want.state_dict().keys()
    assert all(torch.equal(built.state_dict()[k], want.state_dict()[k]) for k in built.state_dict())
    assert [m.out_features for m in built.modules() if isinstance(m, torch.nn.Linear)][:3] == [100, 100, 100]
    assert CONTINUAL_PARETO_HNET_DEFAULTS.hidden == (100, 100)
    assert {k: v for k, v in PHN_HNET_DEFAULTS.keywords().items() if k != "hidden"} == {
        k: v for k, v in CONTINUAL_PARETO_HNET_DEFAULTS.keywords().items() if k != "hidden"
    }


def test_hnet_and_hnet_options_together_are_refused():
    hnet = build_hypernetwork(Point(), 2, hidden=(8,))
    with pytest.raises(TypeError, match="either hnet=.*or hnet_options="):
        phn(hnet=hnet, hnet_options=HypernetworkOptions(hidden=(8,)))
    with pytest.raises(TypeError, match="hnet_options must be a cl_moo.HypernetworkOptions"):
        phn(hnet_options={"hidden": (8,)})
    with pytest.raises(TypeError, match="hidden"):  # the old keywords are gone
        ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hidden=(8,))


# ---------------------------------------------------------------- the continual Pareto regularizer plugin
ANCHORS = [
    (torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 1.0, -0.5])),
    (torch.tensor([-1.0, 0.5, 0.0]), torch.tensor([0.5, -1.0, 1.0])),
]


def to_a(out, a, b):
    return (out - a).pow(2).sum(-1).mean()


def to_b(out, a, b):
    return (out - b).pow(2).sum(-1).mean()


def task_data(t, n=16):
    a, b = ANCHORS[t]
    return TensorDataset(torch.zeros(n, 1), a.expand(n, -1).clone(), b.expand(n, -1).clone())


def continual(**kw):
    return ContinualParetoStrategy(
        target=Point(),
        losses=[to_a, to_b],
        emb_dim=4,
        reg_rays=4,
        rays_per_step=2,
        hnet_options=HypernetworkOptions(hidden=(16,), target_gain=1.0),
        lr=1e-2,
        train_mb_size=8,
        seed=0,
        **kw,
    )


def two_tasks(strategy):
    for t in (0, 1):
        strategy.train_task(t, task_data(t), steps=6)
    return torch.cat([p.detach().flatten() for p in strategy.hnet.parameters()])


def test_the_continual_pareto_regularizer_is_the_output_regularizer_plugin():
    calls = Calls()
    s = continual(beta=2.0, plugins=[calls])
    assert isinstance(s.plugins[0], OutputRegularizerPlugin) and s.plugins[0] is s.regularizer_plugin
    assert s.plugins[1] is calls
    with_reg = two_tasks(s)
    assert s.regularizer_plugin.last_value > 0  # task 1 was regularized
    assert calls.n_backward == 12
    zeroed = continual(beta=2.0)
    zeroed.regularizer.beta = 0.0  # the plugin adds nothing
    without = two_tasks(zeroed)
    assert not torch.allclose(with_reg, without)
    assert torch.equal(two_tasks(continual(beta=0.0)), without)
    assert torch.equal(with_reg, two_tasks(continual(beta=2.0)))


def test_training_without_the_regularizer_plugin_is_refused():
    s = continual(beta=2.0)
    s.plugins = [p for p in s.plugins if not isinstance(p, OutputRegularizerPlugin)]
    with pytest.raises(ValueError, match="regularizer's plugin .* is not in strategy.plugins.*append"):
        s.train_task(0, task_data(0), steps=2)


def test_with_beta_0_the_regularizer_plugin_may_be_left_out():
    """The refusal's advice, beta=0, works: nothing to protect, the same steps as with the plugin."""
    s = continual(beta=0.0)
    s.plugins = [p for p in s.plugins if not isinstance(p, OutputRegularizerPlugin)]
    assert torch.equal(two_tasks(s), two_tasks(continual(beta=0.0))) and s.trained_tasks == [0, 1]


# ---------------------------------------------------------------- review of the template (evaluator, modes, arguments)
def _regression(n=24):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x[:, :1] * 2, x[:, 1:2] - 1


def _to_first(out, a, b):
    return (out - a).pow(2).mean()


def _to_second(out, a, b):
    return (out - b).pow(2).mean()


def _data(kind):
    x, a, b = _regression()
    if kind == "dataset":
        return TensorDataset(x, a, b)
    from avalanche.benchmarks.scenarios import benchmark_from_datasets
    from avalanche.benchmarks.utils import AvalancheDataset

    return benchmark_from_datasets(train=[AvalancheDataset([TensorDataset(x, a, b)])]).train_stream[0]


def _regressor(target=None, **kw):
    args = dict(
        target=target if target is not None else torch.nn.Linear(3, 1),
        losses=[_to_first, _to_second],
        hnet_options=HypernetworkOptions(hidden=(8,)),
        train_mb_size=8,
        seed=0,
    )
    args.update(kw)
    return ParetoHypernetworkStrategy(**args)


@pytest.mark.parametrize("kind", ["experience", "dataset"])
def test_an_evaluator_with_metrics_and_a_text_logger_logs_training_and_eval_runs(kind, recwarn):
    import io

    from avalanche.evaluation.metrics import loss_metrics
    from avalanche.logging import TextLogger
    from avalanche.training.plugins import EvaluationPlugin

    text = io.StringIO()
    metrics = loss_metrics(minibatch=True, epoch=True, experience=True, stream=True)
    seen = Fronts()
    s = _regressor(evaluator=EvaluationPlugin(metrics, loggers=[TextLogger(text)]), plugins=[seen])
    data = _data(kind)
    s.train(data)
    losses = s.eval(data, k=3)
    assert losses.shape == (3, 2)
    logged = text.getvalue()
    assert "Loss_Epoch/train_phase/train_stream" in logged and "Loss_MB/train_phase" in logged  # the evaluator ran
    # the user plugin gets the front: under its own name, and under after_eval as before
    assert seen.calls == [("after_front_eval", 3), ("after_eval", 3)]
    assert not [w for w in recwarn if "incompatible callbacks" in str(w.message)]  # after_front_eval is known


class Fronts:
    """Records the front hooks eval() calls."""

    def __init__(self):
        self.calls = []

    def after_front_eval(self, strategy, rays, losses):
        assert rays.shape == losses.shape
        self.calls.append(("after_front_eval", len(losses)))

    def after_eval(self, strategy, rays, losses):
        self.calls.append(("after_eval", len(losses)))


def test_eval_puts_the_whole_model_in_eval_mode_and_restores_the_modes():
    target = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    s = _regressor(target=target)
    data = _data("dataset")
    s.train(data, steps=2)
    s.target.train()  # e.g. as training left it
    first, second = s.eval(data, k=4), s.eval(data, k=4)
    assert (first == second).all()  # dropout was off
    assert s.target.training and s.hnet.training  # the modes as before
    s.model.eval()
    s.eval(data, k=2)
    assert not s.target.training and not s.hnet.training


def test_positional_arguments_are_refused_with_a_clear_message():
    with pytest.raises(TypeError, match=r"ParetoHypernetworkStrategy takes keyword arguments only.*target=.*losses="):
        ParetoHypernetworkStrategy(torch.nn.Linear(2, 1), [_to_first, _to_second], 5)
    with pytest.raises(TypeError, match="ContinualParetoStrategy takes keyword arguments only"):
        ContinualParetoStrategy(torch.nn.Linear(2, 1), [_to_first, _to_second])
    from strategies.objective_problem import ObjectiveProblem, ObjectiveProblemStrategy

    problem = ObjectiveProblem(lambda x: torch.stack([x.pow(2).sum(1), (x - 1).pow(2).sum(1)], dim=1), 2, 2, -2, 2)
    assert ObjectiveProblemStrategy(problem, seed=0).problem is problem  # its one positional argument
    with pytest.raises(TypeError, match="ObjectiveProblemStrategy takes 1 positional argument"):
        ObjectiveProblemStrategy(problem, 5)


def test_train_on_a_stream_trains_each_experience_and_eval_on_a_stream_says_what_to_pass():
    from avalanche.benchmarks.scenarios import benchmark_from_datasets
    from avalanche.benchmarks.utils import AvalancheDataset

    x, a, b = _regression()
    parts = [
        AvalancheDataset([TensorDataset(x[:12], a[:12], b[:12])]),
        AvalancheDataset([TensorDataset(x[12:], a[12:], b[12:])]),
    ]
    stream = benchmark_from_datasets(train=parts).train_stream
    s, t = _regressor(), _regressor()
    s.train(stream, steps=2)
    for exp in stream:
        t.train(exp, steps=2)
    assert s.iteration == t.iteration == 4
    assert all(torch.equal(p, q) for p, q in zip(s.hnet.parameters(), t.hnet.parameters()))
    s.train(list(stream), steps=1)  # a list of experiences too
    assert s.iteration == 6
    for what in (stream, list(stream)):
        with pytest.raises(TypeError, match=r"eval\(\) takes ONE Avalanche experience or a torch Dataset"):
            s.eval(what)
    assert s.eval(stream[0], k=2).shape == (2, 2)
