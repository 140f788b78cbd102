"""Runs a continual Pareto benchmark (``benchmark=multimnist_seq strategy=phn_cl``) and reports it.

One hypernetwork ``h([e_t, r])`` learns the Pareto front of each task in turn
(:class:`strategies.phn_cl.ContinualParetoStrategy`). After every task: the front of every task
trained so far on its test split (the benchmark's evaluation rays), their hypervolumes (one row of
the HV matrix), TensorBoard scalars and a checkpoint. ``metrics.json`` holds the HV matrix, each
task's HV right after learning it and after the last task, the relative HV forgetting and the fronts
before and after; figures (HV matrix, HV over time, the fronts per task before and after) are PNG
files next to it and TensorBoard images. Resume, run-folder locking and divergence checks are the
other runners' (:mod:`benchmarks.runners.run_dir`, :mod:`benchmarks.runners.checkpoint`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from cl_moo import HealthLog, evaluation_rays, hypervolume, uniformity
from strategies.phn_cl import ContinualParetoStrategy

from benchmarks.runners.budget import TimeBudget
from benchmarks.runners.checkpoint import (check_same_build, nest_strategy_state, rng_state, save_checkpoint,
                                           set_rng_state)
from benchmarks.runners.cl_figures import forgetting_figure, matrix_figure, pyplot
from benchmarks.runners.composition import build_continual_pareto_strategy, built_description, seed_everything
from benchmarks.configuration.config import objectives
from benchmarks.data.multimnist import LOSSES, permuted_tasks
from benchmarks.runners.pareto_problems import multimnist_problem
from benchmarks.runners.progress import ProgressPlugin, RunProgress
from benchmarks.runners.run_dir import RunFolder, run_in_folder
from benchmarks.runners.run_records import (LossMonitor, epo_fallback_message, pick_device, run_summary, write_json,
                                            zero_hypervolume_note)
from benchmarks.runners.tb_logging import log_config, log_hparams, open_writer

KIND = "continual_pareto"
# a checkpoint: the strategy's state_dict() and the runner's progress (written after every task, read by _restore)
REQUIRED = ("strategy", "next_task", "rng", "losses", "hv_matrix", "fronts", "elapsed", "train_s")
# the strategy's entries of a checkpoint written before ContinualParetoStrategy.state_dict() (upgrade_checkpoint)
OLD_STRATEGY_KEYS = ("hnet", "target", "generator", "iteration")
LOSS_BOUND = 100.0  # a scalarized cross-entropy this large means training diverged
# what the continual Pareto runner's TensorBoard scalars mean (the text tab "config" says it too)
METRIC_NOTES = (
    "HV[t, j]: the hypervolume of task j's test front (the evaluation rays) after training task t, with the "
    "benchmark's reference point. `hypervolume/task_j` = HV[t, j]; `hypervolume_forgetting/task_j` = "
    "(HV[j, j] - HV[t, j]) / HV[j, j], the share of task j's HV lost since it was trained (metrics.json: "
    "hv_forgetting_relative after the last task); `hypervolume_forgetting/mean_earlier_tasks`: their mean over "
    "j < t. Step = the task index t. `train/scalarized_loss`: step = the global training iteration, continued "
    "across resumes. `pareto_cl/fronts` at step t: each trained task's front just after training it and after "
    "task t."
)


class _LossRecorder:
    """Records every iteration's scalarized loss (divergence check) and logs it to TensorBoard."""

    def __init__(self, monitor: LossMonitor, writer: SummaryWriter, task: int, every: int = 10) -> None:
        self.monitor, self.writer, self.task, self.every = monitor, writer, task, every

    def after_training_iteration(self, strategy: ContinualParetoStrategy) -> None:
        self.monitor.record(f"task {self.task}", strategy.last_loss)
        if strategy.iteration % self.every == 0:
            self.writer.add_scalar("train/scalarized_loss", strategy.last_loss, strategy.iteration)


