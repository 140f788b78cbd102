"""PHN as an extension point: solver classes, objective-only problems, step budget, seeds, ray
samplers, the unbatched one-ray path and the errors that name their fix."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cl_moo import HypernetworkOptions as HO
from torch import nn
from torch.utils.data import TensorDataset

from cl_moo.moo_metrics import RayError
from strategies.epo import epo_weights
from strategies.phn import ParetoHypernetworkStrategy
from strategies.solvers import EPO, SOLVERS, LinearScalarization, Solver
from two_quadratics import A, B, Point, quad_a, quad_b

ROOT = Path(__file__).resolve().parents[1]



def per_sample_loss(out):
    return (out - A).pow(2).sum(-1)  # (N,): not reduced


def make(**kw):
    opts = dict(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(16,), target_gain=1.0), seed=0)
    opts.update(kw)
    return ParetoHypernetworkStrategy(**opts)


DATA = TensorDataset(torch.zeros(32, 1))


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- solvers
class OnlyFirst(Solver):
    """Counts its calls and optimises objective 0 alone, whatever the ray."""

    def __init__(self):
        self.calls = 0

    def get_weighted_loss(self, losses, rays, weights):
        self.calls += 1
        return losses[:, 0].mean()


def test_a_user_solver_instance_is_the_one_that_trains():
    solver = OnlyFirst()
    phn = make(solver=solver, rays_per_step=8, lr=1e-2, train_steps=150, train_mb_size=32)
    assert phn.solver is solver
    phn.train(DATA)
    assert solver.calls == 150
    found = phn.eval(DATA)
    # every ray collapses to objective 0's optimum theta = A: l0 ~ 0, l1 ~ |A - B|^2 = 2.5
    assert found[:, 0].max() < 0.02 and np.allclose(found[:, 1], float((A - B).pow(2).sum()), atol=0.15)
    ls = make(solver="ls", rays_per_step=8, lr=1e-2, train_steps=150, train_mb_size=32)
    ls.train(DATA)
    assert ls.eval(DATA)[:, 0].max() > 0.5  # the LS front spreads along the rays


def test_solver_names_instances_and_misuse():
    assert set(SOLVERS) == {"ls", "epo", "tch", "stch", "hvi"}
    assert isinstance(make(solver="ls").solver, LinearScalarization)
    assert isinstance(make(solver="epo").solver, EPO)
    with pytest.raises(ValueError, match=r"unknown solver 'pgd'.*\['epo', 'hvi', 'ls', 'stch', 'tch'\]"):
        make(solver="pgd")
    with pytest.raises(TypeError, match=r"pass an instance: solver=OnlyFirst\(\)"):
        make(solver=OnlyFirst)

    class Vector(Solver):
        def get_weighted_loss(self, losses, rays, weights):
            return (rays * losses).sum(1)

    with pytest.raises(TypeError, match="Vector.get_weighted_loss must return a scalar tensor"):
        make(solver=Vector(), rays_per_step=4).train(DATA, steps=1)


def test_epo_fallback_weights_sum_to_m_like_solved_steps(caplog):
    rng = np.random.default_rng(0)
    G = rng.normal(size=(3, 6))
    r = np.array([0.2, 0.3, 0.5])
    solved = epo_weights(np.array([0.4, 1.0, 0.7]), r, G @ G.T)
    fallback = epo_weights(np.array([np.nan, 1.0, 0.7]), r, G @ G.T)
    assert solved.mode != "fallback" and fallback.mode == "fallback"
    assert solved.weights.sum() == pytest.approx(3) and fallback.weights.sum() == pytest.approx(3)
    np.testing.assert_allclose(fallback.weights, 3 * r / r.sum())
    # through the solver: r * l = 0 has no EPO LP, so every ray uses m * r / sum(r) and is counted
    phn = make(solver="epo", rays_per_step=2)
    rays = torch.tensor([[0.25, 0.75], [0.6, 0.4]])
    flat = phn.hnet.forward_flat(rays)
    values = torch.stack([0.0 * flat.pow(2).sum(1), 0.0 * flat.sum(1)], dim=1)
    with caplog.at_level("WARNING"):
        loss = phn.solver(values, rays, flat)
    expected = (2 * rays * values).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert phn.epo_fallbacks == 2 and "m * r / sum(r)" in caplog.text


# near-anti-parallel gradients (close to Pareto stationary: balance mode) and a 3-objective dominance case
EPO_CASES = [(np.array([1.96, 1.22]), np.array([0.636, 0.364]), np.array([[8.16, -10.52], [-10.52, 13.56]])),
             (np.array([0.5, 1 / 3, 0.2]), np.array([0.2, 0.3, 0.5]),
              np.array([[2.0, 0.3, -0.5], [0.3, 1.5, 0.2], [-0.5, 0.2, 1.0]]))]


@pytest.mark.parametrize("scale", [1e-10, 1e-12, 1e-16])
def test_epo_lp_is_solved_on_a_tiny_gram_matrix_as_on_the_unscaled_one(scale):
    # near convergence the Gram entries reach 1e-10: unnormalized, HiGHS drops them as zero and the LP
    # came back infeasible ("fallback" at 1e-10) or solved a different LP (a wrong alpha at 1e-12)
    from strategies.epo import epo_weights_batch

    for l, r, C in EPO_CASES:
        ref = epo_weights(l, r, C)
        assert ref.mode in ("balance", "dominance")
        single = epo_weights(l, r, scale * C)
        assert single.mode == ref.mode
        np.testing.assert_allclose(single.alpha, ref.alpha, atol=1e-6)
        # batched: one LP with blocks of very different scales, each block normalized on its own
        batch = epo_weights_batch(np.array([l, l, l]), np.array([r, r, r]), np.array([C, scale * C, 1e3 * scale * C]))
        for res in batch:
            assert res.mode == ref.mode
            np.testing.assert_allclose(res.alpha, ref.alpha, atol=1e-6)


# ---------------------------------------------------------------- objective-only (Lin et al. 2019)
def test_phn_epo_reaches_the_exact_pareto_points_of_the_lin2019_toy_without_data():
    from benchmarks.experiments.toy_lin2019 import run

    result = run(steps=400, rays_per_step=16, hidden=(100, 100), lr=1e-3, alpha=1.0, seed=0)
    assert result["epo_fallbacks"] == 0
    assert result["mean_angle_deg"] <= 2.0, result["mean_angle_deg"]


def test_objective_only_misuse_fails_clearly():
    from benchmarks.experiments.toy_lin2019 import Vector, lin2019_losses

    phn = ParetoHypernetworkStrategy(target=Vector(4), losses=lin2019_losses(4), objective_only=True,
                                     hnet_options=HO(hidden=(8,)))
    with pytest.raises(ValueError, match=r"objective_only.*train\(steps=N\)"):
        phn.train(DATA, steps=2)
    with pytest.raises(ValueError, match="step budget"):
        phn.train()
    with pytest.raises(ValueError, match="without data"):
        phn.eval(DATA)
    assert phn.eval(rays=[[0.5, 0.5]]).shape == (1, 2)
    data_phn = make()
    with pytest.raises(ValueError, match="needs data.*objective_only=True"):
        data_phn.train(steps=2)
    wrong = make(losses=[quad_a, lambda out, y: out])
    with pytest.raises(TypeError, match=r"loss <lambda> failed when called as loss\(output, \*targets\)"):
        wrong.train(DATA, steps=1)


# ---------------------------------------------------------------- steps, seeds, samplers
class EpochCounter:
    def __init__(self):
        self.epochs = []

    def after_training_epoch(self, strategy, epoch):
        self.epochs.append(epoch)


def test_step_budget_stops_across_epochs_and_train_steps_override():
    counter = EpochCounter()
    phn = make(train_steps=10, train_mb_size=8, train_epochs=50, plugins=[counter])  # 4 batches per epoch
    phn.train(DATA)
    assert phn.iteration == 10 and counter.epochs == [0, 1, 2]
    phn.train(DATA, steps=3)
    assert phn.iteration == 13
    plain = make(train_mb_size=8, train_epochs=2)
    plain.train(DATA)
    assert plain.iteration == 8


def _trained(seed):
    phn = make(seed=seed, rays_per_step=4, train_steps=5, train_mb_size=8)
    phn.train(DATA)
    return phn.eval(DATA, k=5), torch.cat([p.detach().flatten() for p in phn.hnet.parameters()])


def test_seed_reproduces_a_run_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    l0, p0 = _trained(0)
    assert torch.equal(torch.random.get_rng_state(), state)
    l0b, p0b = _trained(0)
    l1, p1 = _trained(1)
    assert torch.equal(p0, p0b) and np.array_equal(l0, l0b)
    assert not torch.equal(p0, p1) and not np.allclose(l0, l1)


def test_a_custom_ray_sampler_is_used_and_its_rays_are_checked():
    calls = []

    def corner_ish(n, generator):
        calls.append(n)
        return torch.tensor([[0.9, 0.1]]).repeat(n, 1)

    phn = make(ray_sampler=corner_ish, rays_per_step=3)
    phn.train(DATA, steps=2)
    assert calls[-2:] == [3, 3]
    assert torch.equal(phn.last_rays, torch.tensor([[0.9, 0.1]] * 3))

    def off_simplex(n, generator):
        return torch.ones(n, 2)

    with pytest.raises(RayError, match="ray_sampler off_simplex returned invalid rays.*sum to 1"):
        make(ray_sampler=off_simplex)
    with pytest.raises(RayError, match=r"must return \(n, m\) = \(256, 2\)"):
        make(ray_sampler=lambda n, g: torch.full((n, 3), 1 / 3))


@pytest.mark.parametrize("native", [True, False])
def test_default_sampler_is_dirichlet_alpha(native, monkeypatch):
    import strategies.phn

    monkeypatch.setattr(strategies.phn, "_NATIVE_DIRICHLET", native)
    phn = make(alpha=0.5)
    rays = phn.sample_rays(20000).double()
    # Dirichlet(0.5, 0.5) marginal is Beta(0.5, 0.5): mean 1/2, variance 1/8
    assert float(rays[:, 0].mean()) == pytest.approx(0.5, abs=0.01)
    assert float(rays[:, 0].var()) == pytest.approx(0.125, abs=0.005)


# ---------------------------------------------------------------- one ray: the unbatched path
class NoVmap(nn.Module):
    """A target that cannot run under vmap (``.item()`` in forward)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        scale = 1.0 if x.abs().sum().item() >= 0 else 0.0
        return self.lin(x) * scale


