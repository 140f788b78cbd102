"""Continual Pareto fronts: one hypernetwork h([e_t, r]) learns each task's front; the output
regularizer keeps earlier fronts (tested against the same model without it)."""
import numpy as np
import pytest
import torch
from cl_moo import HypernetworkOptions as HO
from torch.utils.data import TensorDataset

from cl_moo.moo_metrics import evaluation_rays, hypervolume
from strategies import ContinualParetoStrategy
from two_quadratics import Point

# task t: l1 = |theta - A_t|^2, l2 = |theta - B_t|^2 (the LS front: theta = r1 A_t + r2 B_t)
ANCHORS = [(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 1.0, -0.5])),
           (torch.tensor([-1.0, 0.5, 0.0]), torch.tensor([0.5, -1.0, 1.0]))]
REF = [4.0, 4.0]


def to_a(out, a, b):
    return (out - a).pow(2).sum(-1).mean()


def to_b(out, a, b):
    return (out - b).pow(2).sum(-1).mean()


def task_data(t, n=32):
    a, b = ANCHORS[t]
    return TensorDataset(torch.zeros(n, 1), a.expand(n, -1).clone(), b.expand(n, -1).clone())


def exact_hv(t, rays):
    a, b = ANCHORS[t]
    d = float((a - b).pow(2).sum())
    rays = np.asarray(rays)
    return hypervolume(np.stack([rays[:, 1] ** 2 * d, rays[:, 0] ** 2 * d], axis=1), REF)


def run(beta):
    strategy = ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], emb_dim=4, beta=beta, reg_rays=8,
                                       hnet_options=HO(hidden=(32, 32), target_gain=1.0), rays_per_step=8, lr=3e-3,
                                       train_mb_size=32, seed=0)
    rays = evaluation_rays(2, 15)
    strategy.train_task(0, task_data(0), steps=500)
    hv0_after_0 = hypervolume(strategy.eval_task(0, task_data(0), rays), REF)
    strategy.train_task(1, task_data(1), steps=500)
    hv0_final = hypervolume(strategy.eval_task(0, task_data(0), rays), REF)
    hv1 = hypervolume(strategy.eval_task(1, task_data(1), rays), REF)
    return hv0_after_0, hv0_final, hv1, exact_hv(0, rays), exact_hv(1, rays)


@pytest.mark.slow
def test_the_regularizer_keeps_the_first_front_and_without_it_the_front_is_forgotten():
    hv0, hv0_final, hv1, exact0, exact1 = run(beta=1.0)
    assert hv0 == pytest.approx(exact0, rel=0.03) and hv1 == pytest.approx(exact1, rel=0.03)
    assert hv0_final >= 0.99 * hv0, (hv0, hv0_final)  # HV forgetting <= 1% relative
    free0, free0_final, *_ = run(beta=0.0)
    assert free0_final < 0.9 * free0, (free0, free0_final)  # the same model without it forgets


def test_tasks_are_checked():
    strategy = ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], emb_dim=4, hnet_options=HO(hidden=(8,)), seed=0)
    with pytest.raises(ValueError, match="has not been trained"):
        strategy.eval_task(0, task_data(0))
    with pytest.raises(RuntimeError, match="train_task"):
        strategy.train(task_data(0), steps=1)
    strategy.train_task(0, task_data(0), steps=2)
    with pytest.raises(ValueError, match="already trained"):
        strategy.train_task(0, task_data(0), steps=2)
    for bad, match in (({"reg_rays": 1}, "reg_rays must be an integer >= 2"), ({"emb_dim": 0}, "emb_dim"), ({"emb_std": 0.0}, "emb_std")):
        with pytest.raises(ValueError, match=match):
            ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], **bad)
    with pytest.raises(TypeError, match="seed must be an int"):
        ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], seed=None)


def test_bench_goals_list_tasks_without_a_reference_instead_of_dropping_them():
    from benchmarks.experiments.continual_pareto_bench import goals

    reg = {"hv_final": [1.49, 1.01, 0.77], "hv_forgetting_relative": [0.035, 0.005, 0.0]}
    g = goals(reg, [1.29, 1.21, 0.0])  # the third stand-alone PHN learned nothing (HV 0)
    assert g["undefined_ratio_tasks"] == [2] and g["final_over_standalone"][2] is None
    assert g["min_final_over_standalone"] == pytest.approx(1.01 / 1.21)
    assert g["max_hv_forgetting_relative"] == pytest.approx(0.035) and g["met"] is False
    ok = goals({"hv_final": [1.0, 1.0], "hv_forgetting_relative": [0.005, 0.0]}, [1.0, 1.02])
    assert ok["met"] is True and ok["undefined_ratio_tasks"] == []
    assert goals({"hv_final": [1.0, 1.0], "hv_forgetting_relative": [None, 0.0]}, [1.0, 1.0])["met"] is False


