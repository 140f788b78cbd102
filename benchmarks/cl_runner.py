"""Runs a continual-learning benchmark with the hypernetwork strategy and reports it.

After every experience: evaluation on all test experiences (one row of the result matrix),
TensorBoard scalars (per-task score, average, forgetting, BWT), and a checkpoint; with
``resume=true`` a run continues after its last finished experience and ends with the same
metrics as an uninterrupted run with the same seed.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, bwt_metrics, forgetting_metrics, loss_metrics
from avalanche.logging import TensorboardLogger, TextLogger
from avalanche.training.plugins import EvaluationPlugin
from omegaconf import DictConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from strategies.avalanche_metrics import mse_metrics
from strategies.hnet_cl import HypernetworkStrategy

from .builders import build_cl_model_from_config, built_description, seed_everything
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .pmnist import avalanche_permuted_mnist, permuted_mnist
from .regression import regression_1d
from .reporting import config_dict, peak_memory_mb, pick_device, run_folder, write_json
from cl_moo import cl_summary

CHECKPOINT = "checkpoint.pt"


def make_benchmark(cfg: DictConfig):
    b = cfg.benchmark
    if b.name == "pmnist" and b.get("builder", "tensors") == "avalanche":
        return avalanche_permuted_mnist(b.n_tasks, root=cfg.data.root, seed=cfg.seed, verify=cfg.data.verify)
    if b.name == "pmnist":
        return permuted_mnist(
            b.n_tasks, root=cfg.data.root, seed=cfg.seed, pad_to=b.pad_to,
            train_per_task=b.train_per_task, test_per_task=b.test_per_task, download=cfg.data.download,
            verify=cfg.data.verify,
        )
    if b.name == "regression":
        return regression_1d(n_train=b.n_train, n_test=b.n_test, noise_std=b.noise_std, seed=cfg.seed)
    raise ValueError(f"benchmark {b.name!r} is not a continual-learning benchmark")


class IterationLogger(SupervisedPlugin):
    """Per-iteration task and regularizer losses to TensorBoard, and a progress bar."""

    def __init__(self, writer: SummaryWriter, progress: bool, every: int = 10) -> None:
        super().__init__()
        self.writer, self.progress, self.every, self.bar = writer, progress, every, None

    def before_training_exp(self, strategy, **kwargs):
        if self.progress:
            from tqdm import tqdm

            total = strategy.train_iterations or strategy.train_epochs * len(strategy.dataloader)
            self.bar = tqdm(total=total, desc=f"task {strategy.current_task}", leave=False)

    def after_training_iteration(self, strategy, **kwargs):
        step = strategy.total_iterations
        if step % self.every == 0:
            self.writer.add_scalar("train/task_loss", strategy.last_task_loss, step)
            self.writer.add_scalar("train/regularizer", strategy.last_reg_loss, step)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{strategy.last_task_loss:.4f}", reg=f"{strategy.last_reg_loss:.4f}")

    def after_training_exp(self, strategy, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _scores(results: Dict[str, float], key: str, n_tasks: int) -> List[float]:
    """Per-experience scores from an Avalanche results dict (``<key>/eval_phase/test_stream/TaskXXX/ExpYYY``)."""
    out = [float("nan")] * n_tasks
    for name, value in results.items():
        if name.startswith(key + "/eval_phase/test_stream") and "/Exp" in name:
            out[int(name.rsplit("Exp", 1)[1])] = float(value)
    return out


def run_cl(cfg: DictConfig) -> Dict[str, Any]:
    """Trains and evaluates; returns (and writes) the metrics dict."""
    out_dir = run_folder(cfg)
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists() and not cfg.resume:
        raise FileExistsError(
            f"{out_dir} already holds a run ({CHECKPOINT}); pass resume=true to continue it, "
            "or run_dir=<new folder> to start another"
        )
    if cfg.resume and not ckpt_path.exists():
        raise FileNotFoundError(f"resume=true but {ckpt_path} does not exist; drop resume=true to start a new run")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    benchmark, info = make_benchmark(cfg)
    classification = cfg.benchmark.name != "regression"
    model = build_cl_model_from_config(cfg, info)
    tb_dir = out_dir / "tensorboard"
    writer = SummaryWriter(str(tb_dir))
    metrics = (
        [accuracy_metrics(experience=True, stream=True), forgetting_metrics(experience=True, stream=True),
         bwt_metrics(experience=True, stream=True), loss_metrics(experience=True)]
        if classification else [mse_metrics()]
    )
    evaluator = EvaluationPlugin(
        *metrics,
        loggers=[TensorboardLogger(str(tb_dir / "avalanche")), TextLogger(open(out_dir / "log.txt", "a"))],
    )
    s = cfg.strategy
    strategy = HypernetworkStrategy(
        model=model, lr=cfg.train.lr, beta=s.beta, reg_targets=s.reg_targets, reg_subset=s.reg_subset,
        lookahead=s.lookahead, task_inference=s.task_inference, train_iterations=cfg.train.iterations,
        criterion=nn.CrossEntropyLoss() if classification else nn.MSELoss(),
        train_mb_size=cfg.train.batch_size, eval_mb_size=cfg.train.eval_batch_size, device=device,
        evaluator=evaluator, plugins=[IterationLogger(writer, cfg.progress)],
    )
    n_tasks = len(benchmark.train_stream)
    matrix: List[List[float]] = []
    start, elapsed = 0, 0.0
    if cfg.resume:
        state = load_checkpoint(ckpt_path)
        strategy.load_cl_state_dict(state["strategy"])
        matrix, start, elapsed = state["matrix"], state["next_experience"], state["elapsed"]
        set_rng_state(state["rng"])
        print(f"resuming {out_dir} after experience {start - 1}")
    key = "Top1_Acc_Exp" if classification else "MSE_Exp"
    for i in range(start, n_tasks):
        t0 = time.perf_counter()
        strategy.train(benchmark.train_stream[i])
        results = strategy.eval(benchmark.test_stream)
        elapsed += time.perf_counter() - t0
        row = _scores(results, key, n_tasks)
        matrix.append(row)
        summary = cl_summary(matrix, higher_is_better=classification)
        name = "accuracy" if classification else "mse"
        for j in range(i + 1):
            writer.add_scalar(f"{name}/task{j}", row[j], i)
        writer.add_scalar(f"{name}/average", summary["average_final"], i)
        writer.add_scalar("forgetting/average", summary["average_forgetting"], i)
        writer.add_scalar("bwt", summary["bwt"], i)
        writer.flush()
        save_checkpoint(ckpt_path, {
            "strategy": strategy.cl_state_dict(), "matrix": matrix, "next_experience": i + 1,
            "elapsed": elapsed, "rng": rng_state(),
        })
        print(f"after task {i}: {name} per task {[round(v, 4) for v in row[: i + 1]]}, average {summary['average_final']:.4f}")
    summary = cl_summary(matrix, higher_is_better=classification)
    hnet = model.hnet
    result = {
        "benchmark": cfg.benchmark.name, "strategy": cfg.strategy.name, "preset": cfg.preset, "seed": cfg.seed,
        "score": "accuracy" if classification else "mse",
        "matrix": matrix, **summary,
        "wall_time_s": elapsed, "device": str(device),
        "params": {"hnet_generator": hnet.num_generator_params, "hnet_theta0": hnet.num_params - hnet.num_generator_params,
                   "task_embeddings": model.num_tasks * model.emb_dim, "target_weights": hnet.num_weights,
                   "compression_ratio": hnet.compression_ratio},
        **peak_memory_mb(device),
        "data_note": info.get("fallback"),
        "tensorboard": str(tb_dir),
        "config": config_dict(cfg),
        "built": built_description(hnet, model.target.module, cfg),
    }
    write_json(out_dir / "metrics.json", result)
    writer.close()
    return result