def run_pareto_cl(cfg: DictConfig) -> Dict[str, Any]:
    """Trains the tasks not yet done in a locked run folder; returns (and writes) the metrics dict."""
    return run_in_folder(cfg, KIND, REQUIRED, _train_and_report, upgrade_checkpoint)


def upgrade_checkpoint(state: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint of the layout before the strategies' ``state_dict()`` in the current layout; any other
    as it is. That layout, taken after task ``next_task - 1``, holds the strategy's parts as the top-level
    entries :data:`OLD_STRATEGY_KEYS` and ``epo_fallbacks``, and neither the optimizer nor the regularizer's
    targets (``None`` here: the next ``train_task`` makes both anew, as it does in an uninterrupted run);
    tasks ``0 .. next_task - 1`` are trained and none is current."""
    if "strategy" in state or not all(k in state for k in OLD_STRATEGY_KEYS + ("next_task",)):
        return state
    state = nest_strategy_state(state, OLD_STRATEGY_KEYS)
    done = int(state["next_task"])
    state["strategy"].update(optimizer=None, num_tasks=done, current_task=None, trained_tasks=list(range(done)),
                             regularized_tasks=[], regularizer=None)
    return state


def _restore(state: Dict[str, Any], strategy: ContinualParetoStrategy, monitor: LossMonitor) -> int:
    """Loads a checkpoint taken after task ``next_task - 1``; returns ``next_task``."""
    strategy.load_state_dict(state["strategy"])
    monitor.load_state_dict(state["losses"])
    set_rng_state(state["rng"])
    return int(state["next_task"])


def _train_and_report(cfg: DictConfig, run: RunFolder, config: Dict[str, Any],
                      state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    # counts from here (loading included); earlier processes' task times (training only) are estimates too
    budget = TimeBudget(cfg.train.get("budget_s"), unit="task", recorded_s=(state or {}).get("unit_s", []))
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    b = cfg.benchmark
    images = multimnist_problem(cfg)  # the splits (and their size note) of benchmark=multimnist
    train, test = images.train, images.test
    tasks = permuted_tasks(b.n_tasks, train, test)
    rays = evaluation_rays(len(LOSSES), b.n_eval_rays)
    ref = [float(v) for v in b.ref_point]
    strategy = build_continual_pareto_strategy(cfg, device)
    built = built_description(strategy.hnet.inner, strategy.target.module)
    built["hnet"].update({"emb_dim": cfg.hnet.emb_dim, "emb_std": float(cfg.strategy.emb_std)})
    monitor = LossMonitor(bound=LOSS_BOUND)
    # a resumed run continues the global step of its checkpoint (what the interrupted part wrote after it is purged)
    writer = open_writer(run.path / "tensorboard", None if state is None else int(state["strategy"]["iteration"]))
    if state is None:
        log_config(writer, config, METRIC_NOTES)
    names = list(objectives()[b.name])
    progress: Dict[str, Any] = {"hv_matrix": [], "fronts": [], "elapsed": 0.0, "train_s": []}
    start = 0
    resumed = (state or {}).get("next_task", 0) * cfg.train.iterations  # iterations done before this process
    meter = RunProgress(b.n_tasks, cfg.train.iterations, done=resumed, enabled=cfg.progress)
    try:
        if state is not None:
            check_same_build(state.get("built"), built, run.path)
            start = _restore(state, strategy, monitor)
            progress = {k: state[k] for k in progress}
            run.log.say(f"resuming {run.path} after task {start - 1} of {b.n_tasks}")
        budget.begin_units()
        own_plugins = list(strategy.plugins)  # the output regularizer's plugin first, then Avalanche's own
        for t in range(start, b.n_tasks):
            strategy.plugins = own_plugins + [_LossRecorder(monitor, writer, t), ProgressPlugin(meter)]
            t0 = time.perf_counter()
            strategy.train_task(t, tasks[t][0], steps=cfg.train.iterations)
            train_s = time.perf_counter() - t0
            fronts = [strategy.eval_task(j, tasks[j][1], rays).tolist() for j in range(t + 1)]
            row = [hypervolume(np.asarray(f), ref) for f in fronts]
            progress["hv_matrix"].append(row + [None] * (b.n_tasks - t - 1))
            progress["fronts"].append(fronts)
            progress["train_s"].append(train_s)
            progress["elapsed"] += time.perf_counter() - t0
            for j, hv in enumerate(row):
                writer.add_scalar(f"hypervolume/task_{j}", hv, t)
            writer.add_scalar("hypervolume/mean_trained_tasks", float(np.mean(row)), t)
            _log_hv_forgetting(writer, progress["hv_matrix"], t)
            writer.add_figure("pareto_cl/fronts", fronts_figure(progress["fronts"], names, ref), t)  # closes it
            writer.flush()
            run.log.say(f"after task {t}: HV per task [{', '.join(f'{v:.4f}' for v in row)}] (ref {ref}); "
                        f"train {train_s:.2f} s")
            budget.lap()
            save_checkpoint(run.checkpoint, {
                "kind": KIND, "config": config, "built": built, "strategy": strategy.state_dict(), "next_task": t + 1,
                "rng": rng_state(), "losses": monitor.state_dict(), **progress, "unit_s": list(budget.durations),
            })
            budget.check(done=t + 1, total=b.n_tasks, folder=run.path)
        meter.close()
        warnings = run.divergence_warnings(monitor, cfg)
        _figures(writer, run.path, progress["hv_matrix"], progress["fronts"], names, ref)
        health = HealthLog(emit=False)  # the run's log says each finding once (health_section)
        notes = []
        for t in range(b.n_tasks):
            if (note := zero_hypervolume_note(progress["fronts"][t][t], ref, names, f"task {t} right after training it")):
                notes.append(note)
                health.report("hypervolume_zero", f"task {t}", note, step=0, value=0.0)
        fallbacks, epo_rays = strategy.epo_fallbacks, strategy.epo_rays_solved
        if (epo := epo_fallback_message(fallbacks, epo_rays)) is not None:
            health.report("epo_fallbacks", "solver", epo, step=strategy.iteration, value=fallbacks / epo_rays)
        result = {
            **run.record(cfg, device, config, built, warnings),
            **summarize(progress["hv_matrix"], progress["fronts"], rays),
            "hypervolume_notes": notes,
            "ref_point": ref, "rays": rays.tolist(), "objectives": names,
            "wall_time_s": progress["elapsed"], "task_train_s": progress["train_s"],
            "params": {"hnet": strategy.hnet.inner.num_params, "task_embeddings": b.n_tasks * cfg.hnet.emb_dim},
            "data_note": images.info["note"],
            "data_sizes": {"train_per_task": len(train), "test_per_task": len(test)},
            "health": run.health_section(health, writer),
        }
        result["summary"] = run_summary(KIND, result, run.path)
        earlier = [v for v in result["hv_forgetting_relative"][:-1] if v is not None]
        log_hparams(writer, config, {"hypervolume": result["hypervolume"], "uniformity_mean": result["uniformity_mean"],
                                     "hv_forgetting_relative_mean": float(np.mean(earlier)) if earlier else 0.0,
                                     "wall_time_s": progress["elapsed"]}, b.n_tasks - 1)
        write_json(run.metrics, result, overwrite=False)
        run.log.say(f"final HV per task {np.round(result['hv_final'], 4).tolist()}, just after "
                    f"{np.round(result['hv_just_after'], 4).tolist()}")
        run.log.note(result["summary"]["line"])
        return result
    finally:
        meter.close()
        writer.close()


def summarize(hv_matrix: List[List[Optional[float]]], fronts: List[List[List[List[float]]]],
              rays: np.ndarray) -> Dict[str, Any]:
    """HV right after each task and after the last, relative HV forgetting ``(just - final) / just``
    (None where the front right after training dominated nothing below the reference point), the mean
    final HV (``hypervolume``: what a sweep maximises) and the fronts before and after."""
    n = len(hv_matrix)
    just = [hv_matrix[t][t] for t in range(n)]
    final = [hv_matrix[-1][t] for t in range(n)]
    forgetting = [(a - f) / a if a > 0 else None for a, f in zip(just, final)]
    unif = [float(np.nanmean(uniformity(np.asarray(f), rays))) for f in fronts[-1]]
    return {
        "hv_matrix": hv_matrix, "hv_just_after": just, "hv_final": final, "hv_forgetting_relative": forgetting,
        "hypervolume": float(np.mean(final)), "uniformity_mean": float(np.nanmean(unif)),
        "fronts_just_after": [fronts[t][t] for t in range(n)], "fronts_final": fronts[-1],
    }


def fronts_figure(fronts: List[List[List[List[float]]]], names: List[str], ref: Optional[List[float]] = None):
    """One panel per task trained so far (``fronts[t]``: the fronts after training task t): its test front
    right after learning it and after the last task trained, with both hypervolumes (against ``ref``,
    drawn as a black star) in the panel's title."""
    plt = pyplot()
    n = len(fronts)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.4, 3.7), squeeze=False)
    for t, ax in enumerate(axes[0]):
        before, after = np.asarray(fronts[t][t]), np.asarray(fronts[-1][t])
        ax.plot(before[:, 0], before[:, 1], "o-", ms=3, c="tab:blue", label="just after training it")
        ax.plot(after[:, 0], after[:, 1], "x--", ms=3, c="tab:red", label=f"after task {n - 1}")
        title = f"task {t}"
        if ref is not None:
            ax.scatter([ref[0]], [ref[1]], s=80, marker="*", c="k", label="HV reference point")
            title += f"\nHV {hypervolume(before, ref):.4f} -> {hypervolume(after, ref):.4f}"
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(f"{names[0]} (lower is better)")
        if t == 0:
            ax.set_ylabel(f"{names[1]} (lower is better)")
            ax.legend(fontsize=6)
    where = "" if ref is None else f"; HV reference point {[round(v, 4) for v in ref]}"
    fig.suptitle(f"test fronts per task (evaluation rays), just after training it and after task {n - 1}{where}",
                 fontsize=8)
    fig.tight_layout()
    return fig