def test_bench_hv_curve_records_the_hv_at_the_asked_steps_of_each_task():
    from benchmarks.experiments.continual_pareto_bench import HVCurve

    rays = evaluation_rays(2, 5)
    curve = HVCurve([3, 1, 3, 50], rays)  # unsorted, repeated, beyond the budget
    strategy = ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], emb_dim=4, hnet_options=HO(hidden=(8,)), seed=0,
                                       plugins=[curve], lr=3e-2)
    curve.test = task_data(0)
    strategy.train_task(0, task_data(0), steps=3)
    hv_at_3 = hypervolume(strategy.eval_task(0, task_data(0), rays), [2.0, 2.0])  # the bench's reference point
    assert sorted(curve.curve) == [1, 3] and curve.curve[1] != curve.curve[3]
    assert hv_at_3 > 0 and curve.curve[3] == pytest.approx(hv_at_3)
    curve.test = task_data(1)
    strategy.train_task(1, task_data(1), steps=2)  # counted from this task's start: step 1 only
    assert sorted(curve.curve) == [1]


def test_bench_runs_keep_a_curve_per_task_and_save_each_finished_task():
    from argparse import Namespace

    from benchmarks.experiments.continual_pareto_bench import run_continual, run_standalone

    gen = torch.Generator().manual_seed(0)

    def images(n):  # Multi-MNIST's batch layout: 36x36 images, the left and the right label
        return TensorDataset(torch.rand(n, 1, 36, 36, generator=gen), torch.randint(0, 10, (n,), generator=gen),
                             torch.randint(0, 10, (n,), generator=gen))

    tasks = [{"train": images(16), "test": images(8)} for _ in range(2)]
    args = Namespace(target="mlp", hidden=[8], lr=1e-3, batch_size=8, seed=0, init="xavier", device="cpu",
                     chunk_size=None, chunk_emb_dim=8, emb_dim=4, emb_std=0.1, reg_rays=3, steps=3, eval_at=[2, 3],
                     start="random")
    rays = evaluation_rays(2, 3)
    for run_part, key in ((lambda save: run_continual(tasks, args, 2.0, rays, save), "hv_just_after"),
                          (lambda save: run_standalone(tasks, args, rays, save), "hv")):
        saved = []
        out = run_part(saved.append)
        assert [sorted(c) for c in out["hv_curve"]] == [[2, 3], [2, 3]]
        assert [c[3] for c in out["hv_curve"]] == pytest.approx(out[key])  # the last step's HV is the task's
        assert [len(p[key]) for p in saved] == [1, 2] and [len(p["hv_curve"]) for p in saved] == [1, 2]
        assert all(p["complete"] is False for p in saved) and out["complete"] is True


@pytest.mark.parametrize("options", [dict(init="xavier"), dict(init="hyperfan_in"),
                                     dict(init="xavier", chunk_size=2, chunk_emb_dim=3)])
def test_start_phn_begins_task_0_as_the_stand_alone_phn_of_the_same_seed(options):
    from strategies import ParetoHypernetworkStrategy

    common = dict(target=Point(), losses=[to_a, to_b], hnet_options=HO(hidden=(8, 8), **options), seed=3)
    phn = ParetoHypernetworkStrategy(**common)
    cont = ContinualParetoStrategy(emb_dim=4, emb_std=1.0, start="phn", **common)
    fresh = ContinualParetoStrategy(emb_dim=4, emb_std=1.0, **common)  # the default: a fresh draw
    for s in (cont, fresh):
        s.hnet.ensure_tasks(2)
    rays = torch.tensor(evaluation_rays(2, 5), dtype=torch.float32)
    want = phn.hnet.forward_flat(rays)
    for task in (0, 1):  # any embedding: its first-layer columns start at zero
        cont.hnet.current = task
        assert torch.allclose(cont.hnet.forward_flat(rays), want, atol=1e-6)
    fresh.hnet.current = 0
    assert not torch.allclose(fresh.hnet.forward_flat(rays), want, atol=1e-3)
    assert cont.hnet.inner.build_options["start"] == "phn" and fresh.hnet.inner.build_options["start"] == "random"


def test_start_is_checked():
    with pytest.raises(ValueError, match="start must be one of"):
        ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], start="warm")
    with pytest.raises(ValueError, match="start='random'"):
        ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], hnet_options=HO(mip=True), start="phn")
    ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], hnet_options=HO(mip=True, hidden=(8,)))


