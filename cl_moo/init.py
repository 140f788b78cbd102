"""Hypernetwork initialisation: hyperfan-in / hyperfan-out (Chang et al. 2020) and plain defaults.

Chang et al. 2020, Sec. 4 / Table 1: a generated weight is ``W = H e`` with ``H`` the output
head and ``e`` the last hidden activations (width ``d_k``), so ``Var(W) = Var(H) E||e||^2``
(``= d_k Var(H) Var(e)`` in the paper's notation). The head variance is chosen so the
generated weights have the variance a well-initialised target layer would have:

* hyperfan-in:  ``Var(W) = c / (c_b fan_in)``,  ``Var(b) = 1 / 2`` when biases are generated
* hyperfan-out: ``Var(W) = c / fan_out``,       ``Var(b) = max(0, 1 - fan_in / fan_out)``

with ``c = 2`` for ReLU target layers and ``1`` for linear ones, ``c_b = 2`` when the
hypernetwork also generates biases (half of the output variance comes from the bias), and
``fan_in`` / ``fan_out`` including the receptive field of conv kernels (so conv layers are
divided by it). The bias variances follow from the same variance-propagation argument
(``Var(y) = fan_in Var(W) E[x^2] + Var(b)``) at unit pre-activation variance.
``E||e||^2`` is measured on probe conditions from the distribution the hypernetwork will see,
instead of the paper's closed-form ``d_k Var(e)``, so it holds for any hidden activation.

Chunked hypernetworks (one head for all chunks): the head variance gives the size-weighted mean
target variance; then each chunk embedding is rescaled so that the chunk's outputs have the
size-weighted variance of the target entries it covers. Hidden layers: Kaiming fan-in, zero
biases (Chang et al. Sec. 4).
"""
from __future__ import annotations

import math
from typing import List, Literal, Optional

import torch
from torch import nn

from .hypernets import ChunkedHypernetwork, Hypernetwork

InitScheme = Literal["hyperfan_in", "hyperfan_out", "kaiming", "xavier"]
INIT_SCHEMES = ("hyperfan_in", "hyperfan_out", "kaiming", "xavier")


def _fans(shape: torch.Size) -> tuple:
    """(fan_in, fan_out) of a weight tensor; conv kernels include the receptive field."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def target_variances(
    hnet: Hypernetwork, scheme: Literal["hyperfan_in", "hyperfan_out"], target_gain: float
) -> List[float]:
    """Desired variance of each generated target tensor (Chang et al. 2020, Table 1)."""
    names, shapes = hnet.param_names, hnet.param_shapes
    by_name = dict(zip(names, shapes))
    has_bias = any(len(s) == 1 for s in shapes)
    c, c_b = target_gain, (2.0 if has_bias else 1.0)
    out: List[float] = []
    for name, shape in zip(names, shapes):
        if len(shape) >= 2:
            fan_in, fan_out = _fans(shape)
            out.append(c / (c_b * fan_in) if scheme == "hyperfan_in" else c / fan_out)
            continue
        sibling = by_name.get(name.rsplit(".", 1)[0] + ".weight") if "." in name else None
        fan_in, fan_out = _fans(sibling) if sibling is not None and len(sibling) >= 2 else (1, 1)
        out.append(0.5 if scheme == "hyperfan_in" else max(0.0, 1.0 - fan_in / fan_out))
    return out


def default_probe_conditions(hnet: Hypernetwork, n: int = 256) -> torch.Tensor:
    """Conditions to measure activations on when the caller gives none."""
    device = hnet.output_head().weight.device
    if getattr(hnet.encoder, "input_range", "unit") == "unbounded":
        return torch.randn(n, hnet.cond_dim, device=device)
    return torch.rand(n, hnet.cond_dim, device=device)


def _init_hidden(hnet: Hypernetwork, nonlinearity: str) -> None:
    for layer in hnet.hidden_layers():
        nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=nonlinearity)
        nn.init.zeros_(layer.bias)


def _nonlinearity(hnet: Hypernetwork) -> str:
    """Name torch.nn.init uses for the gain of the hypernetwork's hidden activation."""
    acts = [m for m in hnet.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid))]
    if not acts:
        return "linear"
    return {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}[
        type(acts[0])
    ]


