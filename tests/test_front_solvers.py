"""Front solvers on the PHN extension point: Tchebycheff (TCH), smooth Tchebycheff (STCH, Lin et al.
ICML 2024) and hypervolume maximisation over a step's rays (PHN-HVI, Hoang et al. AAAI 2023).

(a) gradients on hand-made losses, (b) the two-quadratics problem (exact front known),
(c) the Lin et al. 2019 toy problem, (d) misuse that must fail with a clear message."""
import math

import numpy as np
import pytest
import torch
from cl_moo import HypernetworkOptions as HO
from torch.utils.data import TensorDataset

from cl_moo.moo_metrics import evaluation_rays, hypervolume, non_dominated
from strategies.phn import ParetoHypernetworkStrategy
from strategies.solvers import (SOLVERS, Chebyshev, HypervolumeMaximization, LinearScalarization, SmoothChebyshev,
                                hypervolume_gradient, make_solver)
from two_quadratics import D, Point, quad_a, quad_b

DATA = TensorDataset(torch.zeros(1, 1))
NO_WEIGHTS = torch.zeros(1, 1)  # these solvers never read the generated weights


pytestmark = pytest.mark.usefixtures("one_thread")


def grad_of(solver, losses, rays):
    losses = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    out = solver(losses, torch.tensor(rays, dtype=torch.float64), NO_WEIGHTS)
    assert out.dim() == 0
    out.backward()
    return float(out.detach()), losses.grad.numpy()


# ---------------------------------------------------------------- (a) hand-made losses
def test_registered_by_name():
    assert {"tch", "stch", "hvi"} <= set(SOLVERS)
    assert isinstance(make_solver("tch"), Chebyshev)
    assert isinstance(make_solver("stch"), SmoothChebyshev)
    assert isinstance(make_solver("hvi"), HypervolumeMaximization)


def test_tch_gradient_is_only_on_the_argmax_objective():
    losses = [[1.0, 2.0, 0.5], [3.0, 1.0, 1.0]]
    rays = [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]
    value, g = grad_of(Chebyshev(), losses, rays)
    # r * l = [0.2, 0.6, 0.25] -> objective 1; [0.3, 0.1, 0.8] -> objective 2; mean over the 2 rays
    assert value == pytest.approx((0.6 + 0.8) / 2)
    np.testing.assert_allclose(g, [[0, 0.3 / 2, 0], [0, 0, 0.8 / 2]])
    # the ideal point moves the argmax: r * (l - z) with z = (0, 1.5, 0) -> [0.2, 0.15, 0.25]
    value, g = grad_of(Chebyshev(ideal=[0.0, 1.5, 0.0]), losses[:1], rays[:1])
    assert value == pytest.approx(0.25)
    np.testing.assert_allclose(g, [[0, 0, 0.5]])


def test_stch_tends_to_tch_as_mu_shrinks_and_to_ls_as_mu_grows():
    losses = [[1.0, 2.0, 0.5], [3.0, 1.0, 1.0]]
    rays = [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]
    tch, g_tch = grad_of(Chebyshev(), losses, rays)
    _, g_ls = grad_of(LinearScalarization(), losses, rays)
    for mu in (1.0, 0.1, 0.01):
        value, _ = grad_of(SmoothChebyshev(mu=mu), losses, rays)
        assert tch <= value <= tch + mu * math.log(3) + 1e-12  # the smoothing gap is at most mu log m
    _, g_small = grad_of(SmoothChebyshev(mu=1e-3), losses, rays)
    np.testing.assert_allclose(g_small, g_tch, atol=1e-6)
    _, g_big = grad_of(SmoothChebyshev(mu=1e4), losses, rays)
    np.testing.assert_allclose(g_big, g_ls / 3, atol=1e-4)  # softmax -> uniform: LS / m
    assert not np.allclose(g_big, g_tch, atol=1e-2)


