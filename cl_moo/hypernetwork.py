"""The shared parametrization: condition encoding, a generator, an output head, optional ``theta_0``.

Every generator ends in ONE linear output head ``H = (W, b)`` (von Oswald et al. 2020, Eq. 1;
Navon et al. 2021, Sec. 4: ``theta = W f(r) + b``). The head contract says how the flat output
is made from it: :meth:`Hypernetwork.head_pieces` returns, in flat-output order, pieces
``(inputs a (B, n, d_k), rows)`` with output ``(a W[rows]^T + b[rows]).reshape(B, -1)``. Forward,
hyperfan initialisation (:mod:`cl_moo.init`) and the regularizer's fast path all read these
pieces; none of them looks at the generator's type. With MIP's residual form (Gonzalez Ortiz et
al. 2024, Eq. 5) the output is ``theta_0 + Delta theta``, ``theta_0`` learnable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from .encoding import IdentityEncoding, InputRange, MIPEncoding
from .layout import WeightLayout
from .target import FunctionalTarget

ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_dim: int, hidden: Sequence[int], activation: str, *, last_activation: bool = True) -> nn.Sequential:
    """Linear + activation for each width in ``hidden`` (no activation after the last one when
    ``last_activation=False``)."""
    layers: List[nn.Module] = []
    for i, width in enumerate(hidden):
        layers.append(nn.Linear(in_dim, width))
        if last_activation or i < len(hidden) - 1:
            layers.append(make_activation(activation))
        in_dim = width
    return nn.Sequential(*layers)


@dataclass
class HeadPiece:
    """One block of the flat output: ``(inputs @ W[rows]^T + b[rows]).reshape(B, -1)``.

    ``inputs`` is ``(B, n, d_k)``: ``n`` applications of the head rows ``rows`` per condition
    (``n = 1`` for a plain MLP head, the chunks for a chunked hypernetwork).
    """

    inputs: torch.Tensor
    rows: slice


class Hypernetwork(nn.Module):
    """Base class of all generators: conditions ``(B, cond_dim)`` -> target weight sets.

    A subclass builds its layers, stores its linear output head as ``self.head`` and implements
    :meth:`head_pieces`. Optionally it implements :meth:`scale_applications` (a per-application
    input scale, e.g. chunk embeddings) so that hyperfan init can give each application its own
    output variance. ``forward(cond)`` returns one tensor per target parameter, each
    ``(B, *shape)``; a single condition ``(cond_dim,)`` gives unbatched tensors.
    """

    head: nn.Linear
    theta0: Optional[nn.Parameter]  # MIP's residual start theta_0; None without a residual

    def __init__(
        self,
        target: FunctionalTarget,
        cond_dim: int,
        *,
        mip_encoding: bool = False,
        residual: bool = False,
        input_range: InputRange = "unit",
    ) -> None:
        super().__init__()
        if not isinstance(cond_dim, int) or isinstance(cond_dim, bool) or cond_dim < 1:
            raise ValueError(f"cond_dim must be an integer >= 1, got {cond_dim!r}")
        self.cond_dim = cond_dim
        self.layout: WeightLayout = target.layout
        self.mip_encoding = mip_encoding
        self.encoder = MIPEncoding(cond_dim, input_range) if mip_encoding else IdentityEncoding(cond_dim, input_range)
        self.residual = residual
        self.init_report: Optional[Dict[str, float]] = None  # measured / wanted variance per tensor (init)
        self.build_options: Optional[Dict[str, object]] = None  # set by cl_moo.build_hypernetwork
        if residual:
            self.theta0 = nn.Parameter(self.layout.join(target.initial_weights()))
        else:
            self.register_parameter("theta0", None)

    # -- the head contract (subclasses) -----------------------------------------------------
    def head_pieces(self, encoded: torch.Tensor) -> List[HeadPiece]:
        """Pieces of the flat output in order (module docstring); their sizes add to ``num_weights``."""
        raise NotImplementedError

    def scale_applications(self, factors: torch.Tensor) -> None:
        """Scales the free input of each head application (in piece order) by ``factors``.

        Optional: generators whose head rows serve several target tensors (chunking) implement
        it so initialisation can match each application's variance; others do not, and
        :meth:`supports_application_scaling` says which.
        """
        raise NotImplementedError(f"{type(self).__name__} has no per-application scale")

    def supports_application_scaling(self) -> bool:
        """True when the subclass implements :meth:`scale_applications`."""
        return type(self).scale_applications is not Hypernetwork.scale_applications

    def output_head(self) -> nn.Linear:
        """The linear layer that emits the weights."""
        return self.head

    def hidden_layers(self) -> List[nn.Linear]:
        """Every linear layer but the head (initialised like an ordinary network)."""
        return [m for m in self.modules() if isinstance(m, nn.Linear) and m is not self.head]

    # -- derived from the contract ------------------------------------------------------------
    @property
    def num_weights(self) -> int:
        return self.layout.num_weights

    @property
    def param_names(self) -> List[str]:
        return list(self.layout.names)

    def check_conditions(self, cond: torch.Tensor) -> torch.Tensor:
        """Validates conditions and returns them as ``(B, cond_dim)``."""
        if not torch.is_tensor(cond):
            raise TypeError(f"conditions must be a torch.Tensor, got {type(cond).__name__}")
        if cond.dim() == 1:
            cond = cond.unsqueeze(0)
        if cond.dim() != 2 or cond.shape[-1] != self.cond_dim:
            raise ValueError(
                f"this hypernetwork expects conditions of shape (B, {self.cond_dim}) or "
                f"({self.cond_dim},), got {tuple(cond.shape)}"
            )
        if not cond.is_floating_point():
            raise TypeError(f"conditions must be floating point, got {cond.dtype}: pass cond.float()")
        head = self.output_head().weight
        if cond.dtype != head.dtype:
            raise TypeError(
                f"conditions are {cond.dtype} but the hypernetwork is {head.dtype}: convert one of them "
                f"(cond.to({head.dtype}) or hnet.to({cond.dtype}))"
            )
        # a data-dependent check (one host read): skipped inside torch.compile, where it would break the graph
        # (HypernetworkStrategy(compile=True) checks every training loss for NaN/inf instead)
        if not torch.compiler.is_compiling() and not torch.isfinite(cond).all():
            raise ValueError("conditions contain NaN or inf")
        return cond

    def generate_parts(self, encoded: torch.Tensor) -> List[torch.Tensor]:
        """Head outputs ``(B, size)`` of each piece; concatenated they are the flat ``Delta theta``."""
        head = self.output_head()
        out = []
        for piece in self.head_pieces(encoded):
            y = nn.functional.linear(piece.inputs, head.weight[piece.rows], head.bias[piece.rows])
            out.append(y.reshape(y.shape[0], -1))
        return out

    def forward_parts(self, cond: torch.Tensor) -> List[torch.Tensor]:
        """Flat weights as contiguous pieces (``theta_0`` added piecewise when residual)."""
        parts = self.generate_parts(self.encoder(self.check_conditions(cond)))
        if self.theta0 is None:
            return parts
        # one split (its backward concatenates the pieces' gradients) rather than a slice per piece
        # (each slice's backward would zero-fill a gradient of the whole theta_0)
        return [p + t for p, t in zip(parts, self.theta0.split([p.shape[-1] for p in parts]))]

    def forward_flat(self, cond: torch.Tensor) -> torch.Tensor:
        """Flat weights ``(B, num_weights)``: ``theta_0 + h(E(cond))`` (MIP Eq. 5) or ``h(cond)``."""
        parts = self.forward_parts(cond)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, cond: torch.Tensor) -> List[torch.Tensor]:
        weights = self.layout.split(self.forward_flat(cond))
        return unbatch(weights) if cond.dim() == 1 else weights

    # -- reporting -----------------------------------------------------------------------------
    @property
    def num_generator_params(self) -> int:
        """Parameters of the generator (everything but ``theta_0``)."""
        return sum(p.numel() for n, p in self.named_parameters() if n != "theta0")

    @property
    def num_params(self) -> int:
        """All trainable parameters, ``theta_0`` included."""
        return sum(p.numel() for p in self.parameters())

    @property
    def compression_ratio(self) -> float:
        """Generator parameters / target weights (von Oswald et al.: below 1 means compression)."""
        return self.num_generator_params / self.num_weights

    def summary(self) -> str:
        """Parameter counts, compression ratio and (after init) each tensor's variance ratio."""
        extra = f" + theta_0 {self.num_weights:,}" if self.theta0 is not None else ""
        text = (
            f"{type(self).__name__}: generator {self.num_generator_params:,} params{extra}; "
            f"target {self.num_weights:,} weights; compression ratio {self.compression_ratio:.4f}"
        )
        if self.init_report:
            ratios = ", ".join(f"{n} {r:.2f}x" for n, r in self.init_report.items())
            text += f"\ninit variance / wanted variance per tensor: {ratios}"
        return text


def unbatch(weights: List[torch.Tensor]) -> List[torch.Tensor]:
    """Drops the batch dimension of one weight set as views (``w[0]`` would cost a zero-filled
    full-size gradient plus a copy in the backward)."""
    return [w.view(w.shape[1:]) for w in weights]


def task_embedding_seed(seed: int, task: int) -> int:
    """The seed of the generator that draws task ``task``'s embedding in a model built with ``seed``:
    ``seed * 100_003 + task`` (the one formula for every task-conditioned model, so the same seed gives
    the same embeddings). 100,003 is prime and above any task count, so tasks of one seed never share
    a draw, and seeds do not share one for fewer than 100,003 tasks."""
    return seed * 100_003 + task
