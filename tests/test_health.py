"""Training-health monitors: each warning comes from a constructed failing run and is absent from a healthy one."""
import json
import math
import warnings

import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from benchmarks.data.avalanche_streams import task_benchmark
from benchmarks.runners.run_records import epo_fallback_message
from cl_moo import HypernetworkOptions
from cl_moo.health import DeadUnitProbe, HealthLog, HealthWarning, constant_prediction_loss
from strategies import HypernetworkStrategy, build_cl_model


def blobs(seed: int, *, n: int = 1000, d: int = 32, classes: int = 4, random_labels: bool = False, shift: int = 0):
    """Separable non-negative clusters (like pixels); ``random_labels``: labels drawn apart from the inputs."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(classes, d, generator=g) * 2
    y = torch.randint(0, classes, (n,), generator=g)
    x = (centers[y] + 0.3 * torch.randn(n, d, generator=g)).clamp_min(0)
    if random_labels:
        y = torch.randint(0, classes, (n,), generator=g)
    return x, (y + shift) % classes


def train(tasks, *, lr=1e-3, beta=0.05, iterations=100, emb_std=0.1, health_every=20):
    torch.manual_seed(0)
    bench = task_benchmark(list(tasks), list(tasks))
    net = nn.Sequential(nn.Linear(32, 50), nn.ReLU(), nn.Linear(50, 4))
    model = build_cl_model(net, emb_dim=8,
                           hnet_options=HypernetworkOptions(chunk_size=500, hidden=(30,)), emb_std=emb_std, seed=0)
    strategy = HypernetworkStrategy(model=model, lr=lr, beta=beta, train_iterations=iterations, train_mb_size=64,
                                    evaluator=EvaluationPlugin(loggers=[]), health_every=health_every)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, exp in enumerate(bench.train_stream):
            strategy.train(exp)
            strategy.eval(bench.test_stream[: i + 1])
    health = [str(w.message) for w in caught if issubclass(w.category, HealthWarning)]
    return strategy, health


def kinds(strategy):
    return sorted({f.kind for f in strategy.health_log.findings})


def test_a_healthy_run_has_no_finding(one_thread):
    strategy, health = train([blobs(0), blobs(1)])
    assert health == [] and strategy.health_log.ok
    assert strategy.health_log.as_dict() == {"ok": True, "warnings": [], "findings": []}


def test_dead_units_are_reported_with_the_settings_to_change(one_thread):
    strategy, health = train([blobs(0)], lr=0.1)
    assert "dead_units" in kinds(strategy)
    dead = next(f for f in strategy.health_log.findings if f.kind == "dead_units")
    assert dead.value >= 0.9 and dead.subject == "task 0, 1"
    assert "ReLU '1'" in dead.message and "Lower lr (now 0.1, e.g. 0.01)" in dead.message
    assert dead.message in health  # warned, and once only
    assert health.count(dead.message) == 1


def test_loss_at_chance_is_reported_when_labels_carry_nothing(one_thread):
    strategy, _ = train([blobs(0, random_labels=True)])
    finding = next(f for f in strategy.health_log.findings if f.kind == "loss_at_chance")
    assert finding.value >= 0.9
    assert "against 1.38" in finding.message and "label entropy" in finding.message


def test_chance_is_judged_on_the_last_window_when_the_budget_is_a_multiple_of_it(one_thread):
    # 100 iterations, windows of 20: the task's last window ends exactly at its last iteration
    strategy, _ = train([blobs(0)], lr=0.1, iterations=100, health_every=20)
    assert "loss_at_chance" in kinds(strategy)


def test_forgetting_spike_is_reported_without_the_regularizer_and_not_with_it(one_thread):
    conflicting = [blobs(0), blobs(0, shift=1)]  # the same inputs, every label moved by one class
    forgot, _ = train(conflicting, beta=0.0, lr=1e-2, iterations=200)
    finding = next(f for f in forgot.health_log.findings if f.kind == "forgetting")
    assert finding.subject == "task 0" and "after training task 1" in finding.message
    assert "Raise beta (now 0)" in finding.message
    held, _ = train(conflicting, beta=1.0, lr=1e-3, iterations=200)
    assert "forgetting" not in kinds(held)


def test_health_state_survives_a_checkpoint(one_thread):
    strategy, _ = train([blobs(0)], lr=0.1)
    state = strategy.state_dict()
    fresh, _ = train([], lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.health_log.as_dict() == strategy.health_log.as_dict()
    assert fresh.health.just_trained == strategy.health.just_trained and list(fresh.health.just_trained) == ["test/0"]


def test_monitors_can_be_turned_off_and_bad_periods_are_refused():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    mlp_hnet = HypernetworkOptions(generator="mlp", hidden=(5,))
    off = HypernetworkStrategy(model=build_cl_model(net, emb_dim=2, hnet_options=mlp_hnet), health_every=None)
    assert off.health is None and off.health_log is None
    with pytest.raises(ValueError, match="health_every must be an integer >= 1"):
        HypernetworkStrategy(model=build_cl_model(net, emb_dim=2, hnet_options=mlp_hnet), health_every=0)


def test_dead_unit_probe_counts_units_and_channels():
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16, 5), nn.ReLU())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.copy_(torch.tensor([0.0, -10.0, -10.0, 1.0]))  # channels 1, 2 dead on inputs in [0, 1]
        model[3].weight.zero_()
        model[3].bias.copy_(torch.tensor([1.0, -1.0, -1.0, -1.0, 2.0]))  # units 1-3 dead
    probe = DeadUnitProbe(model)
    with probe.recording() as dead:
        model(torch.rand(8, 1, 2, 2))
    assert {k: round(float(v), 4) for k, v in dead.items()} == {"1": 0.5, "4": 0.6}


def test_constant_prediction_loss_is_the_label_entropy_or_the_target_variance():
    y = torch.tensor([0, 1, 2, 3] * 5)
    assert float(constant_prediction_loss("cross_entropy", y, 10)) == pytest.approx(math.log(4))
    targets = torch.tensor([[0.0], [2.0], [4.0]])
    assert float(constant_prediction_loss("mse", targets)) == pytest.approx(8 / 3)
    with pytest.raises(ValueError, match="cross_entropy' or 'mse'"):
        constant_prediction_loss("hinge", y)


def test_health_log_warns_each_finding_once():
    log = HealthLog()
    with pytest.warns(HealthWarning, match="first"):
        assert log.report("dead_units", "task 0", "first", step=1, value=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not log.report("dead_units", "task 0", "again", step=2, value=1.0)
    assert [f.message for f in log.findings] == ["first"] and not log.ok


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc.Tags()["scalars"]


TINY_RUN = ["benchmark=pmnist", "benchmark.n_tasks=2", "benchmark.train_per_task=300", "benchmark.test_per_task=200",
            "benchmark.pad_to=28", "train.iterations=60", "train.batch_size=32", "hnet.hidden=[20]",
            "target.hidden=[30]", "hnet.emb_dim=8", "hnet.chunk_size=1000", "progress=false"]


@pytest.mark.slow
def test_a_run_that_does_not_learn_says_so_in_its_log_metrics_and_tensorboard(tmp_path, data_root, monkeypatch,
                                                                                capsys):
    from cl_moo.run import main

    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    healthy, broken = tmp_path / "healthy", tmp_path / "broken"
    assert main(TINY_RUN + [f"run_dir={healthy}", "train.lr=1e-3"]) == 0
    assert main(TINY_RUN + [f"run_dir={broken}", "train.lr=1.0"]) == 0
    ok = json.loads((healthy / "metrics.json").read_text())["health"]
    bad = json.loads((broken / "metrics.json").read_text())["health"]
    assert ok == {"ok": True, "warnings": [], "findings": []}
    assert not bad["ok"] and {f["kind"] for f in bad["findings"]} >= {"dead_units", "loss_at_chance"}
    # the runner's messages name its config keys
    assert all("train.lr (now 1" in w for w in bad["warnings"])
    assert "training health: task 0" in (broken / "log.txt").read_text()
    assert "training health" not in (healthy / "log.txt").read_text()
    tags = _scalars(broken / "tensorboard")
    assert {"health/dead_fraction/1", "health/loss_over_chance/task0", "health/loss_over_chance/task1"} <= set(tags)


@pytest.mark.slow
def test_pareto_runs_have_a_health_section(tmp_path, data_root, monkeypatch):
    from cl_moo.run import main

    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    run_dir = tmp_path / "adult"
    assert main(["benchmark=adult", "strategy=phn_epo", "benchmark.max_rows=2000", "train.epochs=1",
                 "progress=false", f"run_dir={run_dir}"]) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["epo_rays_solved"] > 0 and 0 <= m["epo_fallbacks"] <= m["epo_rays_solved"]
    assert set(m["health"]) == {"ok", "warnings", "findings"}
    assert m["health"]["ok"] == (m["hypervolume_note"] is None and m["epo_fallbacks"] <= 0.05 * m["epo_rays_solved"])


def test_epo_fallback_message_names_the_share_above_the_limit():
    assert epo_fallback_message(5, 100) is None
    message = epo_fallback_message(75, 400)
    assert "75 of 400 rays (18.8%" in message and "strategy=phn_ls" in message
    assert epo_fallback_message(0, 0) is None


def test_the_monitors_never_change_what_is_trained(one_thread):
    """Same parameters with the monitors checking every 5 iterations as without them (also with dropout,
    whose draws an extra training-mode forward would consume)."""
    def trained(health_every):
        torch.manual_seed(0)
        tasks = [blobs(0), blobs(1)]
        bench = task_benchmark(tasks, tasks)
        net = nn.Sequential(nn.Linear(32, 50), nn.ReLU(), nn.Dropout(0.2), nn.Linear(50, 4))
        model = build_cl_model(net, emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=500, hidden=(30,)), seed=0)
        strategy = HypernetworkStrategy(model=model, train_iterations=30, train_mb_size=64, health_every=health_every,
                                        evaluator=EvaluationPlugin(loggers=[]))
        for i, exp in enumerate(bench.train_stream):
            strategy.train(exp)
            strategy.eval(bench.test_stream[: i + 1])
        return [p.detach().clone() for p in model.parameters()]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        watched, unwatched = trained(5), trained(None)
    assert all(torch.equal(a, b) for a, b in zip(watched, unwatched))


def test_evaluations_inside_train_set_no_reference_value(one_thread):
    """eval_every=0 evaluates inside train(); those numbers (Avalanche evaluates the training stream there)
    must not become a task's 'just after training' value, or a test-set evaluation would look like forgetting."""
    torch.manual_seed(0)
    tasks = [blobs(0)]
    bench = task_benchmark(tasks, tasks)
    net = nn.Sequential(nn.Linear(32, 50), nn.ReLU(), nn.Linear(50, 4))
    strategy = HypernetworkStrategy(model=build_cl_model(net, emb_dim=8, seed=0,
                                                         hnet_options=HypernetworkOptions(chunk_size=500, hidden=(30,))),
                                    train_iterations=40, train_mb_size=64, eval_every=0, health_every=20,
                                    evaluator=EvaluationPlugin(loggers=[]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy.train(bench.train_stream[0], eval_streams=[bench.train_stream[0]])
        assert strategy.health.just_trained == {}
        strategy.eval(bench.test_stream)
    assert list(strategy.health.just_trained) == ["test/0"]


def test_chance_is_judged_on_a_full_window_and_on_the_labels_present(one_thread):
    # 101 iterations, windows of 20: the 1-iteration tail joins the window before it; two labels of a
    # 4-output head: chance is ln 2, not ln 4
    x, _ = blobs(0)
    y = torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(1))
    strategy, _ = train([(x, y)], iterations=101, health_every=20)
    finding = next(f for f in strategy.health_log.findings if f.kind == "loss_at_chance")
    assert "over its last 21 iterations against 0.69" in finding.message


def test_mse_forgetting_is_reported_without_the_regularizer(one_thread):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 1, generator=g) * 2 - 1
    tasks = [(x, torch.sin(3 * x)), (x, -torch.sin(3 * x))]  # the same inputs, opposite targets

    def run(beta):
        torch.manual_seed(0)
        bench = task_benchmark(tasks, tasks)
        net = nn.Sequential(nn.Linear(1, 20), nn.Tanh(), nn.Linear(20, 1))
        model = build_cl_model(net, emb_dim=2, hnet_options=HypernetworkOptions(generator="mlp", hidden=(20,)), seed=0)
        strategy = HypernetworkStrategy(model=model, lr=1e-2, beta=beta, train_iterations=300, train_mb_size=32,
                                        criterion=nn.MSELoss(), evaluator=EvaluationPlugin(loggers=[]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, exp in enumerate(bench.train_stream):
                strategy.train(exp)
                strategy.eval(bench.test_stream[: i + 1])
        return strategy

    forgot = next(f for f in run(0.0).health_log.findings if f.kind == "forgetting")
    assert forgot.subject == "task 0" and "MSE rose from" in forgot.message
    assert "forgetting" not in kinds(run(1.0))


def test_a_loss_the_monitor_cannot_judge_gets_no_chance_verdict():
    from strategies.health_plugin import loss_kind

    assert loss_kind(nn.CrossEntropyLoss()) == "cross_entropy" and loss_kind(nn.MSELoss()) == "mse"
    for criterion in (nn.CrossEntropyLoss(label_smoothing=0.1), nn.CrossEntropyLoss(weight=torch.ones(3)),
                      nn.CrossEntropyLoss(reduction="sum"), nn.L1Loss()):
        assert loss_kind(criterion) is None


def test_epo_fallbacks_in_a_run_are_a_health_finding(tmp_path, data_root, monkeypatch):
    """A constructed failing run: every EPO LP fails (HiGHS's result replaced by a failure)."""
    import types

    import strategies.epo as epo
    from cl_moo.run import main

    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    monkeypatch.setattr(epo, "linprog", lambda *a, **k: types.SimpleNamespace(success=False, x=None))
    run_dir = tmp_path / "epo"
    assert main(["benchmark=adult", "strategy=phn_epo", "benchmark.max_rows=1500", "train.epochs=1",
                 "hnet.hidden=[20]", "target.hidden=[10]", "progress=false", f"run_dir={run_dir}"]) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["epo_fallbacks"] == m["epo_rays_solved"] > 0
    finding = next(f for f in m["health"]["findings"] if f["kind"] == "epo_fallbacks")
    assert finding["value"] == 1.0 and "(100.0%, more than 5%)" in finding["message"]
    assert "training health: EPO's LP failed" in (run_dir / "log.txt").read_text()
