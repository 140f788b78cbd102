"""Runs a continual-learning benchmark with the hypernetwork strategy and reports it.

After every experience: evaluation on all test experiences (one row of the result matrix),
TensorBoard scalars (per-task score, average, forgetting, BWT), and a checkpoint; with
``resume=true`` a run continues after its last finished experience and ends with the same
metrics as an uninterrupted run with the same seed, and refuses a changed configuration (see
:data:`benchmarks.configuration.config.RESUME_SAFE_KEYS`). The run folder is locked while the run lives
(:mod:`benchmarks.runners.run_dir`); a finished run's ``metrics.json`` is never rewritten. A task whose
training loss ends far above where it began is flagged (``"diverged"``, ``"warnings"``).
"""
from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.logging import TensorboardLogger, TextLogger
from avalanche.training.plugins import EvaluationPlugin
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from strategies.avalanche_metrics import mse_metrics
from strategies.hnet_cl import HypernetworkStrategy

from benchmarks.runners.cl_figures import forgetting_figure, matrix_figure
from benchmarks.runners.budget import TimeBudget
from benchmarks.runners.checkpoint import check_same_build, rng_state, save_checkpoint, set_rng_state
from benchmarks.runners.composition import (build_cl_model_from_config, build_cl_strategy, built_description,
                                            seed_everything)
from benchmarks.runners.progress import RunProgress
from benchmarks.data.registry import get_benchmark
from benchmarks.runners.run_dir import RunFolder, run_in_folder
from benchmarks.runners.run_records import LossMonitor, peak_memory_mb, pick_device, run_summary, write_json
from benchmarks.runners.tb_logging import log_config, log_hparams, open_writer
from cl_moo import cl_summary

KIND = "continual"
REQUIRED = ("strategy", "matrix", "next_experience", "elapsed", "rng")
CE_BOUND = 100.0  # a cross-entropy this large means confidently wrong predictions: training diverged
# the config keys the training-health warnings name as the settings to change
HEALTH_NAMES = {"lr": "train.lr", "emb_std": "hnet.emb_std", "beta": "strategy.beta",
                "lookahead": "strategy.lookahead=true", "iterations": "train.iterations"}


def make_benchmark(cfg: DictConfig):
    """``(Avalanche benchmark, info)`` of ``cfg.benchmark``, from its :mod:`benchmarks.data.registry` entry's loader."""
    return get_benchmark(cfg.benchmark.name, KIND).load(cfg)


class IterationLogger(SupervisedPlugin):
    """Per-iteration task and regularizer losses to TensorBoard, and the run's progress (tasks x iterations)."""

    def __init__(self, writer: SummaryWriter, progress: Optional[RunProgress] = None, every: int = 10) -> None:
        super().__init__()
        self.writer, self.progress, self.every = writer, progress, every

    def after_training_iteration(self, strategy, **kwargs):
        step = strategy.total_iterations
        if step % self.every != 0:  # the losses are read from the device every `every` steps only
            if self.progress is not None:
                self.progress.update()
            return
        loss, reg = strategy.last_task_loss, strategy.last_reg_loss
        self.writer.add_scalar("train/task_loss", loss, step)
        self.writer.add_scalar("train/regularizer", reg, step)
        if self.progress is not None:
            self.progress.update(loss=loss, reg=reg)


class AvalancheTensorboard(TensorboardLogger):
    """Avalanche's TensorBoard logger (its metrics over ``strategy.clock.train_iterations``) whose writer, in a
    resumed run, purges what the interrupted part wrote after the checkpoint (``purge_step``)."""

    def __init__(self, folder: Path, purge_step: Optional[int] = None) -> None:
        self.purge_step = purge_step
        super().__init__(str(folder))

    def _make_writer(self, tb_log_dir, filename_suffix):
        writer = SummaryWriter(tb_log_dir, filename_suffix=filename_suffix,
                               purge_step=getattr(self, "purge_step", None))
        weakref.finalize(self, SummaryWriter.close, writer)  # as Avalanche's: closed when the logger goes
        return writer

    def log_metrics(self, metric_values) -> None:
        super().log_metrics(metric_values)
        self.writer.flush()  # on disk when a kill ends the run (the metrics come once per evaluation)


