"""The composition root: a run's config -> target network, hypernetwork, strategy.

Whatever is built from a run config (:func:`benchmarks.configuration.config.load_config`) is built here and
nowhere else: the target MLP, the hypernetwork and the strategy of the three runners
(:mod:`benchmarks.runners.cl_runner`, :mod:`benchmarks.runners.pareto_runner`, :mod:`benchmarks.runners.continual_pareto_runner`) and
of the scripts that start from a run config (:mod:`benchmarks.experiments.cl_mip_bench`,
:mod:`benchmarks.experiments.reproduce`). So every ``target.*``, ``hnet.*``, ``strategy.*`` and ``train.*`` key
a strategy reads reaches it, and what a run records as built (``hnet.build_options``) is what it
trained. The runners add only their run-time wiring (device, evaluator, logging plugins).

Not here: the fixed targets of a benchmark (PHN's LeNet for Multi-MNIST, in
:mod:`benchmarks.runners.pareto_problems`), and the experiment scripts that build a strategy from their own
command-line options or constants, not from a run config (:mod:`benchmarks.experiments.multimnist_bench`,
:mod:`benchmarks.experiments.speed`, :mod:`benchmarks.experiments.continual_pareto_bench`, :mod:`benchmarks.experiments.toy_lin2019`,
:mod:`benchmarks.experiments.cl_fast_start`, and :mod:`benchmarks.experiments.defaults_matrix`, whose ``api_*`` rows call
the library's constructors with their defaults on purpose): they call the library as a user would.
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cl_moo import HypernetworkOptions, mlp

RELU_LIKE = ("relu", "leaky_relu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_mlp(n_in: int, hidden: List[int], n_out: int, activation: str) -> nn.Sequential:
    """Target MLP: hidden layers (Linear + activation) and a linear output layer."""
    return nn.Sequential(*mlp(n_in, hidden, activation), nn.Linear(hidden[-1] if hidden else n_in, n_out))


def make_target(cfg: DictConfig, n_in: int, n_out: int) -> nn.Module:
    """The target network of ``cfg.target`` (an MLP)."""
    return make_mlp(n_in, list(cfg.target.hidden), n_out, cfg.target.activation)


def hypernetwork_options(cfg: DictConfig) -> HypernetworkOptions:
    """The :class:`cl_moo.HypernetworkOptions` of ``cfg.hnet`` and ``cfg.target``, for every strategy.

    ``hnet.generator``: a name in :data:`cl_moo.builder.GENERATORS`; null (and configs recorded before
    the key) keeps the rule of ``hnet.chunked``: ``"chunked"``, else ``"mlp"`` (one head per tensor), named
    in the options so no strategy's own default generator applies. ``chunk_size`` is set for the chunked
    generator only; ``target_gain`` is 2 for a ReLU-like target, else 1 (Chang et al. 2020)."""
    h = cfg.hnet
    generator = h.get("generator")
    chunked = h.chunked if generator is None else generator == "chunked"
    return HypernetworkOptions(
        generator=generator if generator is not None else "chunked" if chunked else "mlp",
        chunk_size=h.chunk_size if chunked else None,
        chunk_emb_dim=h.chunk_emb_dim,
        hidden=tuple(h.hidden),
        activation=h.activation,
        last_activation=h.last_activation,
        mip=h.mip,
        init=h.init,
        target_gain=2.0 if cfg.target.activation in RELU_LIKE else 1.0,
    )


def solver_options(cfg: DictConfig) -> Dict[str, Any]:
    """``strategy.solver_options`` as a plain dict (the solver's constructor keywords; empty: its defaults)."""
    options = cfg.strategy.get("solver_options")
    return {} if options is None else dict(OmegaConf.to_container(options, resolve=True))


def build_cl_model_from_config(cfg: DictConfig, info: Dict[str, Any]):
    """Target MLP and task-conditioned hypernetwork for a continual benchmark's ``info``."""
    from strategies.cl_model import build_cl_model

    n_out = info.get("num_classes", info.get("output_size", 1))
    module = make_target(cfg, info["input_size"], n_out)
    if "image_shape" in info:  # image tensors (Avalanche's PermutedMNIST): flatten first
        module = nn.Sequential(nn.Flatten(), *module)
    model = build_cl_model(module, hnet_options=hypernetwork_options(cfg), emb_dim=cfg.hnet.emb_dim,
                           emb_std=float(cfg.hnet.emb_std), seed=cfg.seed)
    model.hnet.build_options.update({"emb_dim": cfg.hnet.emb_dim, "emb_init": model.emb_init,
                                     "emb_std": model.emb_std, "emb_seed": model.seed})
    return model


def build_cl_strategy(cfg: DictConfig, model, device: Union[str, torch.device], *, classification: bool,
                      evaluator, plugins: Optional[Sequence] = None):
    """The continual strategy (:class:`strategies.HypernetworkStrategy`) of ``cfg.strategy`` and ``cfg.train``
    for the ``model`` of :func:`build_cl_model_from_config`: cross-entropy for a classification benchmark,
    else MSE. ``evaluator`` and ``plugins``: the caller's evaluation and logging (``evaluator=None``: none).
    ``train.compile``: ``compile=`` of the strategy (a run config recorded before the key: false)."""
    from strategies.hnet_cl import HypernetworkStrategy

    s = cfg.strategy
    return HypernetworkStrategy(
        model=model, lr=cfg.train.lr, beta=s.beta, reg_targets=s.reg_targets, reg_subset=s.reg_subset,
        lookahead=s.lookahead, task_inference=s.task_inference, train_iterations=cfg.train.iterations,
        criterion=nn.CrossEntropyLoss() if classification else nn.MSELoss(),
        train_mb_size=cfg.train.batch_size, eval_mb_size=cfg.train.eval_batch_size, device=device,
        evaluator=evaluator, plugins=plugins, compile=bool(cfg.train.get("compile", False)),
    )


def build_phn_from_config(cfg: DictConfig, target: nn.Module, losses, device: torch.device):
    """Pareto hypernetwork strategy for a Pareto benchmark's target network and losses."""
    from strategies.phn import ParetoHypernetworkStrategy

    s = cfg.strategy
    return ParetoHypernetworkStrategy(
        target=target, losses=losses, hnet_options=hypernetwork_options(cfg),
        solver=s.solver, solver_options=solver_options(cfg), alpha=float(s.alpha), rays_per_step=s.rays_per_step,
        lr=cfg.train.lr,
        train_epochs=cfg.train.epochs, train_mb_size=cfg.train.batch_size, device=device,
    )


def build_continual_pareto_strategy(cfg: DictConfig, device: torch.device):
    """The continual Pareto strategy of ``cfg`` (MLP target with two heads from ``target.hidden``)."""
    from strategies.phn_cl import ContinualParetoStrategy

    from benchmarks.data.multimnist import LOSSES, MLPTwoHeads

    s = cfg.strategy
    return ContinualParetoStrategy(
        target=MLPTwoHeads(hidden=list(cfg.target.hidden)), losses=LOSSES, emb_dim=cfg.hnet.emb_dim,
        emb_std=float(s.emb_std), beta=float(s.beta), reg_rays=s.reg_rays, start=s.start,
        hnet_options=hypernetwork_options(cfg),
        solver=s.solver, solver_options=solver_options(cfg), alpha=float(s.alpha), rays_per_step=s.rays_per_step,
        lr=cfg.train.lr,
        train_mb_size=cfg.train.batch_size, eval_mb_size=cfg.train.eval_batch_size, seed=cfg.seed, device=device,
    )


def built_description(hnet, target_module: nn.Module) -> Dict[str, Any]:
    """What was built, for ``metrics.json``: the builder's options and the target's layers (an MLP's
    hidden widths and activation; any other module: its class and the out-features of its linear layers)."""
    linear = [m.out_features for m in target_module.modules() if isinstance(m, nn.Linear)]
    if not isinstance(target_module, nn.Sequential):
        return {"hnet": None if hnet is None else dict(hnet.build_options or {}),
                "target": {"class": type(target_module).__name__, "linear_out_features": linear}}
    return {"hnet": None if hnet is None else dict(hnet.build_options or {}), "target": {
        "hidden": linear[:-1],
        "activation": next((type(m).__name__ for m in target_module.modules()
                            if not isinstance(m, (nn.Linear, nn.Sequential, nn.Flatten))), None),
    }}