def test_hvi_gradient_is_minus_the_exact_hypervolume_gradient_in_2d():
    pts = np.array([[1.0, 5.0], [2.0, 3.0], [4.0, 1.0]])
    ref = [6.0, 6.0]
    # by hand (staircase sorted by l1): dHV/dx_k = -(y_{k-1} - y_k) (y_0 = 6), dHV/dy_k = -(x_{k+1} - x_k) (x_4 = 6)
    by_hand = -np.array([[6 - 5, 2 - 1], [5 - 3, 4 - 2], [3 - 1, 6 - 4]], dtype=float)
    np.testing.assert_allclose(hypervolume_gradient(pts, ref), by_hand)
    h = 1e-6
    fd = np.zeros_like(pts)
    for a in range(3):
        for j in range(2):
            e = np.zeros_like(pts)
            e[a, j] = h
            fd[a, j] = (hypervolume(pts + e, ref) - hypervolume(pts - e, ref)) / (2 * h)  # pymoo's exact HV
    np.testing.assert_allclose(fd, by_hand, atol=1e-6)
    solver = HypervolumeMaximization(ref=ref, lam=0.0, normalize=False)
    _, g = grad_of(solver, pts, [[0.5, 0.5]] * 3)
    np.testing.assert_allclose(g, -by_hand)  # descent on the scalar ascends HV
    assert solver.last_hv == pytest.approx(hypervolume(pts, ref))


def test_hvi_gradient_in_3d_matches_finite_differences_and_dominated_points_use_their_front():
    rng = np.random.default_rng(0)
    pts = non_dominated(rng.uniform(0.1, 1.0, size=(12, 3)))
    ref = np.full(3, 1.2)
    g = hypervolume_gradient(pts, ref)
    h = 1e-6
    for a in range(len(pts)):
        for j in range(3):
            e = np.zeros_like(pts)
            e[a, j] = h
            fd = (hypervolume(pts + e, ref) - hypervolume(pts - e, ref)) / (2 * h)
            assert g[a, j] == pytest.approx(fd, abs=1e-6)
    # a dominated point alone on the second front: the gradient of its own box, -(ref - other coordinate)
    _, grad = grad_of(HypervolumeMaximization(ref=[6.0, 6.0], lam=0.0, normalize=False),
                      [[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.5]] * 2)
    np.testing.assert_allclose(grad, [[6 - 2, 6 - 1], [6 - 4, 6 - 3]])
    _, grad = grad_of(HypervolumeMaximization(ref=[6.0, 6.0], lam=0.0, normalize=True),
                      [[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.5]] * 2)
    np.testing.assert_allclose(np.linalg.norm(grad, axis=1), [1.0, 1.0])


def test_hvi_penalty_turns_a_loss_vector_towards_one_over_its_ray():
    # one point off its direction 1/r = (1, 4) / |.|: the penalty's descent lowers l1 against l2
    pts, rays = [[1.0, 1.0], [0.5, 3.0]], [[0.8, 0.2], [0.5, 0.5]]
    _, g0 = grad_of(HypervolumeMaximization(ref=[6.0, 6.0], lam=0.0), pts, rays)
    _, g1 = grad_of(HypervolumeMaximization(ref=[6.0, 6.0], lam=1.0), pts, rays)
    pen = g1 - g0
    assert pen[0, 0] > 0 > pen[0, 1]  # -grad moves l1 down, l2 up: towards (1, 4)
    assert pen[1, 0] < 0 < pen[1, 1]  # (0.5, 3) is past (1, 1): turned back
    l = torch.tensor(pts[0], dtype=torch.float64)
    d = torch.tensor([0.25, 1.0], dtype=torch.float64)
    before = torch.cosine_similarity(l, d, dim=0)
    after = torch.cosine_similarity(l - 0.01 * torch.tensor(pen[0]), d, dim=0)
    assert after > before


# ---------------------------------------------------------------- (b) two quadratics, exact front
def tch_exact(rays):
    """The TCH / exact-Pareto point of ray r on the two-quadratics front: theta = A + s (B - A),
    l = (s^2 D, (1 - s)^2 D), with r_1 l_1 = r_2 l_2: s = sqrt(r_2) / (sqrt(r_1) + sqrt(r_2))."""
    s = np.sqrt(rays[:, 1]) / (np.sqrt(rays[:, 0]) + np.sqrt(rays[:, 1]))
    return np.stack([s ** 2 * D, (1 - s) ** 2 * D], axis=1)