def _log_hv_forgetting(writer: SummaryWriter, hv_matrix: List[List[Optional[float]]], t: int) -> None:
    """After task ``t``: each earlier task's relative HV forgetting ``(HV[j, j] - HV[t, j]) / HV[j, j]`` (none
    where its front right after training dominated nothing below the reference point) and their mean."""
    drops = {j: (hv_matrix[j][j] - hv_matrix[t][j]) / hv_matrix[j][j] for j in range(t) if (hv_matrix[j][j] or 0) > 0}
    for j, drop in drops.items():
        writer.add_scalar(f"hypervolume_forgetting/task_{j}", drop, t)
    if drops:
        writer.add_scalar("hypervolume_forgetting/mean_earlier_tasks", float(np.mean(list(drops.values()))), t)


def _figures(writer: SummaryWriter, folder: Path, hv_matrix: List[List[Optional[float]]],
             fronts: List[List[List[List[float]]]], names: List[str], ref: List[float]) -> None:
    """HV matrix, HV over time and the fronts as PNG; the first two also as TensorBoard images (the fronts
    figure went there after every task)."""
    data = np.array([[np.nan if v is None else v for v in row] for row in hv_matrix], dtype=float)
    title = f"continual Pareto run {folder.name} (HV reference point {[round(v, 4) for v in ref]})"
    figures = {"hypervolume_matrix": matrix_figure(data, "hypervolume", title),
               "hypervolume_over_time": forgetting_figure(data, "hypervolume", title),
               "fronts": fronts_figure(fronts, names, ref)}
    for tag, fig in figures.items():
        fig.savefig(folder / f"{tag}.png", dpi=100)
        if tag == "fronts":
            pyplot().close(fig)
        else:
            writer.add_figure(f"pareto_cl/{tag}", fig, len(hv_matrix) - 1)  # closes the figure
