"""Runs a Pareto benchmark: PHN-LS, PHN-EPO, or K separate LS models (the PHN paper's "LS" row).

Writes ``metrics.json`` (hypervolume with the benchmark's fixed reference point, uniformity,
per-ray test losses, non-dominated losses, wall time), TensorBoard scalars and a Pareto-front
figure (2-D projections) both as a TensorBoard image and as ``pareto_front.png``.

A PHN run checkpoints after every epoch (model, optimizer, the strategy's generator and the global
RNG states, epoch counter, elapsed time) and the LS baseline after every trained model; with
``resume=true`` a run continues after its last checkpoint and ends with the same metrics as an
uninterrupted run, and a finished run is reported, never retrained or rewritten. The run folder is
locked while the run lives (:mod:`benchmarks.run_dir`). A training loss that ends far above where it
began is flagged (``"diverged"``, ``"warnings"``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

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
from .checkpoint import check_same_build, rng_state, save_checkpoint, set_rng_state
from .fairness import FAIRNESS_LOSSES, hard_objectives, load_fairness, soft_objectives
from .reporting import LossMonitor, config_dict, peak_memory_mb, pick_device, write_json
from .run_dir import RunFolder, open_run

KIND = "pareto"
PHN_REQUIRED = ("hnet", "target", "optimizer", "generator", "rng", "epochs_done", "iteration", "elapsed")
LS_REQUIRED = ("logits", "elapsed")
LOSS_BOUND = 100.0  # a scalarized BCE + rate-gap loss this large means training diverged
PHN_SEGMENT = "PHN training"
Clock = Callable[[], float]


class TensorBoardPlugin:
    """Logs the scalarized training loss of a Pareto strategy every ``every`` iterations."""

    def __init__(self, writer: SummaryWriter, every: int = 10) -> None:
        self.writer, self.every = writer, every

    def after_training_iteration(self, strategy: ParetoHypernetworkStrategy) -> None:
        if strategy.iteration % self.every == 0:
            self.writer.add_scalar("train/scalarized_loss", strategy.last_loss, strategy.iteration)


class EpochCheckpoint:
    """Records every iteration's scalarized loss; after every epoch, a progress line and a checkpoint."""

    def __init__(self, run: RunFolder, monitor: LossMonitor, first_epoch: int, total: int,
                 payload: Callable[[ParetoHypernetworkStrategy, int], Dict[str, Any]]) -> None:
        self.run, self.monitor, self.first_epoch, self.total, self.payload = run, monitor, first_epoch, total, payload
        self.epoch_start = len(monitor.losses.get(PHN_SEGMENT, []))

    def after_training_iteration(self, strategy: ParetoHypernetworkStrategy) -> None:
        self.monitor.record(PHN_SEGMENT, strategy.last_loss)

    def after_training_epoch(self, strategy: ParetoHypernetworkStrategy, epoch: int) -> None:
        done = self.first_epoch + epoch + 1
        losses = self.monitor.losses.get(PHN_SEGMENT, [])[self.epoch_start:]
        self.epoch_start += len(losses)
        mean = sum(losses) / max(1, len(losses))
        self.run.log.say(f"epoch {done}/{self.total}: mean scalarized training loss {mean:.4f}")
        save_checkpoint(self.run.checkpoint, self.payload(strategy, done))


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
    """Trains and evaluates in a locked run folder; returns (and writes) the metrics dict. With
    ``resume=true``: continues an interrupted run, or returns a finished run's metrics untouched."""
    with open_run(cfg, KIND) as run:
        config = config_dict(cfg)
        if run.finished:
            return run.finished_metrics(config)
        required = LS_REQUIRED if cfg.strategy.name == "ls_separate" else PHN_REQUIRED
        state = run.resume_state(config, required) if run.resume else None
        return _train_and_report(cfg, run, config, state)