@pytest.mark.parametrize("solver", ["tch", "stch", "hvi"])
def test_solver_recovers_the_known_pareto_front_of_two_quadratics(solver):
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(50, 50), target_gain=1.0),
                                     rays_per_step=16, lr=3e-3, seed=0, solver=solver, train_mb_size=1)
    phn.train(DATA, steps=600)
    rays = evaluation_rays(2, 25)
    found = phn.eval(DATA, rays)
    ref = [D, D]
    hv_found, hv_exact = hypervolume(found, ref), hypervolume(tch_exact(rays), ref)
    assert hv_found == pytest.approx(hv_exact, rel=0.03), (hv_found, hv_exact)
    # on the front: l2 = (sqrt(D) - sqrt(l1))^2, ordered like the rays (r_1 falls, l_1 rises)
    np.testing.assert_allclose(found[:, 1], (math.sqrt(D) - np.sqrt(found[:, 0])) ** 2, atol=0.02)
    assert np.all(np.diff(found[:, 0]) > 0)


# ---------------------------------------------------------------- (c) Lin et al. 2019 toy
@pytest.mark.parametrize("solver", ["tch", "stch", "hvi"])
def test_solvers_give_distinct_pareto_optimal_points_on_the_lin2019_toy(solver):
    from benchmarks.experiments.toy_lin2019 import N, Vector, angles_to_inverse_rays, lin2019_losses

    phn = ParetoHypernetworkStrategy(target=Vector(N), losses=lin2019_losses(N), objective_only=True, solver=solver,
                                     hnet_options=HO(hidden=(100, 100), target_gain=1.0), alpha=1.0, rays_per_step=16, lr=1e-3, seed=0)
    phn.train(steps=400)
    rays = evaluation_rays(2, 25)
    losses = phn.eval(rays=rays)
    # Pareto optimal-ish: the Pareto set is the segment x = t / sqrt(n) * 1, |t| <= 1, where
    # f = (1 - exp(-(t - 1)^2), 1 - exp(-(t + 1)^2)). The nearest point of the segment dominates x;
    # the gap max_i (f_i(x) - f_i(nearest)) is 0 exactly on the Pareto set.
    with torch.no_grad():
        x = phn.weights_for(rays)[0].double().numpy()  # (25, n)
    t = np.clip(x.mean(axis=1) * math.sqrt(N), -1, 1)
    nearest = np.stack([1 - np.exp(-(t - 1) ** 2), 1 - np.exp(-(t + 1) ** 2)], axis=1)
    gap = (losses - nearest).max(axis=1)
    assert gap.max() < 0.02, gap
    assert len(non_dominated(losses)) == len(losses)
    # distinct and following the rays (r_1 falls along PHN's evaluation rays, so f_1 rises), by a
    # clear step between neighbouring rays
    assert np.all(np.diff(losses[:, 0]) > 0.005), np.diff(losses[:, 0])
    assert losses[:, 0].max() - losses[:, 0].min() > 0.8
    # each point sits where its ray asks: l along 1/r (TCH's optimum; HVI's penalty)
    angles = angles_to_inverse_rays(losses, rays)
    assert angles.mean() < 2.0 and angles.max() < 5.0, angles