# what the continual runner's TensorBoard scalars mean (the text tab "config" says it too; README: TensorBoard)
METRIC_NOTES = (
    "R[i, j]: the score on task j after training task i (T tasks so far). "
    "`forgetting/average` = mean over j < T-1 of (best R[i, j] for i < T-1) - R[T-1, j] (Chaudhry et al. 2018; "
    "for MSE the rise over the lowest). `bwt` = mean over j < T-1 of R[T-1, j] - R[j, j] (Lopez-Paz & Ranzato "
    "2017; for MSE with the sign flipped). Avalanche's own forgetting (R[j, j] - R[T-1, j], i.e. -bwt) is not "
    "logged: it restarts after a resume. `accuracy/*`, `mse/*`, `forgetting/*`, `bwt`, `time/*`: step = the "
    "task index i; `train/*`, `health/*` and tensorboard/avalanche: step = the global training iteration, "
    "continued across resumes."
)


class LossRecorder(SupervisedPlugin):
    """Feeds every iteration's task loss to a :class:`LossMonitor`, one segment per task; the values are
    read from the device ``every`` iterations and at the end of each task (no host sync per step)."""

    def __init__(self, monitor: LossMonitor, every: int = 50) -> None:
        super().__init__()
        self.monitor, self.every = monitor, every
        self.pending: List[Tuple[torch.Tensor, Union[torch.Tensor, float]]] = []

    def after_training_iteration(self, strategy, **kwargs):
        self.pending.append(strategy.last_loss_tensors)  # (loss on the device, penalty: a tensor, or 0.0 without one)
        if len(self.pending) >= self.every:
            self.flush(strategy)

    def after_training_exp(self, strategy, **kwargs):
        self.flush(strategy)

    def flush(self, strategy) -> None:
        if not self.pending:
            return
        losses = torch.stack([loss.reshape(()) for loss, _ in self.pending]).tolist()
        on_device = [reg.reshape(()) for _, reg in self.pending if isinstance(reg, torch.Tensor)]
        read = iter(torch.stack(on_device).tolist() if on_device else [])  # one read for all the penalties
        regs = [next(read) if isinstance(reg, torch.Tensor) else reg for _, reg in self.pending]
        self.pending = []
        for loss, reg in zip(losses, regs):  # as strategy.last_task_loss reads it: loss minus penalty
            self.monitor.record(f"task {strategy.current_task}", loss - reg)


def _scores(results: Dict[str, float], key: str, n_tasks: int) -> List[float]:
    """Per-experience scores from an Avalanche results dict (``<key>/eval_phase/test_stream/TaskXXX/ExpYYY``)."""
    out = [float("nan")] * n_tasks
    for name, value in results.items():
        if name.startswith(key + "/eval_phase/test_stream") and "/Exp" in name:
            out[int(name.rsplit("Exp", 1)[1])] = float(value)
    return out


def run_cl(cfg: DictConfig) -> Dict[str, Any]:
    """Trains and evaluates in a locked run folder; returns (and writes) the metrics dict. With
    ``resume=true``: continues an interrupted run, or returns a finished run's metrics untouched."""
    return run_in_folder(cfg, KIND, REQUIRED, _train_and_report)


def _make_strategy(cfg: DictConfig, model, device: torch.device, run: RunFolder, writer: SummaryWriter,
                   monitor: LossMonitor, classification: bool,
                   progress: Optional[RunProgress] = None, resume_step: Optional[int] = None) -> HypernetworkStrategy:
    # no Avalanche forgetting/BWT (nor our MSE forgetting in Avalanche's form): ours (forgetting/average, bwt) are
    # the run's one definition, and Avalanche's would restart after a resume (its "just after training" values are
    # not in the checkpoint); see METRIC_NOTES
    metrics = [accuracy_metrics(experience=True, stream=True), loss_metrics(experience=True)] if classification \
        else mse_metrics(forgetting=False)
    avalanche_tb = AvalancheTensorboard(run.path / "tensorboard" / "avalanche",
                                        purge_step=None if resume_step is None else resume_step + 1)
    evaluator = EvaluationPlugin(*metrics, loggers=[avalanche_tb, TextLogger(run.log.file)])
    strategy = build_cl_strategy(cfg, model, device, classification=classification, evaluator=evaluator,
                                 plugins=[IterationLogger(writer, progress), LossRecorder(monitor)])
    assert strategy.health is not None
    strategy.health.on_scalar = writer.add_scalar  # health/* curves in TensorBoard
    strategy.health.names.update(HEALTH_NAMES)
    strategy.health.log.emit = False  # each finding goes to the run's log (and stderr) once, as it happens
    strategy.health.log.on_finding = lambda message: run.log.warn(f"training health: {message}")
    return strategy


