import numpy as np
import pytest
import torch
from cl_moo import HypernetworkOptions as HO
from torch.utils.data import TensorDataset

from cl_moo.moo_metrics import RayError, evaluation_rays, hypervolume, non_dominated, uniformity
from strategies import ParetoHypernetworkStrategy, epo_weights

from two_quadratics import D, Point, quad_a, quad_b



def exact_losses(rays):
    """LS optimum of r1 |t-a|^2 + r2 |t-b|^2 is t = r1 a + r2 b: losses (r2^2 D, r1^2 D)."""
    rays = np.asarray(rays)
    return np.stack([rays[:, 1] ** 2 * D, rays[:, 0] ** 2 * D], axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("mip", [False, True])
def test_phn_ls_recovers_the_known_pareto_front(mip):
    torch.manual_seed(0)
    data = TensorDataset(torch.zeros(64, 1))
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], rays_per_step=16,
                                     hnet_options=HO(hidden=(50, 50), mip=mip, init="hyperfan_in", target_gain=1.0), lr=3e-3,
                                     train_epochs=600, train_mb_size=64)
    phn.train(data)
    rays = evaluation_rays(2, 25)
    found = phn.eval(data, rays)
    ref = [D, D]
    hv_found, hv_exact = hypervolume(found, ref), hypervolume(exact_losses(rays), ref)
    assert hv_found == pytest.approx(hv_exact, rel=0.02), (hv_found, hv_exact)


def test_phn_epo_trains_and_its_lp_solutions_satisfy_the_constraints():
    torch.manual_seed(0)
    data = TensorDataset(torch.zeros(32, 1))
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], solver="epo",
                                     rays_per_step=4, lr=3e-3, train_epochs=50, train_mb_size=32,
                                     hnet_options=HO(hidden=(20,), target_gain=1.0))
    phn.train(data)
    assert phn.epo_fallbacks == 0
    losses = phn.eval(data)
    assert np.isfinite(losses).all() and losses.shape == (25, 2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        G = rng.normal(size=(3, 10))
        C = G @ G.T
        l = rng.uniform(0.1, 2.0, size=3)
        r = rng.dirichlet(np.ones(3))
        res = epo_weights(l, r, C)
        assert res.mode in ("balance", "dominance")
        alpha = res.alpha
        assert np.all(alpha >= -1e-9) and abs(alpha.sum() - 1) < 1e-8
        assert np.all(res.lp["A_ub"] @ alpha <= res.lp["b_ub"] + 1e-7)
        np.testing.assert_allclose(res.weights, 3 * alpha)


def test_epo_puts_weight_on_the_objective_that_is_behind():
    res = epo_weights(np.array([1.0, 2.0]), np.array([0.5, 0.5]), np.eye(2))
    assert res.mode == "balance" and res.weights[1] > res.weights[0]


def test_rays_off_the_simplex_or_of_wrong_length_fail_clearly():
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(8,)))
    with pytest.raises(RayError, match="sum to 1.*r / r.sum"):
        phn.weights_for(torch.tensor([[0.7, 0.7]]))
    with pytest.raises(RayError, match="needs 2 entries"):
        phn.weights_for(torch.tensor([[0.2, 0.3, 0.5]]))
    with pytest.raises(RayError, match="non-negative"):
        phn.weights_for(torch.tensor([[1.5, -0.5]]))


def test_hypervolume_matches_a_hand_checked_example():
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0]])
    # union of rectangles up to (4, 4): 3*1 + 2*1 + 1*1 ... computed by hand = 6
    assert hypervolume(pts, [4.0, 4.0]) == pytest.approx(6.0)
    assert len(non_dominated(pts)) == 3
    assert uniformity(np.array([[1.0, 1.0]]), np.array([[0.5, 0.5]]))[0] == pytest.approx(1.0)
    assert uniformity(np.array([[1.0, 0.01]]), np.array([[0.5, 0.5]]))[0] < 0.5


def test_evaluation_rays_follow_phn_and_das_dennis():
    r2 = evaluation_rays(2)
    assert r2.shape == (25, 2) and np.allclose(r2.sum(1), 1) and r2.min() > 0.05
    r3 = evaluation_rays(3)
    assert r3.shape[1] == 3 and len(r3) >= 25 and np.allclose(r3.sum(1), 1)
    with pytest.raises(ValueError, match="k >= 2"):
        evaluation_rays(2, 1)  # linspace would give the lopsided ray (0.91, 0.09) alone


