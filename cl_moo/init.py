"""Hypernetwork initialisation: hyperfan-in / hyperfan-out (Chang et al. 2020), plain defaults, MIP.

Chang et al. 2020, Sec. 4 / Table 1: a generated weight is ``w = h^T a + b_h`` with ``h`` a row of
the output head and ``a`` the head's input (width ``d_k``), so ``Var(w) = Var(h) E||a||^2``
(``= d_k Var(h) Var(e)`` in the paper). The head rows' variance is chosen so the generated
weights have the variance a well-initialised target layer would have:

* hyperfan-in:  ``Var(W) = c / (c_b fan_in)``,  ``Var(b) = 1 / 2`` when biases are generated
* hyperfan-out: ``Var(W) = c / fan_out``,       ``Var(b) = max(0, 1 - fan_in / fan_out)``

with ``c = 2`` for ReLU target layers and ``1`` for linear ones, ``c_b = 2`` when the layer's bias
is generated too (per layer), and conv fans including the receptive field. ``E||a||^2`` is measured on probe
conditions from the distribution the hypernetwork will see, so it holds for any activation.

Everything is read from the head contract (:meth:`Hypernetwork.head_pieces`): each head row
gets the mean of ``Var(w) / E||a||^2`` over the outputs it makes. When one row serves several
applications (chunking), a least-squares fit in log space, weighted by tensor size, chooses
per-row head variances and per-application gains (>= 1) so that each tensor's mean variance
matches; the gains are realised by scaling the generator's per-application inputs (chunk
embeddings) UP, which keeps them distinct, and the rows are then fitted again. The result
(measured / wanted variance per tensor) is stored in ``hnet.init_report`` and shown by
``hnet.summary()``.

Warning: every tensor (small ones included) whose EXPECTED variance over the head's random draw
(fitted row variances times ``E||a||^2`` on all probes) is off by more than ``warn_ratio`` is
named. The expected value, not the measured one, decides: a 10-entry bias drawn from the right
variance still measures anywhere in about 0.4-1.8x by chance (as a directly drawn 10-entry bias
would), while an expected ratio off by 1.5x is systematic. Limit of chunking: the variance of
output ``(chunk i, row r)`` is ``row_var[r] * gain[i] * E||a_i||^2`` (rank one), and row ``r``
serves position ``r`` of EVERY chunk. A bias (hyperfan-in wants 0.5) sits in a chunk whose rows
serve weights (``c / (c_b fan_in)``, ~400x less) in all other chunks, so it cannot reach its
variance without spoiling those weights; the weights are matched first, and such biases stay
below their variance (a layer's output variance is then about (1 + bias ratio) / 2 of hyperfan's,
the bias supplying half of it). The warning names them (for 784-300-100-10 with chunks of 2000:
all three biases); the measured ratios are in ``docs/reproduction.md``, "Numbers behind the defaults".

MIP (Gonzalez Ortiz et al. 2024, Eq. 5): ``theta = theta_0 + Delta theta``, and the model starts
at ``theta_0``. ``theta0="init"`` (default) draws ``theta_0`` like a freshly initialised target
under ``scheme`` (:func:`start_variances`: Kaiming ``c / fan_in``, Xavier
``2c / (fan_in + fan_out)``, both with zero biases, or the hyperfan variances of Table 1 above);
tensors that are not layer weights / biases (norm layers, bare vectors) keep the module's own
values. ``theta0="keep"`` keeps the target's current weights (a pretrained model). Then the
head is initialised by the scheme (its shape across tensors) and scaled so that
``||Delta theta|| = residual_scale ||theta_0||`` on the probes, with a zero head bias; with
``theta0="init"`` the report compares the start weights ``theta_0 + Delta theta`` with
:func:`start_variances`.
"""

from __future__ import annotations

import math
import warnings
from typing import Dict, List, Literal, Optional, Sequence, cast

import torch
from torch import nn

from .hypernetwork import Hypernetwork
from .layout import WeightLayout

InitScheme = Literal["hyperfan_in", "hyperfan_out", "kaiming", "xavier"]
INIT_SCHEMES = ("hyperfan_in", "hyperfan_out", "kaiming", "xavier")
Theta0Init = Literal["init", "keep"]
THETA0_INITS = ("init", "keep")