def _restore(state: Dict[str, Any], strategy: HypernetworkStrategy, monitor: LossMonitor, built: Dict[str, Any],
             run: RunFolder) -> Dict[str, Any]:
    """Loads a checkpoint into the strategy, the loss record and the global RNGs; returns the progress."""
    check_same_build(state.get("built"), built, run.path)
    strategy.load_state_dict(state["strategy"])  # with Avalanche's clock (the step of its TensorBoard metrics)
    if state["strategy"].get("clock") is None:  # a checkpoint written before the strategy's state held the clock
        strategy.clock.train_iterations = strategy.clock.total_iterations = strategy.total_iterations
        strategy.clock.train_exp_counter = int(state["next_experience"])
    if "losses" in state:
        monitor.load_state_dict(state["losses"])
    set_rng_state(state["rng"])
    run.log.say(f"resuming {run.path} after experience {state['next_experience'] - 1}")
    return {key: state[key] for key in ("matrix", "next_experience", "elapsed", "train_s", "eval_s") if key in state}


def _log_scalars(writer: SummaryWriter, name: str, row: List[float], summary: Dict[str, float], i: int) -> None:
    for j in range(i + 1):
        if row[j] is not None:  # None: not evaluated after this task (train.eval_tasks=current)
            writer.add_scalar(f"{name}/task{j}", row[j], i)
    writer.add_scalar(f"{name}/average", summary["average_final"], i)
    if summary["forgetting_measured"]:
        writer.add_scalar("forgetting/average", summary["average_forgetting"], i)
        writer.add_scalar("bwt", summary["bwt"], i)
    writer.flush()


def _train_experience(strategy: HypernetworkStrategy, benchmark, i: int, key: str,
                      eval_tasks: str) -> Tuple[List[float], float, float]:
    """Trains experience ``i``, then evaluates every test experience (``eval_tasks="all"``) or only
    experience ``i`` (``"current"``; every one after the last): (row of scores, None where not
    evaluated; training seconds; evaluation seconds)."""
    n_tasks = len(benchmark.test_stream)
    t0 = time.perf_counter()
    strategy.train(benchmark.train_stream[i])
    _synchronize(strategy.device)
    t1 = time.perf_counter()
    stream = benchmark.test_stream if eval_tasks == "all" or i == n_tasks - 1 else benchmark.test_stream[i:i + 1]
    results = strategy.eval(stream)
    row = _scores(results, key, n_tasks)
    evaluated = {exp.current_experience for exp in stream}  # Avalanche's results also hold earlier evaluations
    row = [v if j in evaluated else None for j, v in enumerate(row)]
    return row, t1 - t0, time.perf_counter() - t1


