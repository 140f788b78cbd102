"""Runs a Pareto benchmark: PHN-LS, PHN-EPO (or any solver), or K separate LS models (the PHN paper's "LS" row).

The benchmark is a :class:`~benchmarks.runners.pareto_problems.ParetoProblem` (fairness data sets, the
Multi-MNIST family): data, target, losses and how K models are scored on the test split.

Writes ``metrics.json`` (hypervolume with the benchmark's fixed reference point, uniformity,
per-ray test losses, non-dominated losses, wall time), TensorBoard scalars and a Pareto-front
figure (2-D projections) both as a TensorBoard image and as ``pareto_front.png``.

A PHN run checkpoints after every epoch (the strategy's ``state_dict()``: model, optimizer, generator,
solver; the global RNG states, epoch counter, elapsed time) and the LS baseline after every trained model; with
``resume=true`` a run continues after its last checkpoint and ends with the same metrics as an
uninterrupted run, and a finished run is reported, never retrained or rewritten. The run folder is
locked while the run lives (:mod:`benchmarks.runners.run_dir`). A training loss that ends far above where it
began is flagged (``"diverged"``, ``"warnings"``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from cl_moo import HealthLog, evaluation_rays, hypervolume, make_adam, non_dominated, uniformity
from strategies.phn import ParetoHypernetworkStrategy, iterate_batches

from benchmarks.runners.budget import TimeBudget
from benchmarks.runners.checkpoint import (check_same_build, nest_strategy_state, rng_state, save_checkpoint,
                                           set_rng_state)
from benchmarks.runners.composition import build_phn_from_config, built_description, seed_everything
from benchmarks.runners.pareto_problems import ParetoProblem, Predict, load_problem
from benchmarks.runners.progress import ProgressPlugin, RunProgress
from benchmarks.runners.run_dir import RunFolder, run_in_folder
from benchmarks.runners.run_records import (LossMonitor, epo_fallback_message, pick_device, run_summary, write_json,
                                            zero_hypervolume_note)
from benchmarks.runners.tb_logging import log_config, log_hparams, open_writer

KIND = "pareto"
# a PHN checkpoint: the strategy's state_dict() and the runner's progress (_train_phn's payload, read by _restore_phn)
PHN_REQUIRED = ("strategy", "rng", "epochs_done", "elapsed", "losses")
# the strategy's entries of a PHN checkpoint written before ParetoHypernetworkStrategy.state_dict() (upgrade_checkpoint)
PHN_OLD_STRATEGY_KEYS = ("hnet", "target", "optimizer", "generator", "iteration")
LS_REQUIRED = ("models", "elapsed")
LOSS_BOUND = 100.0  # a scalarized loss (BCE + rate gaps, or two cross-entropies) this large means training diverged
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
                 payload: Callable[[ParetoHypernetworkStrategy, int], Dict[str, Any]], budget: TimeBudget) -> None:
        self.run, self.monitor, self.first_epoch, self.total, self.payload = run, monitor, first_epoch, total, payload
        self.budget = budget
        self.epoch_start = len(monitor.losses.get(PHN_SEGMENT, []))

    def after_training_iteration(self, strategy: ParetoHypernetworkStrategy) -> None:
        self.monitor.record(PHN_SEGMENT, strategy.last_loss)

    def after_training_epoch(self, strategy: ParetoHypernetworkStrategy, epoch: int) -> None:
        done = self.first_epoch + epoch + 1
        losses = self.monitor.losses.get(PHN_SEGMENT, [])[self.epoch_start:]
        self.epoch_start += len(losses)
        mean = sum(losses) / max(1, len(losses))
        self.run.log.say(f"epoch {done}/{self.total}: mean scalarized training loss {mean:.4f}")
        self.budget.lap()
        save_checkpoint(self.run.checkpoint, self.payload(strategy, done))
        self.budget.check(done=done, total=self.total, folder=self.run.path)


# the front is evaluated after an epoch while one evaluation takes under HV_EVAL_FREE_S seconds, or all of them
# together at most HV_EVAL_SHARE of the training time so far (see EpochFront)
HV_EVAL_FREE_S = 1.0
HV_EVAL_SHARE = 0.2


def pareto_figure(losses: np.ndarray, names: List[str], path: Optional[Path] = None, *,
                  ref: Optional[Sequence[float]] = None, hv: Optional[float] = None,
                  title: str = "test losses per evaluation ray"):
    """The test losses of every evaluation ray (2-D projections for 3+ objectives), the non-dominated ones
    in red, the hypervolume's reference point as a black star; the title says the HV and the reference
    point. Saved as PNG at ``path`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(combinations(range(losses.shape[1]), 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.9), squeeze=False)
    front = non_dominated(losses)
    for ax, (i, j) in zip(axes[0], pairs):
        ax.scatter(losses[:, i], losses[:, j], s=14, c="tab:gray", label="all rays")
        ax.scatter(front[:, i], front[:, j], s=18, c="tab:red", label="non-dominated")
        if ref is not None:
            ax.scatter([ref[i]], [ref[j]], s=90, marker="*", c="k", label="HV reference point")
        ax.set_xlabel(f"{names[i]} (lower is better)")
        ax.set_ylabel(f"{names[j]} (lower is better)")
    axes[0][0].legend(fontsize=7)
    if hv is not None:
        where = "" if ref is None else f" (reference point {[round(float(v), 4) for v in ref]})"
        title += f"\nhypervolume {hv:.4f}{where}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


class EpochFront:
    """After an epoch, the test front of the evaluation rays to TensorBoard at the global step (HV,
    uniformity, the front figure) while that is cheap: scoring the rays on the test split takes under
    :data:`HV_EVAL_FREE_S` seconds, or all scorings together at most :data:`HV_EVAL_SHARE` of the training
    time so far (so the first epoch always; with a large test split, every few epochs). The figure (about
    half a second) is not counted. The last epoch's front is the final evaluation's (:func:`_evaluate`).
    Evaluating draws no random numbers: training is unchanged."""

    def __init__(self, job: "_Job", problem: ParetoProblem, rays: np.ndarray, first_epoch: int, total: int) -> None:
        self.job, self.problem, self.rays, self.first_epoch, self.total = job, problem, rays, first_epoch, total
        self.train_s = self.eval_s = self.last_eval_s = 0.0
        self.mark = time.perf_counter()

    def before_training(self, strategy: ParetoHypernetworkStrategy) -> None:
        self.mark = time.perf_counter()

    def after_training_epoch(self, strategy: ParetoHypernetworkStrategy, epoch: int) -> None:
        start = time.perf_counter()
        self.train_s += start - self.mark
        done = self.first_epoch + epoch + 1
        if done < self.total and self._cheap():
            strategy.hnet.eval()
            try:
                with torch.no_grad():
                    weights = strategy.weights_for(self.rays)
                    test_losses, soft_losses, hv = _score_front(
                        self.job, self.problem, lambda x: strategy.target.forward_shared(weights, x))
            finally:
                strategy.hnet.train()
            self.last_eval_s = time.perf_counter() - start
            self.eval_s += self.last_eval_s
            _log_front(self.job, self.problem, test_losses, soft_losses, self.rays, hv, strategy.iteration,
                       f"epoch {done}/{self.total}")
        self.mark = time.perf_counter()

    def _cheap(self) -> bool:
        return self.last_eval_s < HV_EVAL_FREE_S or self.eval_s + self.last_eval_s <= HV_EVAL_SHARE * self.train_s


def run_moo(cfg: DictConfig) -> Dict[str, Any]:
    """Trains and evaluates in a locked run folder; returns (and writes) the metrics dict. With
    ``resume=true``: continues an interrupted run, or returns a finished run's metrics untouched."""
    required = LS_REQUIRED if cfg.strategy.name == "ls_separate" else PHN_REQUIRED
    return run_in_folder(cfg, KIND, required, _train_and_report, upgrade_checkpoint)


def upgrade_checkpoint(state: Dict[str, Any]) -> Dict[str, Any]:
    """A PHN checkpoint of the layout before the strategies' ``state_dict()`` (the strategy's parts as the
    top-level entries :data:`PHN_OLD_STRATEGY_KEYS` and ``epo_fallbacks``) in the current layout (them under
    ``strategy``); any other checkpoint (current layout, LS baseline) as it is."""
    return nest_strategy_state(state, PHN_OLD_STRATEGY_KEYS)


def _train_and_report(cfg: DictConfig, run: RunFolder, config: Dict[str, Any],
                      state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Loads the data, trains (or finishes training), evaluates on the rays, writes metrics.json."""
    unit = "LS model" if cfg.strategy.name == "ls_separate" else "epoch"
    # counts from here (loading included); the units of the run's earlier processes are estimates too
    budget = TimeBudget(cfg.train.get("budget_s"), unit=unit, recorded_s=(state or {}).get("unit_s", []))
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    problem = load_problem(cfg)
    rays = evaluation_rays(problem.m, cfg.benchmark.n_eval_rays)
    # a resumed PHN run continues the global step of its checkpoint (what the interrupted part wrote after it is purged)
    step = None if state is None else state.get("strategy", {}).get("iteration")  # None for the LS baseline's
    writer = open_writer(run.path / "tensorboard", step)
    if state is None:
        log_config(writer, config)
    job = _Job(cfg, run, config, device, LossMonitor(bound=LOSS_BOUND), _clock(state), writer, budget)
    try:
        train = _train_separate if cfg.strategy.name == "ls_separate" else _train_phn
        predict, params, (epo_fallbacks, epo_rays), built = train(job, problem, rays, state)
        scores = _evaluate(job, problem, predict, rays)
        warnings = run.divergence_warnings(job.monitor, cfg)
        note = zero_hypervolume_note(scores["test_losses"], scores["ref_point"], scores["objectives"], "the front")
        health = HealthLog(emit=False)  # the run's log says each finding once, below
        if note:
            health.report("hypervolume_zero", "the front", note, step=0, value=0.0)
        if (epo := epo_fallback_message(epo_fallbacks, epo_rays)) is not None:
            health.report("epo_fallbacks", "solver", epo, step=epo_rays, value=epo_fallbacks / epo_rays)
        result = {
            **run.record(cfg, device, config, built, warnings), **scores, "hypervolume_note": note, "params": params,
            "epo_fallbacks": epo_fallbacks, "epo_rays_solved": epo_rays, "data_note": problem.info.get("note"),
            "data_sizes": {"train": len(problem.train), "test": len(problem.test)},
            "health": run.health_section(health, job.writer),
        }
        result["summary"] = run_summary(KIND, result, run.path)
        log_hparams(writer, config, {"hypervolume": scores["hypervolume"], "uniformity_mean": scores["uniformity_mean"],
                                     "wall_time_s": scores["wall_time_s"]}, job.step)
        write_json(run.metrics, result, overwrite=False)
        run.log.note(result["summary"]["line"])
        return result
    finally:
        writer.close()


def _score_front(job: "_Job", problem: ParetoProblem, predict: Predict) -> Tuple[np.ndarray, np.ndarray, float]:
    """The test objectives of every ray (reported; the objectives trained on) and the hypervolume."""
    with torch.no_grad():
        test_losses, soft_losses = problem.score(predict, job.device)
    return test_losses, soft_losses, hypervolume(test_losses, list(job.cfg.benchmark.ref_point))


def _log_front(job: "_Job", problem: ParetoProblem, test_losses: np.ndarray, soft_losses: np.ndarray,
               rays: np.ndarray, hv: float, step: int, when: str,
               path: Optional[Path] = None) -> Tuple[np.ndarray, float, float]:
    """HV, uniformity and the front figure to TensorBoard at ``step`` (and the figure to ``path``);
    returns the uniformity per ray, its mean, and its mean on the trained objectives."""
    unif = uniformity(test_losses, rays)
    unif_mean = _nanmean(unif)
    unif_soft_mean = _nanmean(uniformity(soft_losses, rays))  # on the objectives EPO balances in training
    job.writer.add_scalar("pareto/hypervolume", hv, step)
    job.writer.add_scalar("pareto/uniformity_mean", unif_mean, step)
    job.writer.add_scalar("pareto/uniformity_trained_objectives_mean", unif_soft_mean, step)
    cfg = job.cfg
    fig = pareto_figure(test_losses, list(problem.objectives), path, ref=list(cfg.benchmark.ref_point), hv=hv,
                        title=f"{cfg.benchmark.name} {cfg.strategy.name}: test losses per evaluation ray, {when}")
    job.writer.add_figure("pareto/front", fig, step)  # closes the figure
    job.writer.flush()
    return unif, unif_mean, unif_soft_mean


def _evaluate(job: "_Job", problem: ParetoProblem, predict: Predict, rays: np.ndarray) -> Dict[str, Any]:
    """Test objectives of every ray, hypervolume, uniformity, the front figure (TensorBoard at the last
    global step); the wall time so far."""
    test_losses, soft_losses, hv = _score_front(job, problem, predict)
    wall = job.clock()
    ref = list(job.cfg.benchmark.ref_point)
    when = "after training" if job.cfg.strategy.name == "ls_separate" else f"epoch {job.cfg.train.epochs} (final)"
    unif, unif_mean, unif_soft_mean = _log_front(job, problem, test_losses, soft_losses, rays, hv, job.step, when,
                                                 job.run.path / "pareto_front.png")
    names = list(problem.objectives)
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
    budget: TimeBudget
    step: int = 0  # the global training step of the final evaluation (PHN: its iterations; LS: 0)


def _clock(state: Optional[Dict[str, Any]]) -> Clock:
    """Seconds of this run so far: the checkpoint's elapsed time plus the time since now."""
    before, t0 = (state["elapsed"] if state is not None else 0.0), time.perf_counter()
    return lambda: before + time.perf_counter() - t0


# the K models' predict, parameters, (EPO fallbacks, rays EPO solved), built
Trained = Tuple[Predict, int, Tuple[int, int], Dict[str, Any]]


def _train_phn(job: _Job, problem: ParetoProblem, rays: np.ndarray, state: Optional[Dict[str, Any]]) -> Trained:
    """PHN (any solver): trains the epochs not yet done (checkpoint after each); the models of the rays."""
    cfg, run, monitor = job.cfg, job.run, job.monitor
    strategy = build_phn_from_config(cfg, problem.make_target(), problem.losses, job.device)
    built = built_description(strategy.hnet, strategy.target.module)
    done = 0
    if state is not None:
        check_same_build(state.get("built"), built, run.path)
        done = _restore_phn(state, strategy, monitor)
        run.log.say(f"resuming {run.path} after epoch {done}/{cfg.train.epochs}")

    def payload(strategy: ParetoHypernetworkStrategy, epochs_done: int) -> Dict[str, Any]:
        return {
            "kind": KIND, "config": job.config, "built": built, "strategy": strategy.state_dict(), "rng": rng_state(),
            "epochs_done": epochs_done, "elapsed": job.clock(), "losses": monitor.state_dict(),
            "unit_s": list(job.budget.durations),
        }

    strategy.plugins += [TensorBoardPlugin(job.writer), EpochFront(job, problem, rays, done, cfg.train.epochs),
                         EpochCheckpoint(run, monitor, done, cfg.train.epochs, payload, job.budget)]
    batches = _batches(problem, cfg)
    with RunProgress(cfg.train.epochs, batches, done=done * batches, stage_name="epoch", unit_name="batch",
                     enabled=cfg.progress) as meter:
        strategy.plugins.append(ProgressPlugin(meter))
        if done < cfg.train.epochs:
            job.budget.begin_units()
            strategy.train_epochs = cfg.train.epochs - done
            strategy.train(problem.train)
    job.step = strategy.iteration
    strategy.hnet.eval()
    with torch.no_grad():
        weights = strategy.weights_for(rays)
    return (lambda x: strategy.target.forward_shared(weights, x)), strategy.hnet.num_params, \
        (strategy.epo_fallbacks, strategy.epo_rays_solved), built


def _restore_phn(state: Dict[str, Any], strategy: ParetoHypernetworkStrategy, monitor: LossMonitor) -> int:
    """Loads a PHN checkpoint into the strategy, the loss record and the global RNGs; returns the epochs done."""
    strategy.load_state_dict(state["strategy"])
    monitor.load_state_dict(state["losses"])
    set_rng_state(state["rng"])
    return int(state["epochs_done"])


def _train_separate(job: _Job, problem: ParetoProblem, rays: np.ndarray, state: Optional[Dict[str, Any]]) -> Trained:
    """PHN's LS row: one plain target network per ray (checkpoint after each); their predict."""
    cfg, run, monitor = job.cfg, job.run, job.monitor
    probe = problem.make_target()  # shape only: every model below reseeds the RNGs
    built = {"target": built_description(None, probe)["target"], "hnet": None}
    models: List[nn.Module] = []
    if state is not None:
        check_same_build(state.get("built"), built, run.path)
        for weights in state["models"]:
            models.append(problem.make_target().to(job.device))
            models[-1].load_state_dict(weights)
        monitor.load_state_dict(state["losses"])
        run.log.say(f"resuming {run.path} after LS model {len(models)}/{len(rays)}")
    per_model = cfg.train.epochs * _batches(problem, cfg)
    job.budget.begin_units()
    with RunProgress(len(rays), per_model, done=len(models) * per_model, stage_name="LS model", unit_name="batch",
                     enabled=cfg.progress) as meter:
        for k in range(len(models), len(rays)):
            seed_everything(cfg.seed + k)
            record = partial(_record, monitor, meter, f"LS model {k}")
            models.append(train_ls_model(cfg, problem, rays[k], job.device, record))
            run.log.say(f"LS model {k + 1}/{len(rays)} trained (ray {np.round(rays[k], 3).tolist()})")
            job.budget.lap()
            save_checkpoint(run.checkpoint, {
                "kind": KIND, "config": job.config, "built": built, "models": [m.state_dict() for m in models],
                "elapsed": job.clock(), "losses": monitor.state_dict(), "unit_s": list(job.budget.durations),
            })
            job.budget.check(done=k + 1, total=len(rays), folder=run.path)
    for module in models:
        module.eval()
    params = sum(p.numel() for p in probe.parameters()) * len(rays)
    return (lambda x: torch.stack([module(x) for module in models])), params, (0, 0), built


def train_ls_model(cfg: DictConfig, problem: ParetoProblem, ray: np.ndarray, device: torch.device,
                   record: Optional[Callable[[float], None]] = None) -> nn.Module:
    """PHN's "LS" baseline: a plain target network trained on ``sum_i r_i l_i`` for one ray (initialised
    and shuffled from the global RNG); ``record`` gets every iteration's loss. A NaN/inf loss raises
    ``RuntimeError``."""
    module = problem.make_target().to(device)
    opt = make_adam(module.parameters(), lr=cfg.train.lr)
    r = torch.as_tensor(ray, dtype=torch.float32, device=device)
    for epoch in range(cfg.train.epochs):
        for x, *targets in iterate_batches(problem.train, cfg.train.batch_size, device=device, shuffle=True):
            z = module(x)
            loss = sum(r[i] * fn(z, *targets) for i, fn in enumerate(problem.losses))
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


def _batches(problem: ParetoProblem, cfg: DictConfig) -> int:
    """Training batches per epoch (the last one may be smaller)."""
    return max(1, -(-len(problem.train) // cfg.train.batch_size))


def _record(monitor: LossMonitor, meter: RunProgress, segment: str, loss: float) -> None:
    """An LS model's iteration: its loss to the monitor, one unit of progress."""
    monitor.record(segment, loss)
    meter.update(loss=loss)


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