def test_the_default_start_keeps_its_draws():
    """start='random' builds what the strategy built before ``start`` existed: the probe is the embedding
    draws, then the rays, from one generator seeded with ``seed`` (hyperfan init reads the probe)."""
    from cl_moo import FunctionalTarget, build_hypernetwork
    from strategies.phn import DirichletRays, seeded_global_rng

    cont = ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], emb_dim=4, emb_std=0.5, hnet_options=HO(hidden=(8, 8)), seed=5)
    gen = torch.Generator().manual_seed(5)
    probe = torch.cat([torch.randn(256, 4, generator=gen) * 0.5, DirichletRays(2, 0.2)(256, gen)], dim=1)
    with seeded_global_rng(5):
        want = build_hypernetwork(FunctionalTarget(Point()), 6, hidden=(8, 8), input_range="unbounded",
                                  init="hyperfan_in", probe_conditions=probe)
    for (name, ours), theirs in zip(cont.hnet.inner.named_parameters(), want.parameters()):
        assert torch.equal(ours, theirs), name


def test_start_phn_checks_that_the_copy_reproduces_the_phn():
    from cl_moo import FunctionalTarget, build_hypernetwork
    from strategies.phn_cl import start_as_phn

    ft = FunctionalTarget(Point())
    phn = build_hypernetwork(ft, 2, hidden=(8,), init="xavier")
    inner = build_hypernetwork(ft, 5, hidden=(8,), init="xavier")
    inner.encoder.forward = lambda c: torch.cat([c[:, 3:], c[:, :3]], dim=1)  # reads [r, e]: the ray first
    with pytest.raises(ValueError, match="does not take the condition as the last inputs"):
        start_as_phn(inner, phn, emb_dim=3)
    with pytest.raises(ValueError, match="inputs wider"):
        start_as_phn(build_hypernetwork(ft, 5, hidden=(9,), init="xavier"), phn, emb_dim=3)  # wider body too


def test_both_task_conditioned_models_draw_task_embeddings_with_the_one_seed_formula():
    from cl_moo import build_hypernetwork, make_functional_target, task_embedding_seed
    from strategies import TaskConditionedHypernetwork, TaskRayHypernetwork

    assert task_embedding_seed(7, 3) == 7 * 100_003 + 3  # the formula the recorded runs were drawn with
    target = make_functional_target(Point())
    cl = TaskConditionedHypernetwork(target, build_hypernetwork(target, 6, hidden=(8,)), emb_std=0.5, seed=7)
    pareto = TaskRayHypernetwork(build_hypernetwork(target, 6 + 2, hidden=(8,)), m=2, emb_dim=6, emb_std=0.5, seed=7)
    cl.ensure_tasks(3)
    pareto.ensure_tasks(3)
    for t in range(3):
        drawn = torch.randn(6, generator=torch.Generator().manual_seed(task_embedding_seed(7, t))) * 0.5
        assert torch.equal(cl.task_embeddings[t].detach(), drawn)
        assert torch.equal(pareto.task_embeddings[t].detach(), drawn)
    assert not torch.equal(cl.task_embeddings[0], cl.task_embeddings[1])


