"""The MIP paper's Bayesian-neural-network-on-MNIST setting, reduced for a CPU (shared by the MIP claims).

Gonzalez Ortiz et al., ICLR 2024, Sec. 5.1 and App. A.2: a hypernetwork ``h(gamma; omega) -> theta``
predicts the weights of a classifier ``f(x; theta)``; every training step draws the prior input
``gamma ~ N(0, I_d)`` and trains on a minibatch with cross entropy. The hypernetwork is fully connected
with LeakyReLU hidden layers of 16 and 128 units and a linear output (Sec. 5.2). The four variants of
the ablation (Sec. 6, Fig. 5b) switch MIP's two components, the input encoding
``E(gamma) = [cos(gamma pi/2), sin(gamma pi/2)]`` after a logistic (Sec. 4, App. B.3: normal inputs go
through a sigmoid first) and the residual output ``theta = theta_0 + Delta theta`` (Eq. 5), on and off.

Reductions (stated by the claims' ``SETTING``): the target is an MLP ``196-32-32-10`` on 2x2
average-pooled 14x14 images instead of the paper's LeNet variant with two convolutional layers, and the
hypernetworks are initialised by the library's default (hyperfan-in, Chang et al. 2020, with the head
calibrated on ``N(0, I_d)`` probes; MIP's ``theta_0`` drawn with the same variances) instead of Kaiming
fan-out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from benchmarks.data.pmnist import TEST_FILES, TRAIN_FILES, read_idx
from cl_moo import Hypernetwork, MLPHypernetwork, build_hypernetwork, init_hypernetwork, make_functional_target
from cl_moo.data import require_file
from cl_moo.target import FunctionalTarget

#: Variant name -> (MIP input encoding, MIP residual output); "mip" is the paper's MIP, both on.
VARIANTS: Dict[str, Tuple[bool, bool]] = {
    "default": (False, False),
    "mip": (True, True),
    "encoding_only": (True, False),
    "residual_only": (False, True),
}
#: Line colours of the variants in every MIP figure.
COLORS: Dict[str, str] = {
    "default": "tab:red",
    "mip": "tab:blue",
    "encoding_only": "tab:green",
    "residual_only": "tab:orange",
}
#: Markers and line styles, so that variants drawn on top of each other stay visible.
STYLES: Dict[str, Dict[str, object]] = {
    "default": {"marker": "o", "ls": "-"},
    "mip": {"marker": "s", "ls": "-", "ms": 8},
    "encoding_only": {"marker": "^", "ls": "--"},
    "residual_only": {"marker": "v", "ls": ":"},
}
OPTIMIZERS = ("adam", "sgd")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass(frozen=True)
class BNNSetting:
    """Sizes of the reduced setting (module docstring)."""

    cond_dim: int = 4
    target_hidden: Tuple[int, ...] = (32, 32)
    hnet_hidden: Tuple[int, ...] = (16, 128)
    activation: str = "leaky_relu"
    pool: int = 2
    batch_size: int = 128
    n_probe: int = 256

    def describe(self) -> Dict[str, object]:
        n_in = (28 // self.pool) ** 2
        return {
            "gamma_dim": self.cond_dim,
            "gamma_prior": "N(0, I_d), one draw per training step",
            "target": "-".join(str(w) for w in (n_in, *self.target_hidden, 10)) + " MLP, ReLU",
            "input": f"MNIST, {28 // self.pool}x{28 // self.pool} ({self.pool}x{self.pool} average pool), standardised",
            "hypernetwork_hidden": list(self.hnet_hidden),
            "hypernetwork_activation": self.activation,
            "hypernetwork_init": "library default: hyperfan_in, head calibrated on N(0, I_d) probes",
            "batch_size": self.batch_size,
        }


@dataclass
class MnistArrays:
    """Pooled, standardised MNIST images as float tensors ``(N, (28 / pool)^2)`` and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _pool(images: np.ndarray, pool: int) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if pool > 1:
        x = nn.functional.avg_pool2d(x, pool)
    return ((x - MNIST_MEAN) / MNIST_STD).flatten(1)


@lru_cache(maxsize=2)
def mnist(pool: int = 2) -> MnistArrays:
    """MNIST's official train and test splits from the data root (``$CL_MOO_DATA``), read and checked by
    :func:`benchmarks.data.pmnist.read_idx` (the files and checks of the PMNIST benchmark), pooled by
    ``pool`` and standardised. A missing or faulty file raises the library's error naming it."""
    if pool not in (1, 2, 4):
        raise ValueError(f"pool must be 1, 2 or 4 (a divisor of 28 giving square images), got {pool}")
    x_train, y_train = read_idx(*(require_file(f) for f in TRAIN_FILES))
    x_test, y_test = read_idx(*(require_file(f) for f in TEST_FILES))
    return MnistArrays(
        _pool(x_train, pool),
        torch.from_numpy(y_train.astype(np.int64)),
        _pool(x_test, pool),
        torch.from_numpy(y_test.astype(np.int64)),
    )


def make_target(n_in: int, hidden: Sequence[int], n_classes: int = 10) -> FunctionalTarget:
    """The primary network ``f(x; theta)``: Linear + ReLU per hidden width, a linear classifier last."""
    if not hidden or any(w < 1 for w in hidden):
        raise ValueError(f"target hidden widths must be a non-empty list of integers >= 1, got {list(hidden)}")
    layers: List[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_classes))
    return make_functional_target(nn.Sequential(*layers))


