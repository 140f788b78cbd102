"""Runs a Pareto benchmark: PHN-LS, PHN-EPO, or K separate LS models (the PHN paper's "LS" row).

Writes ``metrics.json`` (hypervolume with the benchmark's fixed reference point, uniformity,
per-ray test losses, non-dominated losses, wall time), TensorBoard scalars and a Pareto-front
figure (2-D projections) both as a TensorBoard image and as ``pareto_front.png``.
"""
from __future__ import annotations

import time
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import vmap
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from cl_moo import evaluation_rays, hypervolume, make_adam, non_dominated, uniformity
from strategies.phn import ParetoHypernetworkStrategy

from .builders import build_phn_from_config, built_description, make_target, seed_everything
from .fairness import FAIRNESS_LOSSES, hard_objectives, load_fairness, soft_objectives
from .reporting import config_dict, peak_memory_mb, pick_device, run_folder, write_json


class TensorBoardPlugin:
    """Logs the scalarized training loss of a Pareto strategy every ``every`` iterations."""

    def __init__(self, writer: SummaryWriter, every: int = 10) -> None:
        self.writer, self.every = writer, every

    def after_training_iteration(self, strategy: ParetoHypernetworkStrategy) -> None:
        if strategy.iteration % self.every == 0:
            self.writer.add_scalar("train/scalarized_loss", strategy.last_loss, strategy.iteration)


Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def ray_logits(strategy: ParetoHypernetworkStrategy, x: torch.Tensor, rays: np.ndarray) -> torch.Tensor:
    """Logits ``(K, N, 1)`` of the K networks the hypernetwork emits for ``rays``, in one call."""
    weights = strategy.weights_for(torch.as_tensor(rays, dtype=torch.float32))
    return strategy.target.forward_shared(weights, x)


@torch.no_grad()
def per_ray_objectives(logits: torch.Tensor, y: torch.Tensor, s: torch.Tensor, objectives: Objective) -> np.ndarray:
    """``objectives`` ((BCE, FPR gap, FNR gap), hard or soft) of each ray's logits ``(K, N, ...)``
    on the whole split: the gaps are not means over samples, so they are never averaged over batches."""
    return vmap(objectives, in_dims=(0, None, None))(logits, y, s).cpu().numpy()


def pareto_figure(losses: np.ndarray, names: List[str], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(combinations(range(losses.shape[1]), 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.6), squeeze=False)
    front = non_dominated(losses)
    for ax, (i, j) in zip(axes[0], pairs):
        ax.scatter(losses[:, i], losses[:, j], s=14, c="tab:gray", label="all rays")
        ax.scatter(front[:, i], front[:, j], s=18, c="tab:red", label="non-dominated")
        ax.set_xlabel(names[i]); ax.set_ylabel(names[j])
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def run_moo(cfg: DictConfig) -> Dict[str, Any]:
    out_dir = run_folder(cfg)
    if (out_dir / "metrics.json").exists() and not cfg.resume:
        raise FileExistsError(f"{out_dir} already holds a finished run; use run_dir=<new folder>")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    data, info = load_fairness(cfg.benchmark.name, cfg.data.root, seed=cfg.seed, max_rows=cfg.benchmark.max_rows,
                               verify=cfg.data.verify)
    rays = evaluation_rays(3, cfg.benchmark.n_eval_rays)
    writer = SummaryWriter(str(out_dir / "tensorboard"))
    t0 = time.perf_counter()
    x, y, s = (t.to(device) for t in data["test"].tensors)
    if cfg.strategy.name == "ls_separate":
        logits = []
        for k, ray in enumerate(rays):  # one ordinary target network per ray, fixed LS weights
            seed_everything(cfg.seed + k)
            module = train_ls_model(cfg, info["n_features"], data["train"], ray, device)
            with torch.no_grad():
                logits.append(module(x))
        logits = torch.stack(logits)
        params = sum(p.numel() for p in module.parameters()) * len(rays)
        epo_fallbacks = 0
        built = {"target": built_description(None, module, cfg)["target"], "hnet": None}
    else:
        strategy = build_phn_from_config(cfg, info["n_features"], FAIRNESS_LOSSES, device)
        strategy.plugins.append(TensorBoardPlugin(writer))
        strategy.train(data["train"])
        logits = ray_logits(strategy, x, rays)
        params = strategy.hnet.num_params
        epo_fallbacks = strategy.epo_fallbacks
        built = built_description(strategy.hnet, strategy.target.module, cfg)
    test_losses = per_ray_objectives(logits, y, s, hard_objectives)
    soft_losses = per_ray_objectives(logits, y, s, soft_objectives)  # the objectives the strategies train on
    wall = time.perf_counter() - t0
    ref = list(cfg.benchmark.ref_point)
    hv = hypervolume(test_losses, ref)
    unif = uniformity(test_losses, rays)
    writer.add_scalar("pareto/hypervolume", hv, 0)
    unif_mean = _nanmean(unif)
    unif_soft_mean = _nanmean(uniformity(soft_losses, rays))  # on the objectives EPO balances in training
    writer.add_scalar("pareto/uniformity_mean", unif_mean, 0)
    writer.add_scalar("pareto/uniformity_trained_objectives_mean", unif_soft_mean, 0)
    names = ["BCE", "FP gap", "FN gap"]
    fig = pareto_figure(test_losses, names, out_dir / "pareto_front.png")
    writer.add_figure("pareto/front", fig, 0)
    writer.close()
    result = {
        "benchmark": cfg.benchmark.name, "strategy": cfg.strategy.name, "seed": cfg.seed, "preset": cfg.preset,
        "hypervolume": hv, "ref_point": ref, "uniformity_mean": unif_mean, "uniformity": unif.tolist(),
        "uniformity_undefined_rays": int(np.isnan(unif).sum()),
        "uniformity_trained_objectives_mean": unif_soft_mean,
        "test_losses_trained_objectives": soft_losses.tolist(),
        "rays": rays.tolist(), "test_losses": test_losses.tolist(), "objectives": names,
        "non_dominated": non_dominated(test_losses).tolist(), "wall_time_s": wall, "params": params,
        "epo_fallbacks": epo_fallbacks, "device": str(device),
        **peak_memory_mb(device), "data_note": None, "tensorboard": str(out_dir / "tensorboard"),
        "config": config_dict(cfg),
        "built": built,
    }
    write_json(out_dir / "metrics.json", result)
    print(f"{cfg.benchmark.name} {cfg.strategy.name}: HV {hv:.4f} (ref {ref}), uniformity {unif_mean:.4f}, {wall:.1f} s")
    return result


def train_ls_model(cfg: DictConfig, n_features: int, train_data, ray: np.ndarray, device: torch.device) -> nn.Module:
    """PHN's "LS" baseline: a plain target network trained on ``sum_i r_i l_i`` for one ray."""
    module = make_target(cfg, n_features, 1).to(device)
    opt = make_adam(module.parameters(), lr=cfg.train.lr)
    r = torch.as_tensor(ray, dtype=torch.float32, device=device)
    for _ in range(cfg.train.epochs):
        for x, y, s in DataLoader(train_data, batch_size=cfg.train.batch_size, shuffle=True):
            x, y, s = x.to(device), y.to(device), s.to(device)
            z = module(x)
            loss = sum(r[i] * fn(z, y, s) for i, fn in enumerate(FAIRNESS_LOSSES))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return module



def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