def test_one_ray_per_step_runs_one_unbatched_weight_set():
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    module = NoVmap()
    phn = ParetoHypernetworkStrategy(target=module, losses=[quad_a, quad_b], hnet_options=HO(hidden=(8,)), rays_per_step=1,
                                     seed=3)
    state = phn.generator.get_state()
    ray = phn.sample_rays(1)
    phn.generator.set_state(state)
    with torch.no_grad():
        weights = phn.hnet(ray[0])  # unbatched tensors
        assert weights[0].shape == module.lin.weight.shape
        out = phn.target(weights, x)
        expected = float(ray[0, 0] * quad_a(out) + ray[0, 1] * quad_b(out))

    def no_batched_call(*args, **kwargs):
        raise AssertionError("rays_per_step=1 must not run the batched forward_shared")

    phn.target.forward_shared = no_batched_call
    loss = phn.training_step([x])
    assert loss == pytest.approx(expected, rel=1e-6)
    phn.train(TensorDataset(x), steps=3)
    assert phn.iteration == 3


# ---------------------------------------------------------------- hypernetwork option
@pytest.mark.parametrize("last", [True, False])
def test_last_activation_reaches_the_builder(last):
    phn = make(hnet_options=HO(hidden=(12, 10), last_activation=last))
    assert phn.hnet.build_options["last_activation"] is last
    acts = [m for m in phn.hnet.body if isinstance(m, nn.ReLU)]
    assert len(acts) == (2 if last else 1) and isinstance(phn.hnet.body[-1], nn.ReLU) is last