def build_variant(variant: str, target: FunctionalTarget, setting: BNNSetting, seed: int) -> Hypernetwork:
    """One hypernetwork of the ablation, initialised from ``seed``.

    ``default`` and ``mip`` come from :func:`cl_moo.build_hypernetwork` (``mip=False`` / ``True``);
    the single components from :class:`cl_moo.MLPHypernetwork` with one of ``mip_encoding`` /
    ``residual`` and :func:`cl_moo.init_hypernetwork`, the same two calls the builder makes. All get
    ``N(0, I_d)`` probe conditions (the training prior) for the initialisation.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    encoding, residual = VARIANTS[variant]
    torch.manual_seed(seed)
    probe = torch.randn(setting.n_probe, setting.cond_dim)
    if encoding == residual:
        return build_hypernetwork(
            target,
            setting.cond_dim,
            hidden=setting.hnet_hidden,
            activation=setting.activation,
            mip=encoding,
            input_range="unbounded",
            probe_conditions=probe,
        )
    hnet = MLPHypernetwork(
        target,
        setting.cond_dim,
        hidden=setting.hnet_hidden,
        activation=setting.activation,
        mip_encoding=encoding,
        residual=residual,
        input_range="unbounded",
    )
    return init_hypernetwork(hnet, probe_conditions=probe)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """Adam, or SGD with Nesterov momentum 0.9 (the paper's two optimizers, Sec. 5.2)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")


@dataclass
class TrainLog:
    """Per-step training loss (non-finite steps recorded as ``inf``) and the test curve."""

    loss: List[float]
    eval_steps: List[int]
    test_acc: List[float]
    test_loss: List[float]


@torch.no_grad()
def evaluate(
    hnet: Hypernetwork, target: FunctionalTarget, gammas: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> Tuple[float, float]:
    """Mean test loss and accuracy of the networks ``theta(gamma)`` over the fixed draws ``gammas``."""
    logits = target.forward_shared(hnet(gammas), x)  # (K, N, 10)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(len(gammas)))
    acc = (logits.argmax(-1) == y).float().mean()
    return (float(loss) if torch.isfinite(loss) else math.inf), float(acc)


def train(
    hnet: Hypernetwork,
    target: FunctionalTarget,
    data: MnistArrays,
    *,
    steps: int,
    optimizer: str,
    lr: float,
    seed: int,
    batch_size: int,
    eval_every: int,
    n_test: int,
    n_eval_gammas: int = 8,
) -> TrainLog:
    """Trains ``hnet`` with one ``gamma ~ N(0, I_d)`` per step (Sec. 5.1); evaluates every ``eval_every``
    steps (and at 0) on the first ``n_test`` test images for ``n_eval_gammas`` fixed draws of gamma."""
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be >= 1, got steps={steps}, eval_every={eval_every}")
    gen = torch.Generator().manual_seed(10_007 * seed + 1)
    eval_gammas = torch.randn(n_eval_gammas, hnet.cond_dim, generator=torch.Generator().manual_seed(999))
    x_test, y_test = data.x_test[:n_test], data.y_test[:n_test]
    opt = make_optimizer(optimizer, hnet.parameters(), lr)
    log = TrainLog([], [], [], [])

    def record(step: int) -> None:
        test_loss, acc = evaluate(hnet, target, eval_gammas, x_test, y_test)
        log.eval_steps.append(step)
        log.test_loss.append(test_loss)
        log.test_acc.append(acc)

    record(0)
    for step in range(1, steps + 1):
        idx = torch.randint(len(data.x_train), (batch_size,), generator=gen)
        gamma = torch.randn(hnet.cond_dim, generator=gen)
        loss = nn.functional.cross_entropy(target(hnet(gamma), data.x_train[idx]), data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            opt.step()
        log.loss.append(float(loss.detach()) if torch.isfinite(loss) else math.inf)
        if step % eval_every == 0 or step == steps:
            record(step)
    return log


def fixed_directions(n: int, cond_dim: int, seed: int = 12_345) -> torch.Tensor:
    """``n`` fixed draws ``u ~ N(0, I_d)``; the magnitude study evaluates ``gamma = c u``."""
    return torch.randn(n, cond_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def parameter_std(hnet: Hypernetwork, gammas: torch.Tensor) -> float:
    """Std of the generated parameters ``theta(gamma)`` (all target tensors flattened) per gamma,
    averaged over ``gammas`` (Fig. 1a, 3a)."""
    return float(hnet.forward_flat(gammas).std(dim=1).mean())


@torch.no_grad()
def layer_output_std(
    hnet: Hypernetwork, target: FunctionalTarget, gammas: torch.Tensor, x: torch.Tensor
) -> List[float]:
    """Std of each linear layer's output (pre-activation) on ``x`` per gamma, averaged over ``gammas``
    (Fig. 3b). Read with forward hooks while the library's target runs one weight set at a time."""
    linears = [m for m in target.module.modules() if isinstance(m, nn.Linear)]
    seen: Dict[int, List[float]] = {i: [] for i in range(len(linears))}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, i=i: seen[i].append(float(out.std())))
        for i, m in enumerate(linears)
    ]
    try:
        for gamma in gammas:
            target(hnet(gamma), x)
    finally:
        for h in hooks:
            h.remove()
    return [float(np.mean(seen[i])) for i in range(len(linears))]