@torch.no_grad()
def _mean_sq_norm(hnet: Hypernetwork, probe: torch.Tensor) -> torch.Tensor:
    """E||e||^2 of the head's input over probe conditions (and chunks)."""
    e = hnet.last_hidden(hnet.encoder(hnet.check_conditions(probe)))
    return e.pow(2).sum(-1).mean()


@torch.no_grad()
def init_hypernetwork(
    hnet: Hypernetwork,
    scheme: InitScheme = "hyperfan_in",
    *,
    target_gain: float = 2.0,
    probe_conditions: Optional[torch.Tensor] = None,
) -> Hypernetwork:
    """Initialises ``hnet`` in place and returns it.

    ``scheme``: ``hyperfan_in`` / ``hyperfan_out`` (Chang et al. 2020) or the plain defaults
    ``kaiming`` (Kaiming-normal fan-in on every layer, as for an ordinary network) and
    ``xavier``. ``target_gain`` is ``c``: 2 for ReLU target layers, 1 for linear ones.
    ``probe_conditions`` are samples of the conditions the hypernetwork will see (task
    embeddings, preference rays); by default uniform in [0, 1] (or normal when the hypernetwork
    takes unbounded inputs).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {list(INIT_SCHEMES)}")
    head = hnet.output_head()
    if scheme in ("kaiming", "xavier"):
        for layer in hnet.hidden_layers() + [head]:
            if scheme == "kaiming":
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        return hnet
    _init_hidden(hnet, _nonlinearity(hnet))
    nn.init.zeros_(head.bias)
    probe = default_probe_conditions(hnet) if probe_conditions is None else probe_conditions
    variances = target_variances(hnet, scheme, target_gain)
    sq_norm = float(_mean_sq_norm(hnet, probe))
    if not math.isfinite(sq_norm) or sq_norm <= 0:
        raise ValueError("hyperfan init: the hypernetwork's last hidden layer is all zero on the probes")
    if isinstance(hnet, ChunkedHypernetwork):
        _init_chunked_head(hnet, variances, probe, sq_norm)
    else:
        for sl, var in zip(hnet.head_slices, variances):
            head.weight[sl].normal_(0.0, math.sqrt(var / sq_norm))
    return hnet


def _per_position_variance(hnet: ChunkedHypernetwork, variances: List[float]) -> torch.Tensor:
    """Desired variance of each generated scalar, ``(num_chunks, chunk_size)``; padding is NaN."""
    parts = [torch.full((n,), v) for n, v in zip(hnet.param_numels, variances)]
    flat = torch.cat(parts)
    pad = hnet.num_chunks * hnet.chunk_size - flat.numel()
    return torch.cat([flat, torch.full((pad,), float("nan"))]).view(hnet.num_chunks, hnet.chunk_size)


@torch.no_grad()
def _init_chunked_head(
    hnet: ChunkedHypernetwork, variances: List[float], probe: torch.Tensor, sq_norm: float,
    iterations: int = 8,
) -> None:
    """Head for the size-weighted mean variance, then per-chunk embedding rescaling."""
    wanted = _per_position_variance(hnet, variances).to(probe.device)
    chunk_target = wanted.nanmean(dim=1)  # size-weighted over the entries each chunk covers
    hnet.head.weight.normal_(0.0, math.sqrt(float(wanted.nanmean()) / sq_norm))
    encoded = hnet.encoder(hnet.check_conditions(probe[:64]))  # 64 probes suffice for a mean
    valid = (~wanted.isnan()).sum(1)
    for _ in range(iterations):
        out = hnet.head(hnet.last_hidden(encoded))  # (P, C, chunk_size)
        measured = out.pow(2).mean(dim=0).where(~wanted.isnan(), 0.0).sum(1) / valid
        factor = (chunk_target / measured.clamp_min(1e-30)).sqrt().clamp(0.1, 10.0)
        hnet.chunk_embeddings.mul_(factor.unsqueeze(1))