def _fans(shape: torch.Size) -> tuple:
    """(fan_in, fan_out) of a weight tensor; conv kernels include the receptive field."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


HyperfanScheme = Literal["hyperfan_in", "hyperfan_out"]


def target_variances(layout: WeightLayout, scheme: HyperfanScheme, target_gain: float) -> List[float]:
    """Wanted variance of each generated tensor (Chang et al. 2020, Table 1)."""
    if isinstance(layout, Hypernetwork):
        layout = layout.layout
    by_name = dict(zip(layout.names, layout.shapes))
    c = target_gain
    out: List[float] = []
    for name, shape in zip(layout.names, layout.shapes):
        if len(shape) >= 2:
            # c_b = 2 when this layer's bias is generated too (half the output variance comes from it)
            bias = name.rsplit(".", 1)[0] + ".bias" if name.endswith(".weight") else None
            c_b = 2.0 if bias in by_name else 1.0
            fan_in, fan_out = _fans(shape)
            out.append(c / (c_b * fan_in) if scheme == "hyperfan_in" else c / fan_out)
            continue
        sibling = by_name.get(name.rsplit(".", 1)[0] + ".weight") if "." in name else None
        fan_in, fan_out = _fans(sibling) if sibling is not None and len(sibling) >= 2 else (1, 1)
        out.append(0.5 if scheme == "hyperfan_in" else max(0.0, 1.0 - fan_in / fan_out))
    return out


def start_variances(layout: WeightLayout, scheme: InitScheme, target_gain: float) -> List[Optional[float]]:
    """Variance of each tensor of a freshly initialised target under ``scheme`` (MIP's ``theta_0``).

    Weights (>= 2 dims): ``kaiming`` ``c / fan_in``, ``xavier`` ``2 c / (fan_in + fan_out)``
    (Glorot with gain^2 = ``c = target_gain``), hyperfan: :func:`target_variances`. A layer's bias
    (``<layer>.bias`` next to a generated ``<layer>.weight``): 0 for kaiming / xavier, the hyperfan
    bias variance otherwise. Any other tensor (norm-layer affine, bare vectors): ``None``, it keeps
    the module's own value."""
    if isinstance(layout, Hypernetwork):
        layout = layout.layout
    c = target_gain
    hyperfan = target_variances(layout, scheme, c) if scheme in ("hyperfan_in", "hyperfan_out") else None
    by_name = dict(zip(layout.names, layout.shapes))
    out: List[Optional[float]] = []
    for i, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        if len(shape) >= 2:
            fan_in, fan_out = _fans(shape)
            out.append(hyperfan[i] if hyperfan else c / fan_in if scheme == "kaiming" else 2 * c / (fan_in + fan_out))
            continue
        weight = by_name.get(name[: -len("bias")] + "weight") if name.endswith(".bias") else None
        out.append(None if weight is None or len(weight) < 2 else hyperfan[i] if hyperfan else 0.0)
    return out


@torch.no_grad()
def _draw_theta0(hnet: Hypernetwork, scheme: InitScheme, target_gain: float) -> List[Optional[float]]:
    """Draws ``theta_0`` per tensor from ``N(0, start_variances)``; ``None`` tensors keep their value."""
    variances = start_variances(hnet.layout, scheme, target_gain)
    theta0 = hnet.theta0
    assert theta0 is not None, "theta_0 is drawn for a residual hypernetwork only"
    for sl, v in zip(hnet.layout.slices, variances):
        if v is not None:
            theta0[sl] = torch.randn_like(theta0[sl]) * math.sqrt(v)
    return variances


def default_probe_conditions(hnet: Hypernetwork, n: int = 256) -> torch.Tensor:
    """Conditions to measure activations on when the caller gives none."""
    device = hnet.output_head().weight.device
    if getattr(hnet.encoder, "input_range", "unit") == "unbounded":
        return torch.randn(n, hnet.cond_dim, device=device)
    return torch.rand(n, hnet.cond_dim, device=device)


Nonlinearity = Literal["relu", "leaky_relu", "tanh", "sigmoid", "linear"]


def _nonlinearity(hnet: Hypernetwork) -> Nonlinearity:
    """Name torch.nn.init uses for the gain of the hypernetwork's hidden activation."""
    kinds: Dict[type, Nonlinearity] = {
        nn.ReLU: "relu",
        nn.LeakyReLU: "leaky_relu",
        nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid",
    }
    for m in hnet.modules():
        if type(m) in kinds:
            return kinds[type(m)]
    return "linear"


class _Applications:
    """The head contract flattened: for every application (piece, n), its rows and output offset."""

    def __init__(self, hnet: Hypernetwork, encoded: torch.Tensor) -> None:
        self.pieces = hnet.head_pieces(encoded)
        self.rows: List[slice] = []
        self.offsets: List[int] = []
        offset = 0
        for piece in self.pieces:
            width = piece.rows.stop - piece.rows.start
            for _ in range(piece.inputs.shape[1]):
                self.rows.append(piece.rows)
                self.offsets.append(offset)
                offset += width
        if offset != hnet.num_weights:
            raise ValueError(f"{type(hnet).__name__}.head_pieces makes {offset} outputs, expected {hnet.num_weights}")

    def sq_norms(self) -> torch.Tensor:
        """``E||a_i||^2`` over the probes for each application, ``(A,)``."""
        return torch.cat([p.inputs.pow(2).sum(-1).mean(0) for p in self.pieces])


def _segments(hnet: Hypernetwork, apps: "_Applications", device: torch.device) -> tuple:
    """The flat output cut at application and tensor borders: (tensor, first row, end row, application)."""
    bounds = hnet.layout.offsets
    seg = []
    for i, (o, r) in enumerate(zip(apps.offsets, apps.rows)):
        start, end = o, o + (r.stop - r.start)
        t = max(k for k in range(len(bounds) - 1) if bounds[k] <= start)
        while start < end:
            stop = min(end, bounds[t + 1])
            seg.append((t, r.start + start - o, r.start + stop - o, i))
            start, t = stop, t + 1
    return tuple(torch.tensor(col, device=device) for col in zip(*seg))


def _fit_log_variances(
    hnet: Hypernetwork, apps: "_Applications", wanted: List[float], free_gain: bool, steps: int = 300
) -> tuple:
    """Least squares in log space, weighted by tensor size: per-row head variances (and
    per-application gains of ``E||a||^2``, >= 1) so that each tensor's mean generated variance
    matches its wanted one (large tensors first: they carry the signal through the target).

    Sums over outputs run over segments (one application within one tensor) with cumulative
    sums of the row variances, so a step costs O(applications + tensors), not O(outputs)."""
    m = apps.sq_norms().detach().double()  # float64: the fit's tiny Adam moments would be float32 denormals (slow)
    device = m.device
    seg_t, seg_r0, seg_r1, seg_a = _segments(hnet, apps, device)
    numels = torch.tensor(hnet.layout.numels, device=device, dtype=m.dtype)
    want_t = torch.tensor(wanted, device=device, dtype=m.dtype)
    live = want_t > 0
    rows = hnet.output_head().out_features
    # start: each row gets the mean of wanted / E||a||^2 over its outputs
    start = torch.zeros(rows, device=device, dtype=torch.float64)
    hits = torch.zeros(rows, device=device, dtype=torch.float64)
    for t, r0, r1, a in zip(seg_t.tolist(), seg_r0.tolist(), seg_r1.tolist(), seg_a.tolist()):
        start[r0:r1] += wanted[t] / float(m[a])
        hits[r0:r1] += 1
    if not free_gain and float(hits.max()) <= 1:  # no row serves two outputs: the start is exact
        return start.float(), torch.ones_like(m).float()
    log_row = (start / hits.clamp_min(1)).clamp_min(1e-30).log().clone().requires_grad_(True)
    # gain = exp(softplus(raw)) >= 1
    raw_gain = torch.full((len(m),), -4.0, device=device, dtype=torch.float64, requires_grad=free_gain)
    opt = torch.optim.Adam([log_row] + ([raw_gain] if free_gain else []), lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            gain = nn.functional.softplus(raw_gain).exp() if free_gain else torch.ones_like(m)
            csum = torch.cat([log_row.new_zeros(1), log_row.exp().cumsum(0)])
            per_seg = (csum[seg_r1] - csum[seg_r0]) * (m * gain)[seg_a]
            got = torch.zeros(len(numels), device=device, dtype=m.dtype).index_add(0, seg_t, per_seg) / numels
            loss = (numels[live] * (got[live].log() - want_t[live].log()).pow(2)).sum() / numels[live].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return log_row.detach().exp().float(), nn.functional.softplus(raw_gain.detach()).exp().float()


@torch.no_grad()
def _match_applications(hnet: Hypernetwork, encoded: torch.Tensor, gain: torch.Tensor, iterations: int) -> None:
    """Scales each application's free input up until ``E||a_i||^2`` reaches ``gain_i`` times its start."""
    goal = _Applications(hnet, encoded).sq_norms() * gain
    for _ in range(iterations):
        m = _Applications(hnet, encoded).sq_norms()
        factor = (goal / m).sqrt().clamp(1.0, 4.0)
        if float(factor.max()) < 1.01:
            break
        hnet.scale_applications(factor)


@torch.no_grad()
def _expected_variances(hnet: Hypernetwork, apps: "_Applications", row_var: torch.Tensor) -> List[float]:
    """Expected ``E[w^2]`` of each tensor over the head's random draw (zero head bias): the sum of
    ``row_var[r] * E||a_i||^2`` over its outputs, divided by its size. No sampling noise of the draw."""
    m = apps.sq_norms().detach().double()
    seg_t, seg_r0, seg_r1, seg_a = _segments(hnet, apps, m.device)
    csum = torch.cat([m.new_zeros(1), row_var.to(m).cumsum(0)])
    per_seg = (csum[seg_r1] - csum[seg_r0]) * m[seg_a]
    numels = torch.tensor(hnet.layout.numels, device=m.device, dtype=m.dtype)
    return (torch.zeros_like(numels).index_add(0, seg_t, per_seg) / numels).tolist()


@torch.no_grad()
def _init_head(hnet: Hypernetwork, encoded: torch.Tensor, wanted: List[float], iterations: int) -> List[float]:
    """Head row variances (after per-application gains where the generator has them); returns
    each tensor's expected variance (:func:`_expected_variances`)."""
    if hnet.supports_application_scaling():
        _, gain = _fit_log_variances(hnet, _Applications(hnet, encoded), wanted, free_gain=True)
        _match_applications(hnet, encoded, gain, iterations)
    apps = _Applications(hnet, encoded)
    row_var, _ = _fit_log_variances(hnet, apps, wanted, free_gain=False)
    head = hnet.output_head()
    head.weight.copy_(torch.randn_like(head.weight) * row_var.sqrt().unsqueeze(1).to(head.weight))
    return _expected_variances(hnet, apps, row_var)


@torch.no_grad()
def variance_report(
    hnet: Hypernetwork, probe: torch.Tensor, wanted: Sequence[Optional[float]], start: bool = False
) -> Dict[str, float]:
    """Measured ``E[w^2]`` of each generated tensor over ``probe`` divided by its wanted variance
    (NaN where none is wanted). ``start=True``: of the full weights, ``theta_0`` included (MIP)."""
    if start:
        flat = hnet.forward_flat(probe)
    else:
        flat = torch.cat(hnet.generate_parts(hnet.encoder(hnet.check_conditions(probe))), dim=-1)
    parts = hnet.layout.split(flat)
    return {
        name: (float(w.pow(2).mean()) / v if v is not None and v > 0 else float("nan"))
        for name, w, v in zip(hnet.layout.names, parts, wanted)
    }


@torch.no_grad()
def _start_at_theta0(hnet: Hypernetwork, encoded: torch.Tensor, residual_scale: float) -> None:
    """Scales the head so that ``||Delta theta|| / ||theta_0|| = residual_scale`` (MIP starts at theta_0)."""
    head = hnet.output_head()
    nn.init.zeros_(head.bias)
    delta = torch.cat(hnet.generate_parts(encoded), dim=-1)
    norm = float(delta.norm(dim=-1).mean())
    assert hnet.theta0 is not None, "only a residual hypernetwork starts at theta_0"
    theta0 = float(hnet.theta0.norm())
    if norm > 0 and theta0 > 0:
        head.weight.mul_(residual_scale * theta0 / norm)


@torch.no_grad()
def init_hypernetwork(
    hnet: Hypernetwork,
    scheme: InitScheme = "hyperfan_in",
    *,
    target_gain: float = 2.0,
    probe_conditions: Optional[torch.Tensor] = None,
    residual_scale: float = 0.01,
    warn_ratio: float = 1.5,
    iterations: int = 12,
    theta0: Theta0Init = "init",
) -> Hypernetwork:
    """Initialises ``hnet`` in place and returns it.

    ``scheme``: ``hyperfan_in`` / ``hyperfan_out`` (Chang et al. 2020) or the plain defaults
    ``kaiming`` (Kaiming-normal fan-in on every layer, as for an ordinary network) and
    ``xavier``. ``target_gain`` is ``c``: 2 for ReLU target layers, 1 for linear ones.
    ``probe_conditions`` are samples of the conditions the hypernetwork will see (task
    embeddings, preference rays); by default uniform in [0, 1] (normal for unbounded inputs).
    With a residual (MIP) hypernetwork the start weights are ``theta_0``: ``theta0="init"`` draws
    it as ``scheme`` initialises a target (:func:`start_variances`), ``theta0="keep"`` keeps the
    target's current (e.g. pretrained) weights; ``residual_scale`` sets
    ``||Delta theta|| / ||theta_0||`` at the start (module docstring).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {list(INIT_SCHEMES)}")
    if theta0 not in THETA0_INITS:
        raise ValueError(
            f"theta0 must be 'init' (draw MIP's theta_0 as {scheme!r} initialises a target) or 'keep' "
            f"(the target's current weights, e.g. pretrained), got {theta0!r}"
        )
    if not (math.isfinite(target_gain) and target_gain > 0):
        raise ValueError(f"target_gain must be a positive number, got {target_gain}")
    head = hnet.output_head()
    probe = default_probe_conditions(hnet) if probe_conditions is None else probe_conditions
    probe = probe.to(head.weight.device)
    if scheme in ("kaiming", "xavier"):
        for layer in hnet.hidden_layers() + [head]:
            if scheme == "kaiming":
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        hnet.init_report = None
    else:
        for layer in hnet.hidden_layers():
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=_nonlinearity(hnet))
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(head.bias)
        variances = target_variances(hnet.layout, cast(HyperfanScheme, scheme), target_gain)  # kaiming/xavier: above
        encoded = hnet.encoder(hnet.check_conditions(probe))
        if float(_Applications(hnet, encoded).sq_norms().min()) <= 0:
            raise ValueError("hyperfan init: the hypernetwork's head input is all zero on the probe conditions")
        expected = _init_head(hnet, encoded, variances, iterations)
        report = variance_report(hnet, probe[:32], variances)  # 32 conditions x all outputs suffice
        hnet.init_report = report
        # every tensor, small ones too, judged by its expected variance (no sampling noise of the draw)
        off = {
            n: (e / v, r)
            for n, e, v, r in zip(hnet.layout.names, expected, variances, report.values())
            if v > 0 and not (1 / warn_ratio <= e / v <= warn_ratio)
        }
        if off and hnet.theta0 is None:  # with MIP's residual the start is theta_0 (below), not the head's output
            warnings.warn(
                f"{scheme} init of {type(hnet).__name__}: generated variance / wanted variance (expected over the "
                "head's random draw; measured on the probes) is "
                + ", ".join(f"{n} {e:.2f}x (measured {r:.2f}x)" for n, (e, r) in off.items())
                + f" (beyond {warn_ratio}x): one head row serves the same position of every chunk, so a tensor "
                "sharing a chunk with tensors of a very different variance (a bias next to weights) cannot be "
                "matched without spoiling them, and the larger tensors come first; a chunk size that divides "
                "the weight tensors' sizes helps the weights",
                stacklevel=3,
            )
    if hnet.theta0 is not None:
        start = _draw_theta0(hnet, scheme, target_gain) if theta0 == "init" else None
        _start_at_theta0(hnet, hnet.encoder(hnet.check_conditions(probe[:32])), residual_scale)
        # the residual starts at theta_0 (Delta theta is residual_scale of it): report the start weights against
        # the scheme's target-network variances; a kept (pretrained) theta_0 has no wanted variance
        hnet.init_report = (
            None
            if start is None
            else {
                n: r
                for (n, r), v in zip(variance_report(hnet, probe[:32], start, start=True).items(), start)
                if v is not None and v > 0
            }
        )
    return hnet