# ---------------------------------------------------------------- clear errors
@pytest.mark.parametrize("rays_per_step", [1, 4])
def test_a_per_sample_loss_is_named_with_the_fix(rays_per_step):
    phn = make(losses=[quad_a, per_sample_loss], rays_per_step=rays_per_step)
    with pytest.raises(ValueError, match=r"loss per_sample_loss returned shape \(32,\) for one weight set.*\.mean\(\)"):
        phn.train(DATA, steps=1)


def both_objectives(out):
    return torch.stack([quad_a(out), quad_b(out)])  # (2,): several objectives in one callable


@pytest.mark.parametrize("rays_per_step", [1, 4])
def test_a_loss_returning_several_objectives_is_told_to_split_not_to_average(rays_per_step):
    # .mean() would silently average the objectives: the message must offer one callable per objective too
    phn = make(losses=[quad_a, both_objectives], rays_per_step=rays_per_step)
    with pytest.raises(ValueError) as err:
        phn.train(DATA, steps=1)
    msg = str(err.value)
    assert "loss both_objectives returned shape (2,) for one weight set" in msg
    assert "per-sample losses, reduce them with .mean()" in msg
    assert "several objectives" in msg and "one callable per objective in losses=[...]" in msg


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_alpha_fails(alpha):
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        make(alpha=alpha)