def test_bench_aggregate_pairs_each_seed_with_its_stand_alone_and_takes_the_goals_over_all_seeds(tmp_path):
    import json

    from benchmarks.experiments.continual_pareto_bench import aggregate, goals

    settings = dict(tasks=3, steps=100, beta=2.0, emb_dim=16, seed=0, parts=["regularized"], out="x", eval_at=[50])

    def write(name, seed, part, values, **changes):
        s = {**settings, "seed": seed, "parts": [part], "out": name, **changes}
        (tmp_path / name).write_text(json.dumps({"settings": s, "ref_point": [2.0, 2.0], part: values}))

    def reg(just, final):
        return {"hv_just_after": just, "hv_final": final, "complete": True,
                "hv_forgetting_relative": [(a - f) / a for a, f in zip(just, final)]}

    write("reg0.json", 0, "regularized", reg([1.0, 1.0, 1.0], [0.995, 1.0, 1.0]))  # 0.5% forgetting, ratios 0.995 1 1
    write("reg1.json", 1, "regularized", reg([1.0, 1.0, 1.0], [0.998, 0.99, 1.0]))  # task 1 ratio 0.99 / 1.1 = 0.9
    write("reg2.json", 2, "regularized", reg([1.0, 1.0, 1.0], [0.992, 1.0, 1.0]))  # 0.8% forgetting, the largest
    # the stand-alone files: beta / emb_dim are the continual model's own settings, so they may differ
    write("alone0.json", 0, "standalone", {"hv": [1.0, 1.0, 1.0]}, beta=0.05, emb_dim=4)
    write("alone1.json", 1, "standalone", {"hv": [1.0, 1.1, 1.0]}, beta=0.05)
    write("alone2.json", 2, "standalone", {"hv": [1.0, 1.0, 1.0]})
    write("alone1_long.json", 1, "standalone", {"hv": [1.0, 1.0, 1.0]}, steps=200)  # another setting: not a pair

    good = aggregate(tmp_path, ["reg0.json", "reg2.json"])
    assert good["goals"]["met"] is True and good["goals"]["seeds"] == [0, 2]
    assert good["goals"]["max_hv_forgetting_relative"] == pytest.approx(0.008)
    assert good["goals"]["max_hv_forgetting_at"] == {"seed": 2, "task": 0, "regularized_file": "reg2.json"}
    assert good["per_seed"]["0"]["standalone_file"] == "alone0.json"
    assert good["per_seed"]["0"]["goals"] == goals(json.loads((tmp_path / "reg0.json").read_text())["regularized"],
                                                   [1.0, 1.0, 1.0])
    assert good["per_seed"]["2"]["hv_final"] == [0.992, 1.0, 1.0] and good["per_seed"]["2"]["standalone_hv"] == [1.0] * 3
    assert "seed" not in good["settings"] and "out" not in good["settings"] and good["settings"]["tasks"] == 3

    bad = aggregate(tmp_path, ["reg0.json", "reg1.json", "reg2.json"])["goals"]  # seed 1 misses the ratio goal
    assert bad["met"] is False and bad["met_per_seed"] == {"0": True, "1": False, "2": True}
    assert bad["min_final_over_standalone"] == pytest.approx(0.9)
    assert bad["min_final_over_standalone_at"] == {"seed": 1, "task": 1, "regularized_file": "reg1.json",
                                                   "standalone_file": "alone1.json"}
    assert bad["sources"]["1"] == {"regularized": "reg1.json", "standalone": "alone1.json"} and bad["tasks"] == 3

    write("reg3.json", 3, "regularized", reg([1.0] * 3, [1.0] * 3))
    with pytest.raises(ValueError, match=r"reg3\.json \(seed 3\): no stand-alone file of seed 3"):
        aggregate(tmp_path, ["reg0.json", "reg3.json"])
    write("reg4.json", 4, "regularized", reg([1.0] * 3, [1.0] * 3))
    write("alone4.json", 4, "standalone", {"hv": [1.0] * 3}, lr=0.01)
    with pytest.raises(ValueError, match=r"reg4\.json \(seed 4\).*other settings.*alone4\.json: \['lr'\]"):
        aggregate(tmp_path, ["reg4.json"])
    write("reg5.json", 5, "regularized", reg([1.0] * 3, [1.0] * 3), steps=200)
    with pytest.raises(ValueError, match=r"reg5\.json and .*reg0\.json: settings differ in \['steps'\]"):
        aggregate(tmp_path, ["reg0.json", "reg5.json"])
    with pytest.raises(ValueError, match="missing.json: no such file"):
        aggregate(tmp_path, ["missing.json"])

    import sys
    from unittest import mock

    from benchmarks.experiments.continual_pareto_bench import main

    out = tmp_path / "out" / "seeds.json"
    argv = ["continual_pareto_bench", "--aggregate", str(tmp_path), "--out", str(out), "--runs"]
    with mock.patch.object(sys, "argv", argv + ["reg0.json", "reg3.json"]), pytest.raises(SystemExit):
        main()  # refused: nothing written
    assert not out.exists()
    with mock.patch.object(sys, "argv", argv + ["reg0.json", "reg1.json", "reg2.json"]):
        main()
    written = json.loads(out.read_text())
    assert written["goals"] == bad and "--runs reg0.json reg1.json reg2.json" in written["command"]


def test_a_stream_of_several_experiences_is_refused_by_train_pointing_to_train_task():
    """train(stream) would train every experience into the current task's front; train_task(t, exp) is the way."""
    class Exp:
        def __init__(self, t):
            self.dataset = task_data(t)

    strategy = ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], emb_dim=2, hnet_options=HO(hidden=(8,)),
                                       train_mb_size=32, seed=0)
    strategy.train_task(0, task_data(0), steps=1)
    with pytest.raises(ValueError, match=r"got 2 experiences.*strategy.train_task\(t, exp\)"):
        strategy.train([Exp(0), Exp(1)], steps=1)
    assert strategy.iteration == 1 and strategy.trained_tasks == [0]  # refused before any step