def test_angles_to_inverse_rays_are_finite_on_rays_with_zeros_and_unchanged_on_positive_rays():
    from benchmarks.experiments.toy_lin2019 import angles_to_inverse_rays

    rays = evaluation_rays(3, 25)  # Das-Dennis: 18 of its 28 rays have a zero entry (1/r = inf)
    assert (rays == 0).any(axis=1).sum() == 18
    losses = np.random.default_rng(0).uniform(0.1, 2.0, size=rays.shape)
    angles = angles_to_inverse_rays(losses, rays)
    assert np.isfinite(angles).all(), angles
    # strictly positive rays: the old formula with 1/r itself
    pos = (rays > 0).all(axis=1)
    d = 1.0 / rays[pos]
    l = losses[pos]
    old = np.degrees(np.arccos(np.clip((l * d).sum(1) / (np.linalg.norm(l, axis=1) * np.linalg.norm(d, axis=1)), -1, 1)))
    np.testing.assert_allclose(angles[pos], old, rtol=0, atol=1e-9)
    # known answers: r = (1/2, 1/2, 0) -> 1/r points along e_3; r = (1, 0, 0) -> along (0, 1, 1)
    zero_rays = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    known = angles_to_inverse_rays(np.array([[0.0, 0.0, 2.0], [1.0, 1.0, 1.0], [0.0, 3.0, 3.0], [1.0, 0.0, 0.0]]),
                                   zero_rays)
    np.testing.assert_allclose(known, [0.0, math.degrees(math.acos(1 / math.sqrt(3))), 0.0, 90.0], atol=1e-6)
    # and it is the limit r_3 -> 0 of the 1/r direction (the old formula on a nearby positive ray)
    eps = 1e-7
    near = np.array([[0.5 - eps / 2, 0.5 - eps / 2, eps]])
    loss = np.array([[1.0, 2.0, 1.0]])
    d = 1.0 / near
    cos = (loss * d).sum() / (np.linalg.norm(loss) * np.linalg.norm(d))
    assert angles_to_inverse_rays(loss, zero_rays[:1])[0] == pytest.approx(math.degrees(math.acos(cos)), abs=1e-4)
    with pytest.raises(ValueError, match="non-negative"):
        angles_to_inverse_rays(losses[:1], np.array([[1.5, -0.5, 0.0]]))


# ---------------------------------------------------------------- (d) misuse
def test_hvi_needs_two_rays_per_step():
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(8,)), solver="hvi",
                                     rays_per_step=1, seed=0)
    with pytest.raises(ValueError, match=r"at least 2.*rays_per_step=1.*rays_per_step >= 2"):
        phn.train(DATA, steps=1)


def test_hvi_loss_above_the_reference_point_fails_clearly():
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(8,), target_gain=1.0), seed=0,
                                     solver=HypervolumeMaximization(ref=0.5), rays_per_step=4)
    with pytest.raises(ValueError, match=r"not below the reference point ref\[\d\] = 0\.5.*raise ref.*ref=None"):
        phn.train(DATA, steps=1)
    with pytest.raises(ValueError, match="ref= has 3 entries but there are 2 objectives"):
        grad_of(HypervolumeMaximization(ref=[9.0, 9.0, 9.0]), [[1.0, 2.0], [2.0, 1.0]], [[0.5, 0.5]] * 2)
    # the default (ref=None) is a dynamic reference point: 1.1 x the step's largest losses
    phn = ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(8,)), solver="hvi",
                                     rays_per_step=4, seed=0)
    phn.train(DATA, steps=2)


def test_hvi_ray_penalty_refuses_negative_losses():
    with pytest.raises(ValueError, match=r"needs losses >= 0.*lam=0"):
        grad_of(HypervolumeMaximization(ref=[9.0, 9.0]), [[-1.0, 2.0], [2.0, 1.0]], [[0.5, 0.5]] * 2)
    grad_of(HypervolumeMaximization(ref=[9.0, 9.0], lam=0.0), [[-1.0, 2.0], [2.0, 1.0]], [[0.5, 0.5]] * 2)


@pytest.mark.parametrize("make", [lambda: SmoothChebyshev(mu=0.0), lambda: SmoothChebyshev(mu=float("nan")),
                                  lambda: HypervolumeMaximization(lam=-1.0), lambda: Chebyshev(ideal=[float("inf")]),
                                  lambda: HypervolumeMaximization(ref=[float("nan"), 1.0])])
def test_bad_solver_arguments_fail(make):
    with pytest.raises(ValueError):
        make()