@pytest.mark.parametrize("rays_per_step", [0, -2, 2.5, True, "4"])
def test_bad_rays_per_step_fails(rays_per_step):
    with pytest.raises(ValueError, match="rays_per_step must be a positive integer"):
        make(rays_per_step=rays_per_step)


def test_empty_dataset_fails_clearly():
    empty = TensorDataset(torch.zeros(0, 1))
    with pytest.raises(ValueError, match="empty"):
        make().train(empty)
    with pytest.raises(ValueError, match="empty"):
        make().eval(empty)


def test_rays_of_any_real_dtype_work_and_off_simplex_rays_fail():
    phn = make()
    ref = phn.weights_for(torch.tensor([[0.25, 0.75]]))
    for rays in (torch.tensor([[0.25, 0.75]], dtype=torch.float64), np.array([[0.25, 0.75]])):
        assert all(torch.allclose(a, b) for a, b in zip(phn.weights_for(rays), ref))
    corner = torch.tensor([[1, 0]], dtype=torch.int64)
    assert all(torch.allclose(a, b) for a, b in zip(phn.weights_for(corner), phn.weights_for(torch.tensor([[1.0, 0.0]]))))
    np.testing.assert_allclose(phn.eval(DATA, rays=torch.tensor([[0.5, 0.5]], dtype=torch.float64)),
                               phn.eval(DATA, rays=np.array([[0.5, 0.5]], dtype=np.float32)))
    assert phn.eval(DATA, rays=corner).shape == (1, 2)
    with pytest.raises(RayError, match="sum to 1"):
        phn.weights_for(torch.tensor([[0.7, 0.7]], dtype=torch.float64))
    with pytest.raises(RayError, match="sum to 1"):
        phn.eval(DATA, rays=torch.tensor([[2, 0]]))


def test_nan_losses_fail_clearly():
    def nan_loss(out):
        return out.sum() * float("nan")

    with pytest.raises(RuntimeError, match="NaN/inf.*lower the learning rate"):
        make(losses=[quad_a, nan_loss], rays_per_step=2).train(DATA, steps=1)


# ---------------------------------------------------------------- layering
def test_solvers_import_without_avalanche():
    # the strategy itself is an Avalanche template (strategies.phn imports Avalanche); its solvers are not
    code = ("import strategies.solvers, strategies.epo, sys; "
            "bad = [m for m in sys.modules if m.startswith('avalanche')]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_epo_refuses_negative_losses_instead_of_a_distorted_lp():
    solver = EPO()
    weights = torch.randn(2, 3, requires_grad=True)
    losses = torch.stack([weights.sum(1), -(weights.pow(2).sum(1)) - 1.0], dim=1)
    with pytest.raises(ValueError, match="non-negative losses.*solver='ls'"):
        solver(losses, torch.tensor([[0.5, 0.5], [0.2, 0.8]]), weights)
