"""Multi-MNIST / Multi-Fashion / Multi-(Fashion+MNIST): PHN (LS, EPO or any solver) and K separate LS models.

Each method trains the PHN LeNet target (:class:`benchmarks.data.multimnist.LeNetTarget`) on a seeded
subset of the training split and is scored on a subset of the test split: PHNs on PHN's evaluation
rays (25 by default), the separate LS models on K rays; hypervolume of the mean test cross-entropies
with reference point (2, 2). Writes ``bench/results/multimnist.json`` (or ``--out``) after every method.

Reduced CPU form::

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.experiments.multimnist_bench --kinds mnist --train 20000 \\
        --test 2000 --epochs 5 --k-separate 5

On a GPU (what ``bench/gpu_issue14.sh`` runs): ``--device cuda --train 0 --test 0 --epochs 25 --init
xavier`` (all 108,000 training images after the 10 % validation split; 20,000 test images). PHN's
setting is ``--epochs 150 --lr 1e-4``.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from cl_moo import HypernetworkOptions
from cl_moo.moo_metrics import evaluation_rays, hypervolume, uniformity
from strategies.phn import ParetoHypernetworkStrategy
from strategies.solvers import SOLVERS

from benchmarks.data.published import CHEN_KWOK, MULTIMNIST_PHN_HV
from benchmarks.runners.pareto_runner import train_ls_model
from benchmarks.data.multimnist import KINDS, LOSSES, REF_POINT, LeNetTarget, acc_left, acc_right, load_multimnist
from benchmarks.runners.pareto_problems import ParetoProblem, mean_losses
from benchmarks.runners.run_records import write_json

PUBLISHED = {
    "phn_table1": {
        "source": "Navon et al. 2021, Learning the Pareto Front with Hypernetworks (ICLR), Table 1 (HV, ref. point (2, 2))",
        "values": None,
        "note": "not verified: no stored copy of the paper could be read past its opening page. Per the first "
                "author (github AvivNavon/pareto-hypernetworks issue #5, 2022-08-23), Table 1 scores PHN on 25 "
                "evenly spaced rays and the baselines on 5 rays (5-ray PHN HVs: Appendix B.4, Table 6)",
    },
    "phn_reproduced_by_chen_kwok_2022": {"source": CHEN_KWOK, "values": MULTIMNIST_PHN_HV,
                                         "note": "another group's reproduction, not PHN's own Table 1"},
}
GOAL_VALUES = MULTIMNIST_PHN_HV


def _phn(solver: str, train: TensorDataset, test: TensorDataset, args, rays: np.ndarray) -> Dict[str, Any]:
    torch.manual_seed(args.seed)
    phn = ParetoHypernetworkStrategy(target=LeNetTarget(), losses=LOSSES,
                                     hnet_options=HypernetworkOptions(hidden=(100, 100, 100), init=args.init),
                                     solver=solver,
                                     alpha=0.2, rays_per_step=args.rays_per_step, lr=args.lr, train_epochs=args.epochs,
                                     train_mb_size=args.batch_size, eval_mb_size=2048, seed=args.seed,
                                     device=args.device)
    t0 = time.perf_counter()
    phn.train(train)
    _sync(args.device)
    train_s = time.perf_counter() - t0
    losses = phn.eval(test, rays=rays)
    return {"losses": losses.tolist(), "hypervolume": hypervolume(losses, REF_POINT),
            "uniformity": float(np.nanmean(uniformity(losses, rays))), "train_s": train_s,
            "steps": phn.iteration, "epo_fallbacks": phn.epo_fallbacks}


def _separate(train: TensorDataset, test: TensorDataset, args, rays: np.ndarray) -> Dict[str, Any]:
    """K LeNets, model j trained by the runner's ``ls_separate`` loop on ray j (global RNG seeded seed + j)."""
    settings = OmegaConf.create({"train": {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size}})
    problem = ParetoProblem(train=train, test=test, losses=LOSSES, objectives=["CE top-left", "CE bottom-right"],
                            make_target=LeNetTarget, score=None)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    nets = []
    for j, ray in enumerate(rays):
        torch.manual_seed(args.seed + j)
        nets.append(train_ls_model(settings, problem, ray, device).eval())
    _sync(args.device)
    train_s = time.perf_counter() - t0
    values = mean_losses(lambda x: torch.stack([net(x) for net in nets]), test, LOSSES + [acc_left, acc_right],
                         2048, device)
    losses = values[:, :2]
    return {"losses": losses.tolist(), "accuracies": values[:, 2:].tolist(),
            "hypervolume": hypervolume(losses, REF_POINT), "uniformity": float(np.nanmean(uniformity(losses, rays))),
            "train_s": train_s, "steps": len(rays) * args.epochs * math.ceil(len(train) / args.batch_size)}


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=["mnist"], choices=KINDS)
    p.add_argument("--root", default=os.environ.get("CL_MOO_DATA", "/work/shared/data"))
    p.add_argument("--train", type=int, default=6000, help="training images (0 = all after the 10%% validation split)")
    p.add_argument("--test", type=int, default=2000, help="test images (0 = all 20,000)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--k-separate", type=int, default=5)
    p.add_argument("--n-rays", type=int, default=25)
    p.add_argument("--methods", nargs="+", default=["phn_ls", "phn_epo", "ls_separate"],
                   choices=[f"phn_{name}" for name in SOLVERS] + ["ls_separate"])
    p.add_argument("--rays-per-step", type=int, default=1, help="rays per PHN step (phn_hvi needs >= 2)")
    p.add_argument("--init", default="hyperfan_in", help="the PHN hypernetwork's init scheme")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/multimnist.json")
    args = p.parse_args(argv)
    for flag, value in (("--k-separate", args.k_separate), ("--n-rays", args.n_rays)):
        if value < 2:
            p.error(f"{flag} {value}: a front needs at least 2 rays")
    if "phn_hvi" in args.methods and args.rays_per_step < 2:
        p.error("phn_hvi maximises the hypervolume of the rays of each step: pass --rays-per-step 4 (or any >= 2)")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    result: Dict[str, Any] = {"command": vars(args), "ref_point": list(REF_POINT), "recipe": "lin2019 (36x36)",
                              "threads": torch.get_num_threads(), "device": _device_name(args.device),
                              "published": PUBLISHED, "results": {}}
    out = Path(args.out)
    for kind in args.kinds:
        train, test = load_multimnist(kind, args.root, max_train=args.train, max_test=args.test, seed=args.seed,
                                      subset_seed=args.seed)
        res: Dict[str, Any] = {"n_train": len(train), "n_test": len(test)}
        result["results"][kind] = res
        for name in args.methods:  # each result is written as soon as it exists (a time-boxed run keeps them)
            if name == "ls_separate":
                res[name] = _separate(train, test, args, evaluation_rays(2, args.k_separate))
            else:
                res[name] = _phn(name.replace("phn_", ""), train, test, args, evaluation_rays(2, args.n_rays))
            goal = GOAL_VALUES.get(kind, {}).get(name)
            res[name]["reference_hv"] = goal
            print(f"{kind} {name}: HV {res[name]['hypervolume']:.4f} (ref {REF_POINT}; reproduced PHN HV {goal}), "
                  f"train {res[name]['train_s']:.1f} s, {res[name]['steps']} steps", flush=True)
            write_json(out, result)
    return result


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu"


if __name__ == "__main__":
    main()