def test_uniformity_is_undefined_only_where_r_times_l_vanishes():
    u = uniformity(np.array([[0.5, 0.0], [0.5, 0.2]]), np.array([[0.0, 1.0], [0.5, 0.5]]))
    assert np.isnan(u[0]) and np.isfinite(u[1])


def test_batched_epo_lp_equals_one_lp_per_ray():
    from strategies.epo import epo_weights_batch

    rng = np.random.default_rng(1)
    grams, losses, rays = [], [], []
    for _ in range(12):
        G = rng.normal(size=(3, 8))
        grams.append(G @ G.T)
        losses.append(rng.uniform(0.05, 2.0, size=3))
        rays.append(rng.dirichlet(np.full(3, 0.5)))
    batch = epo_weights_batch(np.array(losses), np.array(rays), np.array(grams))
    for res, l, r, C in zip(batch, losses, rays, grams):
        single = epo_weights(l, r, C)
        assert res.mode == single.mode
        # same optimal objective value (the optimum may not be unique), constraints satisfied
        assert res.lp["c"] @ res.alpha == pytest.approx(single.lp["c"] @ single.alpha, abs=1e-7)
        assert np.all(res.lp["A_ub"] @ res.alpha <= res.lp["b_ub"] + 1e-7)
        assert abs(res.alpha.sum() - 1) < 1e-8 and np.all(res.alpha >= -1e-9)


def test_epo_falls_back_to_ls_weights_and_logs_it(caplog):
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(8,)), solver="epo", rays_per_step=2)
    rays = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    flat = phn.hnet.forward_flat(rays)
    values = torch.stack([flat.pow(2).sum(1) * torch.tensor([float("nan"), 1.0]), flat.pow(2).sum(1) + 1.0], dim=1)
    with caplog.at_level("WARNING"):
        phn.solver(values, rays, flat)
    assert phn.epo_fallbacks >= 1 and "used the LS weights m * r / sum(r)" in caplog.text
    # the fallback is on the scale of a solved step (weights m * alpha sum to m), not r / sum(r)
    r = np.array([0.2, 0.8])
    res = epo_weights(np.array([np.nan, 1.0]), r, np.eye(2))
    assert res.mode == "fallback"
    np.testing.assert_allclose(res.weights, 2 * r / r.sum())
    np.testing.assert_allclose(res.alpha, r / r.sum())


@pytest.mark.parametrize("n, batch_size", [(10, 4), (12, 4)])
@pytest.mark.parametrize("own_generator", [True, False])
def test_tensor_batches_match_the_dataloader_order_and_random_draws(n, batch_size, own_generator):
    """iterate_batches slices a TensorDataset on the device, with DataLoader's order and RNG draws:
    results and checkpoints do not depend on which path ran."""
    from torch.utils.data import DataLoader, TensorDataset

    from strategies.phn import iterate_batches

    data = TensorDataset(torch.arange(n), torch.arange(n) * 10)
    orders, states = [], []
    for fast in (True, False):
        torch.manual_seed(3)
        gen = torch.Generator().manual_seed(7) if own_generator else None
        seen = []
        for epoch in range(2):
            batches = (iterate_batches(data, batch_size, shuffle=True, generator=gen) if fast
                       else DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen))
            for i, (x, y) in enumerate(batches):
                assert torch.equal(y, x * 10)
                seen.append(x.tolist())
                if epoch == 1 and i == 1:
                    break  # a step budget ending mid-pass
        orders.append(seen)
        states.append((torch.get_rng_state(), None if gen is None else gen.get_state()))
    assert orders[0] == orders[1]
    assert sorted(sum(orders[0][: -(-n // batch_size)], [])) == list(range(n))  # the first pass covers every sample
    assert torch.equal(states[0][0], states[1][0])
    if own_generator:
        assert torch.equal(states[0][1], states[1][1])
    in_order = [x.tolist() for x, _ in iterate_batches(data, batch_size)]
    assert sum(in_order, []) == list(range(n))
