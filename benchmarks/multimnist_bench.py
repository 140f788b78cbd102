"""Multi-MNIST / Multi-Fashion / Multi-(Fashion+MNIST): PHN-LS, PHN-EPO and K separate LS models.

Each method trains the PHN LeNet target (:class:`benchmarks.multimnist.LeNetTarget`) on a seeded
subset of the training split and is scored on a subset of the test split: PHNs on PHN's evaluation
rays (25 by default), the separate LS models on K rays; hypervolume of the mean test cross-entropies
with reference point (2, 2). Writes ``bench/results/multimnist.json`` (or ``--out``).

Reduced CPU form (what was run here)::

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.multimnist_bench --kinds mnist --train 6000 \\
        --test 2000 --epochs 2 --k-separate 5

The paper's setting is ``--train 0 --test 0 --epochs 150 --lr 1e-4`` (all 108,000 training images
after the 10 % validation split; 20,000 test images), far beyond a CPU session.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from cl_moo.moo_metrics import evaluation_rays, hypervolume, uniformity
from cl_moo.optim import make_adam
from strategies.phn import ParetoHypernetworkStrategy

from .multimnist import KINDS, LOSSES, REF_POINT, LeNetTarget, accuracies, make_multi_dataset, train_val_split

PUBLISHED = {
    "source": "Navon et al. 2021, Learning the Pareto Front with Hypernetworks (ICLR), Table 1 (HV, ref. point (2, 2))",
    "values": None,
    "note": "unverified: Table 1 could not be read from the stored sources in this session; fill in from the paper",
}


def _subset(kind: str, split: str, n: int, root: str, seed: int, val_size: float) -> TensorDataset:
    x, yl, yr = make_multi_dataset(kind, split, root, seed=seed)
    if split == "train":
        keep, _ = train_val_split(len(x), val_size, seed=42)  # PHN holds 10 % out for validation
    else:
        keep = np.arange(len(x))
    if n:
        keep = np.random.default_rng(seed).choice(keep, size=min(n, len(keep)), replace=False)
    keep = torch.from_numpy(np.sort(keep))
    return TensorDataset(x[keep].clone(), yl[keep].clone(), yr[keep].clone())


@torch.no_grad()
def _eval_module(module: torch.nn.Module, data: TensorDataset) -> Dict[str, float]:
    module.eval()
    tot = np.zeros(4)
    n = 0
    for x, yl, yr in DataLoader(data, batch_size=2048):
        out = module(x)
        b = len(x)
        tot += b * np.array([float(LOSSES[0](out, yl, yr)), float(LOSSES[1](out, yl, yr)), *accuracies(out, yl, yr)])
        n += b
    return dict(zip(["loss_left", "loss_right", "acc_left", "acc_right"], (tot / n).tolist()))


def _phn(solver: str, train: TensorDataset, test: TensorDataset, args, rays: np.ndarray) -> Dict[str, Any]:
    torch.manual_seed(args.seed)
    phn = ParetoHypernetworkStrategy(target=LeNetTarget(), losses=LOSSES, hidden=(100, 100, 100), solver=solver,
                                     alpha=0.2, rays_per_step=1, lr=args.lr, train_epochs=args.epochs,
                                     train_mb_size=args.batch_size, eval_mb_size=2048, seed=args.seed)
    t0 = time.perf_counter()
    phn.train(train)
    train_s = time.perf_counter() - t0
    losses = phn.eval(test, rays=rays)
    return {"losses": losses.tolist(), "hypervolume": hypervolume(losses, REF_POINT),
            "uniformity": float(np.nanmean(uniformity(losses, rays))), "train_s": train_s,
            "steps": phn.iteration, "epo_fallbacks": phn.epo_fallbacks}


def _separate(train: TensorDataset, test: TensorDataset, args, rays: np.ndarray) -> Dict[str, Any]:
    points: List[List[float]] = []
    accs: List[List[float]] = []
    t0 = time.perf_counter()
    steps = 0
    for j, ray in enumerate(rays):
        torch.manual_seed(args.seed + j)
        net = LeNetTarget()
        opt = make_adam(net.parameters(), lr=args.lr)
        gen = torch.Generator().manual_seed(args.seed + j)
        r = torch.as_tensor(ray, dtype=torch.float32)
        for _ in range(args.epochs):
            net.train()
            for x, yl, yr in DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=gen):
                out = net(x)
                loss = r[0] * LOSSES[0](out, yl, yr) + r[1] * LOSSES[1](out, yl, yr)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
        m = _eval_module(net, test)
        points.append([m["loss_left"], m["loss_right"]])
        accs.append([m["acc_left"], m["acc_right"]])
    losses = np.asarray(points)
    return {"losses": points, "accuracies": accs, "hypervolume": hypervolume(losses, REF_POINT),
            "uniformity": float(np.nanmean(uniformity(losses, rays))), "train_s": time.perf_counter() - t0,
            "steps": steps}


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
    p.add_argument("--methods", nargs="+", default=["phn_ls", "phn_epo", "ls_separate"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/multimnist.json")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    result: Dict[str, Any] = {"command": vars(args), "ref_point": list(REF_POINT), "recipe": "lin2019 (36x36)",
                              "threads": torch.get_num_threads(), "published": PUBLISHED, "results": {}}
    for kind in args.kinds:
        train = _subset(kind, "train", args.train, args.root, args.seed, 0.1)
        test = _subset(kind, "test", args.test, args.root, args.seed, 0.1)
        res: Dict[str, Any] = {"n_train": len(train), "n_test": len(test)}
        if "phn_ls" in args.methods:
            res["phn_ls"] = _phn("ls", train, test, args, evaluation_rays(2, args.n_rays))
        if "phn_epo" in args.methods:
            res["phn_epo"] = _phn("epo", train, test, args, evaluation_rays(2, args.n_rays))
        if "ls_separate" in args.methods:
            res["ls_separate"] = _separate(train, test, args, evaluation_rays(2, args.k_separate))
        result["results"][kind] = res
        for name in ("phn_ls", "phn_epo", "ls_separate"):
            if name in res:
                print(f"{kind} {name}: HV {res[name]['hypervolume']:.4f} (ref {REF_POINT}), "
                      f"train {res[name]['train_s']:.1f} s, {res[name]['steps']} steps", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