def _synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so that a timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_and_report(cfg: DictConfig, run: RunFolder, config: Dict[str, Any],
                      state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Builds everything, trains the remaining experiences (checkpoint after each), writes metrics.json."""
    # counts from here (building and loading included); the tasks of the run's earlier processes are estimates too
    budget = TimeBudget(cfg.train.get("budget_s"), unit="task", recorded_s=(state or {}).get("unit_s", []))
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    benchmark, info = make_benchmark(cfg)
    classification = get_benchmark(cfg.benchmark.name).classification  # metric "accuracy"; "mse": regression
    model = build_cl_model_from_config(cfg, info)
    built = built_description(model.hnet, model.target.module)
    # a resumed run continues the global step of its checkpoint: what the interrupted part wrote after it is purged
    resume_step = None if state is None else int(state["strategy"]["total_iterations"])
    writer = open_writer(run.path / "tensorboard", resume_step)
    if state is None:
        log_config(writer, config, METRIC_NOTES)
    monitor = LossMonitor(bound=CE_BOUND if classification else None)
    n_tasks = len(benchmark.train_stream)
    resumed = (state or {}).get("next_experience", 0) * cfg.train.iterations  # iterations done before this process
    meter = RunProgress(n_tasks, cfg.train.iterations, done=resumed, enabled=cfg.progress)
    try:
        strategy = _make_strategy(cfg, model, device, run, writer, monitor, classification, meter, resume_step)
        progress = {"matrix": [], "next_experience": 0, "elapsed": 0.0}
        if state is not None:
            progress = _restore(state, strategy, monitor, built, run)
        matrix, elapsed = progress["matrix"], progress["elapsed"]
        done = progress["next_experience"]  # a checkpoint from before per-task times were kept: None for those tasks
        times = {k: list(progress.get(k, [None] * done)) for k in ("train_s", "eval_s")}
        key, name = ("Top1_Acc_Exp", "accuracy") if classification else ("MSE_Exp", "mse")
        budget.begin_units()
        for i in range(progress["next_experience"], n_tasks):
            row, train_s, eval_s = _train_experience(strategy, benchmark, i, key, cfg.train.eval_tasks)
            elapsed += train_s + eval_s
            times["train_s"].append(train_s)
            times["eval_s"].append(eval_s)
            matrix.append(row)
            summary = cl_summary(matrix, higher_is_better=classification)
            _log_scalars(writer, name, row, summary, i)
            writer.add_scalar("time/train_s_per_task", train_s, i)
            memory = peak_memory_mb(device)
            scores = ", ".join("-" if v is None else f"{v:.4f}" for v in row[: i + 1])
            run.log.say(f"after task {i}: {name} per task [{scores}], "
                        f"average {summary['average_final']:.4f}; train {train_s:.2f} s, eval {eval_s:.2f} s, "
                        + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
            budget.lap()
            save_checkpoint(run.checkpoint, {
                "kind": KIND, "config": config, "built": built, "strategy": strategy.state_dict(),
                "matrix": matrix, "next_experience": i + 1, "elapsed": elapsed, "rng": rng_state(),
                "losses": monitor.state_dict(), **times, "unit_s": list(budget.durations),
            })
            budget.check(done=i + 1, total=n_tasks, folder=run.path)
        meter.close()
        warnings = run.divergence_warnings(monitor, cfg)
        health = run.health_section(strategy.health_log, writer, announced=True)
        _figures(writer, run.path, matrix, name)
        result = {**run.record(cfg, device, config, built, warnings),
                  **_result(model, matrix, classification, elapsed, info),
                  "task_train_s": times["train_s"], "task_eval_s": times["eval_s"], "health": health}
        result["summary"] = run_summary(KIND, result, run.path)
        log_hparams(writer, config, {f"average_{name}": result["average_final"],
                                     "average_forgetting": result["average_forgetting"], "bwt": result["bwt"],
                                     "wall_time_s": elapsed}, len(matrix) - 1)
        write_json(run.metrics, result, overwrite=False)
        run.log.note(result["summary"]["line"])
        return result
    finally:
        meter.close()
        writer.close()


def _figures(writer: SummaryWriter, folder: Path, matrix: List[List[float]], score: str) -> None:
    """Accuracy (or MSE) matrix heatmap and per-task score over time, as PNG and TensorBoard images."""
    data = np.array(matrix, dtype=float)
    for tag, make in (("matrix", matrix_figure), ("over_time", forgetting_figure)):
        fig = make(data, score, f"continual run {folder.name}")
        fig.savefig(folder / f"{score}_{tag}.png", dpi=100)
        writer.add_figure(f"{score}/{tag}", fig, len(matrix) - 1)  # closes the figure


def _result(model, matrix: List[List[float]], classification: bool, elapsed: float,
            info: Dict[str, Any]) -> Dict[str, Any]:
    """The continual-learning part of a finished run's metrics dict (``RunFolder.record`` has the rest)."""
    summary = cl_summary(matrix, higher_is_better=classification)
    hnet = model.hnet
    return {
        "score": "accuracy" if classification else "mse",
        "matrix": matrix, **summary,
        "wall_time_s": elapsed,
        "params": {"hnet_generator": hnet.num_generator_params, "hnet_theta0": hnet.num_params - hnet.num_generator_params,
                   "task_embeddings": model.num_tasks * model.emb_dim, "target_weights": hnet.num_weights,
                   "compression_ratio": hnet.compression_ratio},
        "data_note": info.get("fallback"),
    }