def _train_and_report(cfg: DictConfig, run: RunFolder, config: Dict[str, Any],
                      state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Loads the data, trains (or finishes training), evaluates on the rays, writes metrics.json."""
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    data, info = load_fairness(cfg.benchmark.name, cfg.data.root, seed=cfg.seed, max_rows=cfg.benchmark.max_rows,
                               verify=cfg.data.verify)
    rays = evaluation_rays(3, cfg.benchmark.n_eval_rays)
    writer = SummaryWriter(str(run.path / "tensorboard"))
    job = _Job(cfg, run, config, device, LossMonitor(bound=LOSS_BOUND), _clock(state), writer)
    try:
        x, y, s = (t.to(device) for t in data["test"].tensors)
        train = _train_separate if cfg.strategy.name == "ls_separate" else _train_phn
        logits, params, epo_fallbacks, built = train(job, data["train"], info, rays, x, state)
        scores = _evaluate(job, logits, y, s, rays)
        warnings = job.monitor.warnings(f"lower train.lr (now {cfg.train.lr}) and run again in a new run_dir")
        for w in warnings:
            run.log.warn(w)
        result = {
            "benchmark": cfg.benchmark.name, "strategy": cfg.strategy.name, "seed": cfg.seed, "preset": cfg.preset,
            **scores, "params": params, "epo_fallbacks": epo_fallbacks, "device": str(device),
            **peak_memory_mb(device), "data_note": None, "tensorboard": str(run.path / "tensorboard"),
            "diverged": bool(warnings), "warnings": warnings, "config": config, "built": built,
        }
        write_json(run.metrics, result, overwrite=False)
        run.log.say(f"{cfg.benchmark.name} {cfg.strategy.name}: HV {scores['hypervolume']:.4f} (ref "
                    f"{scores['ref_point']}), uniformity {scores['uniformity_mean']:.4f}, {scores['wall_time_s']:.1f} s")
        return result
    finally:
        writer.close()


def _evaluate(job: "_Job", logits: torch.Tensor, y: torch.Tensor, s: torch.Tensor, rays: np.ndarray) -> Dict[str, Any]:
    """Test objectives of every ray, hypervolume, uniformity, the front figure; the wall time so far."""
    test_losses = per_ray_objectives(logits, y, s, hard_objectives)
    soft_losses = per_ray_objectives(logits, y, s, soft_objectives)  # the objectives the strategies train on
    wall = job.clock()
    ref = list(job.cfg.benchmark.ref_point)
    hv = hypervolume(test_losses, ref)
    unif = uniformity(test_losses, rays)
    unif_mean = _nanmean(unif)
    unif_soft_mean = _nanmean(uniformity(soft_losses, rays))  # on the objectives EPO balances in training
    job.writer.add_scalar("pareto/hypervolume", hv, 0)
    job.writer.add_scalar("pareto/uniformity_mean", unif_mean, 0)
    job.writer.add_scalar("pareto/uniformity_trained_objectives_mean", unif_soft_mean, 0)
    names = ["BCE", "FP gap", "FN gap"]
    fig = pareto_figure(test_losses, names, job.run.path / "pareto_front.png")
    job.writer.add_figure("pareto/front", fig, 0)
    return {
        "hypervolume": hv, "ref_point": ref, "uniformity_mean": unif_mean, "uniformity": unif.tolist(),
        "uniformity_undefined_rays": int(np.isnan(unif).sum()),
        "uniformity_trained_objectives_mean": unif_soft_mean,
        "test_losses_trained_objectives": soft_losses.tolist(),
        "rays": rays.tolist(), "test_losses": test_losses.tolist(), "objectives": names,
        "non_dominated": non_dominated(test_losses).tolist(), "wall_time_s": wall,
    }


@dataclass
class _Job:
    """What the training functions share: the run, its settings, device, loss record, clock, TensorBoard."""

    cfg: DictConfig
    run: RunFolder
    config: Dict[str, Any]
    device: torch.device
    monitor: LossMonitor
    clock: Clock
    writer: SummaryWriter


def _clock(state: Optional[Dict[str, Any]]) -> Clock:
    """Seconds of this run so far: the checkpoint's elapsed time plus the time since now."""
    before, t0 = (state["elapsed"] if state is not None else 0.0), time.perf_counter()
    return lambda: before + time.perf_counter() - t0


Trained = Tuple[torch.Tensor, int, int, Dict[str, Any]]  # test logits (K, N, 1), parameters, EPO fallbacks, built


def _train_phn(job: _Job, train_data, info: Dict[str, Any], rays: np.ndarray, x: torch.Tensor,
               state: Optional[Dict[str, Any]]) -> Trained:
    """PHN-LS / PHN-EPO: trains the epochs not yet done (checkpoint after each); test logits of every ray."""
    cfg, run, monitor = job.cfg, job.run, job.monitor
    strategy = build_phn_from_config(cfg, info["n_features"], FAIRNESS_LOSSES, job.device)
    built = built_description(strategy.hnet, strategy.target.module)
    done = 0
    if state is not None:
        check_same_build(state.get("built"), built, run.path)
        done = _restore_phn(state, strategy, monitor)
        run.log.say(f"resuming {run.path} after epoch {done}/{cfg.train.epochs}")

    def payload(strategy: ParetoHypernetworkStrategy, epochs_done: int) -> Dict[str, Any]:
        return {
            "kind": KIND, "config": job.config, "built": built, "hnet": strategy.hnet.state_dict(),
            "target": strategy.target.state_dict(), "optimizer": strategy.optimizer.state_dict(),
            "generator": strategy.generator.get_state(), "rng": rng_state(), "epochs_done": epochs_done,
            "iteration": strategy.iteration, "epo_fallbacks": strategy.epo_fallbacks, "elapsed": job.clock(),
            "losses": monitor.state_dict(),
        }

    strategy.plugins += [TensorBoardPlugin(job.writer), EpochCheckpoint(run, monitor, done, cfg.train.epochs, payload)]
    if done < cfg.train.epochs:
        strategy.train_epochs = cfg.train.epochs - done
        strategy.train(train_data)
    logits = ray_logits(strategy, x, rays)
    return logits, strategy.hnet.num_params, strategy.epo_fallbacks, built


def _restore_phn(state: Dict[str, Any], strategy: ParetoHypernetworkStrategy, monitor: LossMonitor) -> int:
    """Loads a PHN checkpoint into the strategy, the loss record and the global RNGs; returns the epochs done."""
    strategy.hnet.load_state_dict(state["hnet"])
    strategy.target.load_state_dict(state["target"])
    strategy.optimizer.load_state_dict(state["optimizer"])
    strategy.generator.set_state(state["generator"])
    strategy.iteration = int(state["iteration"])
    if hasattr(strategy.solver, "fallbacks"):
        strategy.solver.fallbacks = int(state.get("epo_fallbacks", 0))
    monitor.load_state_dict(state["losses"])
    set_rng_state(state["rng"])
    return int(state["epochs_done"])


def _train_separate(job: _Job, train_data, info: Dict[str, Any], rays: np.ndarray, x: torch.Tensor,
                    state: Optional[Dict[str, Any]]) -> Trained:
    """PHN's LS row: one plain target network per ray (checkpoint after each); their test logits."""
    cfg, run, monitor = job.cfg, job.run, job.monitor
    probe = make_target(cfg, info["n_features"], 1)  # shape only: every model below reseeds the RNGs
    built = {"target": built_description(None, probe)["target"], "hnet": None}
    logits: List[torch.Tensor] = []
    if state is not None:
        check_same_build(state.get("built"), built, run.path)
        logits = list(state["logits"])
        monitor.load_state_dict(state["losses"])
        run.log.say(f"resuming {run.path} after LS model {len(logits)}/{len(rays)}")
    for k in range(len(logits), len(rays)):
        seed_everything(cfg.seed + k)
        record = partial(monitor.record, f"LS model {k}")
        module = train_ls_model(cfg, info["n_features"], train_data, rays[k], job.device, record)
        with torch.no_grad():
            logits.append(module(x).cpu())
        run.log.say(f"LS model {k + 1}/{len(rays)} trained (ray {np.round(rays[k], 3).tolist()})")
        save_checkpoint(run.checkpoint, {
            "kind": KIND, "config": job.config, "built": built, "logits": logits, "elapsed": job.clock(),
            "losses": monitor.state_dict(),
        })
    params = sum(p.numel() for p in probe.parameters()) * len(rays)
    return torch.stack(logits).to(job.device), params, 0, built


def train_ls_model(cfg: DictConfig, n_features: int, train_data, ray: np.ndarray, device: torch.device,
                   record: Optional[Callable[[float], None]] = None) -> nn.Module:
    """PHN's "LS" baseline: a plain target network trained on ``sum_i r_i l_i`` for one ray;
    ``record`` gets every iteration's loss. A NaN/inf loss raises ``RuntimeError``."""
    module = make_target(cfg, n_features, 1).to(device)
    opt = make_adam(module.parameters(), lr=cfg.train.lr)
    r = torch.as_tensor(ray, dtype=torch.float32, device=device)
    for epoch in range(cfg.train.epochs):
        for x, y, s in DataLoader(train_data, batch_size=cfg.train.batch_size, shuffle=True):
            x, y, s = x.to(device), y.to(device), s.to(device)
            z = module(x)
            loss = sum(r[i] * fn(z, y, s) for i, fn in enumerate(FAIRNESS_LOSSES))
            if not torch.isfinite(loss):
                raise RuntimeError(
                    f"the LS model for ray {np.round(ray, 3).tolist()} got a NaN/inf loss in epoch {epoch}: lower "
                    f"train.lr (now {cfg.train.lr}) or check the data for NaN"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if record is not None:
                record(float(loss.detach()))
    return module


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
