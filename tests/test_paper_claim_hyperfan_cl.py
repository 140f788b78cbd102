"""The hyperfan continual-learning claim (Chang et al. 2020, Sec. 5.2): its vectorised training equals the
plain loop with the library's hypernetwork, OutputRegularizer and SGD; runs are independent;
the quick run writes a figure and a verdict computed from its criteria."""

import math

import pytest
import torch
from torch import nn

from benchmarks.experiments.paper_claims import ClaimOutcome
from benchmarks.experiments.paper_claims import hyperfan_cl as claim
from strategies.regularizer import OutputRegularizer


def _toy_tasks(n_tasks=2, n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(n_tasks):
        x = torch.rand(n, 1, generator=gen) * 2 - 1 + 2 * t
        out.append((x, torch.sin(3 * x) + 0.1 * t))
    return out


def _plain_loop(hnet, target, tasks, embeddings, plan, lr):
    """The reference: library forward hnet(e), FunctionalTarget, OutputRegularizer (Eq. 2), and a plain SGD step
    (p -= lr * p.grad, what torch.optim.SGD does without momentum; torch.optim would import torch._dynamo, ~10 s)."""
    embs = [nn.Parameter(e.clone()) for e in embeddings]
    reg = OutputRegularizer(beta=claim.BETA_OUTPUT, fast=False)
    for t, (x, y) in enumerate(tasks):
        prev = torch.stack([e.detach() for e in embs[:t]]) if t else torch.zeros(0, claim.EMB_DIM)
        reg.snapshot(hnet, prev, list(range(t)))
        params = list(hnet.parameters()) + [embs[t]]
        for it in range(plan.shape[2]):
            idx = plan[t, 0, it]
            loss = nn.functional.mse_loss(target(hnet(embs[t]), x[idx]), y[idx])
            if reg.active:
                loss = loss + reg.penalty(hnet, torch.stack(embs[:t]))
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= lr * g
    return hnet, embs


def test_vectorised_runs_equal_the_plain_loop_with_the_library_regularizer():
    torch.manual_seed(0)
    target = claim.make_functional_target(claim.target_module())
    tasks = _toy_tasks()
    embeddings = claim.task_embeddings(3, len(tasks))
    plan = claim.batch_plan([3], len(tasks), 12, len(tasks[0][0]))
    hnets = [claim.build_run_hypernetwork(target, init, 3) for init in ("hyperfan_in", "xavier")]
    lrs = [1e-2, 3e-3]
    grid = claim.stack_runs(hnets, [0, 0], lrs)
    trace = claim.train_runs(grid, target, [tasks], embeddings.unsqueeze(0), plan, record_every=4)
    assert not trace.diverged.any()
    for i, (hnet, lr) in enumerate(zip(hnets, lrs)):
        ref, embs = _plain_loop(hnet, target, tasks, embeddings, plan, lr)
        for name, p in ref.named_parameters():
            assert torch.allclose(grid.params[name][i], p, rtol=1e-4, atol=1e-6), name
        with torch.no_grad():  # the last recorded loss is the full training-set MSE of the last task
            x, y = tasks[-1]
            want = nn.functional.mse_loss(target(ref(embs[-1]), x), y)
        assert math.isclose(float(trace.final[i, -1]), float(want), rel_tol=1e-4)
    assert trace.curves.shape == (2, 2, 12 // 4 + 1)


def test_a_diverging_run_is_frozen_and_leaves_the_others_unchanged():
    torch.manual_seed(0)
    target = claim.make_functional_target(claim.target_module())
    tasks = _toy_tasks()
    embeddings = claim.task_embeddings(0, 2).unsqueeze(0)
    plan = claim.batch_plan([0], 2, 10, 40)
    hnet = claim.build_run_hypernetwork(target, "kaiming", 0)
    together = claim.stack_runs([hnet, hnet], [0, 0], [1e-3, 50.0])
    alone = claim.stack_runs([hnet], [0], [1e-3])
    t_two = claim.train_runs(together, target, [tasks], embeddings, plan, record_every=5)
    t_one = claim.train_runs(alone, target, [tasks], embeddings, plan, record_every=5)
    assert t_two.diverged.tolist() == [False, True] and t_two.diverged_at[1] is not None
    assert torch.isnan(t_two.final[1, -1])
    for name, p in alone.params.items():
        assert torch.allclose(together.params[name][0], p[0], rtol=1e-5, atol=1e-7), name
        assert torch.isfinite(together.params[name][1]).all(), name
    assert torch.allclose(t_two.curves[0], t_one.curves[0], rtol=1e-5)


def test_a_loss_that_starts_above_the_bound_is_not_divergence_until_it_grows():
    torch.manual_seed(0)
    target = claim.make_functional_target(claim.target_module())
    tasks = _toy_tasks(n_tasks=1)
    hnet = claim.build_run_hypernetwork(target, "hyperfan_in", 0)
    with torch.no_grad():
        hnet.output_head().weight.mul_(8.0)  # generated weights 8x (output ~500x): the loss starts above 1e3
    grid = claim.stack_runs([hnet], [0], [1e-12])
    plan = claim.batch_plan([0], 1, 4, 40)
    trace = claim.train_runs(grid, target, [tasks], claim.task_embeddings(0, 1).unsqueeze(0), plan, record_every=2)
    assert float(trace.initial[0, 0]) > claim.DIVERGED_ABOVE and not trace.diverged.any()


def test_trains_and_best_lr_follow_their_stated_rules():
    assert claim.run_trains([1.0, 2.0], [0.4, 0.9], diverged=False)
    assert not claim.run_trains([1.0, 2.0], [0.4, 1.5], diverged=False)  # mean ratio 0.575 > 0.5
    assert not claim.run_trains([1.0], [0.1], diverged=True)
    per_lr = {
        1e-2: {"mean_final_surviving": 0.01, "n_diverged": 1},
        1e-3: {"mean_final_surviving": 0.2, "n_diverged": 0},
        1e-4: {"mean_final_surviving": 0.1, "n_diverged": 0},
    }
    assert claim.best_lr(per_lr) == 1e-4  # no diverged seed beats a lower loss with one
    per_lr[1e-3]["n_diverged"] = per_lr[1e-4]["n_diverged"] = 2
    assert claim.best_lr(per_lr) == 1e-2


def test_quick_run_writes_the_figure_and_a_verdict_from_its_criteria(tmp_path):
    out = claim.run(seeds=[0], quick=True, figure=tmp_path / "x.png")
    assert isinstance(out, ClaimOutcome) and (tmp_path / "x.png").stat().st_size > 10_000
    met = out.numbers["criteria_met"]
    assert out.holds == (True if all(met) else "partly" if any(met) else False)
    assert len(out.checked) == 2 and all(("-> met" in c) == m for c, m in zip(out.checked, met))
    assert set(out.numbers["best_lr"]) == set(claim.INITS)
    kaiming = out.numbers["per_init_lr"]["kaiming"]
    assert set(kaiming) == {f"{lr:g}" for lr in claim.LEARNING_RATES}
    run0 = kaiming["1e-05"]["seeds"][0]
    assert len(run0["initial_per_task"]) == 3 and isinstance(run0["diverged"], bool)
    assert out.settings["iterations_per_task"] == claim.QUICK_ITERATIONS


def test_unknown_init_and_bad_learning_rate_are_refused():
    target = claim.make_functional_target(claim.target_module())
    with pytest.raises(ValueError, match="unknown init"):
        claim.build_run_hypernetwork(target, "kaiming_fan_out", 0)
    hnet = claim.build_run_hypernetwork(target, "xavier", 0)
    with pytest.raises(ValueError, match="positive and finite"):
        claim.stack_runs([hnet], [0], [0.0])


def _entry(per_seed):
    """A summary entry for one (init, lr) from made-up per-seed runs ``{seed: (initial, final, diverged)}``."""
    seeds = {
        s: {
            "initial_per_task": [None if diverged else v for v in ini],
            "final_per_task": [None if diverged else v for v in fin],
            "diverged": diverged,
            "trains": claim.run_trains(ini, fin, diverged),
        }
        for s, (ini, fin, diverged) in per_seed.items()
    }
    entry = {"seeds": seeds}
    claim._means(entry)
    return entry


def _made_up_summary(hyperfan_final=0.01, kaiming_trains_at=(1e-5,), kaiming_fails_at_1e5_seed=None):
    """Three seeds, three tasks. Kaiming diverges except at ``kaiming_trains_at``; Xavier trains with initial 1.0 /
    final 0.1 at lr 1e-3 (its best: no diverged seed, lowest final loss), a lower loss (0.001) at 1e-2 where a seed
    diverged, and a lower initial (0.001) but higher final loss (0.9) at 1e-4 and 1e-5;
    hyperfan starts at 0.5 and ends at ``hyperfan_final`` at lr 1e-4, and does worse (10 / 5) at the other rates."""
    lrs = claim.LEARNING_RATES
    three = lambda v: [v, v, v]  # noqa: E731
    summary = {init: {} for init in claim.INITS}
    for lr in lrs:
        kaiming = {}
        for s in range(3):
            trains = lr in kaiming_trains_at and not (lr == 1e-5 and s == kaiming_fails_at_1e5_seed)
            kaiming[s] = (three(50.0), three(1.0), False) if trains else (three(50.0), three(1e9), True)
        summary["kaiming"][lr] = _entry(kaiming)
        if lr == 1e-3:
            xavier = {s: (three(1.0), three(0.1), False) for s in range(3)}
        elif lr == 1e-2:
            xavier = {s: (three(1e-3), three(1e-3), False) for s in range(2)}
            xavier[2] = (three(1.0), three(1e9), True)
        else:
            xavier = {s: (three(1e-3), three(0.9), False) for s in range(3)}
        summary["xavier"][lr] = _entry(xavier)
        for hf in claim.HYPERFAN:
            good = lr == 1e-4
            summary[hf][lr] = _entry(
                {s: (three(0.5), three(hyperfan_final) if good else three(5.0), False) for s in range(3)}
                if good
                else {s: (three(10.0), three(5.0), False) for s in range(3)}
            )
    best = {init: claim.best_lr(summary[init]) for init in claim.INITS}
    return summary, best


def test_criteria_follow_made_up_numbers():
    """criterion 1 / 2 on synthetic numbers, good and bad: an inverted comparison, a wrong lr or seed slice fails."""
    lrs = list(claim.LEARNING_RATES)
    summary, best = _made_up_summary()
    assert best == {"kaiming": 1e-5, "xavier": 1e-3, "hyperfan_in": 1e-4, "hyperfan_out": 1e-4}
    met, texts = claim.criteria(summary, best, lrs)
    assert met == [True, True], texts
    assert "-> met (" in texts[0] and "-> met (24/24 comparisons" in texts[1]
    # criterion 1 fails when Kaiming trains at another lr, or fails to train on one seed at 1e-5
    met, texts = claim.criteria(*_made_up_summary(kaiming_trains_at=(1e-3, 1e-5)), lrs)
    assert met[0] is False and "lr 0.001: diverged 0/3, trains 3/3" in texts[0]
    met, texts = claim.criteria(*_made_up_summary(kaiming_fails_at_1e5_seed=2), lrs)
    assert met[0] is False and "lr 1e-05: diverged 1/3, trains 2/3" in texts[0]
    met, _ = claim.criteria(*_made_up_summary(kaiming_trains_at=()), lrs)
    assert met[0] is False
    ok, _ = claim._criterion_1(_made_up_summary()[0]["kaiming"], lrs)
    assert ok is True
    # criterion 2: hyperfan's final loss (0.2) above Xavier's at its best lr (0.1) fails on every task; equal fails
    met, texts = claim.criteria(*_made_up_summary(hyperfan_final=0.2), lrs)
    assert met[1] is False and "final task 3: hyperfan_out 0.2 >= xavier 0.1" in texts[1]
    assert claim._compare(*_made_up_summary(hyperfan_final=0.2), "") == (
        18, 24, [f"final task {t}: {hf} 0.2 >= xavier 0.1" for hf in claim.HYPERFAN for t in (1, 2, 3)]
    )
    assert claim._compare(*_made_up_summary(hyperfan_final=0.1), "")[0] == 18
    # compared at each init's best lr: at Xavier's lr 1e-5 (initial loss 0.001, not its best) hyperfan would lose
    summary, best = _made_up_summary()
    met, texts = claim.criteria(summary, {**best, "xavier": 1e-5}, lrs)
    assert met[1] is False and "initial task 1: hyperfan_in 0.5 >= xavier 0.001" in texts[1]
    # a diverged seed makes the mean over all seeds infinite (Xavier at 1e-2 loses every all-seed comparison) while
    # the means over the surviving seeds (information only) keep its 0.001
    assert claim._compare(summary, {**best, "xavier": 1e-2}, "")[0] == 24
    assert claim._compare(summary, {**best, "xavier": 1e-2}, "_surviving")[0] == 12
    # a diverged hyperfan seed makes its mean infinite: criterion 2 fails
    summary, best = _made_up_summary()
    summary["hyperfan_in"][1e-4] = _entry({0: ([0.5] * 3, [0.01] * 3, False), 1: ([0.5] * 3, [0.01] * 3, False),
                                           2: ([0.5] * 3, [1e9] * 3, True)})
    met, texts = claim.criteria(summary, best, lrs)
    assert met[1] is False and "hyperfan_in inf >= kaiming" in texts[1]
