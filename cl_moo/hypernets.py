"""Hypernetworks that map a batch of conditions to a batch of target-network weight sets.

Two generators share one parametrization (:class:`Hypernetwork`):

* :class:`MLPHypernetwork` - an MLP with one linear output head per target tensor
  (Navon et al. 2021, PHN: ``theta_j = W_j f(r)``).
* :class:`ChunkedHypernetwork` - von Oswald et al. 2020, Sec. 3 "chunking": learned chunk
  embeddings ``c_i`` shared by all conditions; ``theta = [h(e, c_1), ..., h(e, c_C)]``, each
  call emitting ``chunk_size`` values; the outputs are flattened and cut into the target shapes.

Both can use the MIP parametrization (Gonzalez Ortiz et al. 2024): the input encoding
``E(gamma)`` (see :mod:`cl_moo.encoding`) and the residual form ``theta = theta_0 + Delta theta``
(MIP Eq. 5) with ``theta_0`` learnable and initialised from the target model's own weights.
Each part can be switched on or off separately.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from .encoding import IdentityEncoding, InputRange, MIPEncoding
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
    """Returns a fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_dim: int, hidden: Sequence[int], activation: str) -> nn.Sequential:
    """Hidden layers of a hypernetwork: Linear + activation for each width in ``hidden``."""
    layers: List[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), make_activation(activation)]
        in_dim = width
    return nn.Sequential(*layers)


class Hypernetwork(nn.Module):
    """Shared parametrization: condition encoding, generator, optional residual ``theta_0``.

    ``forward(cond)`` takes conditions ``(B, cond_dim)`` and returns one tensor per target
    parameter, each ``(B, *shape)``; a single condition ``(cond_dim,)`` gives unbatched tensors.
    ``forward_flat`` returns the flat ``(B, num_weights)`` outputs used by regularizers.
    """

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
        if cond_dim < 1:
            raise ValueError(f"cond_dim must be >= 1, got {cond_dim}")
        self.cond_dim = cond_dim
        self.param_names = list(target.param_names)
        self.param_shapes = list(target.param_shapes)
        self.param_numels = list(target.param_numels)
        self.num_weights = target.num_weights
        self.mip_encoding = mip_encoding
        self.encoder = (
            MIPEncoding(cond_dim, input_range) if mip_encoding else IdentityEncoding(cond_dim)
        )
        self.residual = residual
        if residual:
            init = torch.cat([w.reshape(-1) for w in target.initial_weights()])
            self.theta0 = nn.Parameter(init)
        else:
            self.register_parameter("theta0", None)

    # -- generator interface (subclasses) --------------------------------------------------
    def generate(self, encoded: torch.Tensor) -> torch.Tensor:
        """Maps encoded conditions ``(B, enc_dim)`` to flat weights ``(B, num_weights)``."""
        raise NotImplementedError

    def last_hidden(self, encoded: torch.Tensor) -> torch.Tensor:
        """Activations that feed the output head, ``(B, ..., d_k)`` (used by hyperfan init)."""
        raise NotImplementedError

    def output_head(self) -> nn.Linear:
        """The linear layer that emits the weights (subclasses store it as ``self.head``)."""
        return self.head

    def hidden_layers(self) -> List[nn.Linear]:
        """Linear layers before the head (subclasses keep them in ``self.body``)."""
        return [m for m in self.body if isinstance(m, nn.Linear)]

    # -- public API ------------------------------------------------------------------------
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
        return cond

    def generate_parts(self, encoded: torch.Tensor) -> List[torch.Tensor]:
        """Contiguous pieces whose concatenation (last dim) is :meth:`generate`'s output."""
        return [self.generate(encoded)]

    def forward_parts(self, cond: torch.Tensor) -> List[torch.Tensor]:
        """``forward_flat`` as contiguous pieces (no slicing or concatenation of the big output).

        Regularizers compare these piece by piece, which saves full-size copies in the backward.
        """
        cond = self.check_conditions(cond)
        parts = self.generate_parts(self.encoder(cond))
        if self.theta0 is not None:
            offsets = [0]
            for p in parts:
                offsets.append(offsets[-1] + p.shape[-1])
            parts = [p + self.theta0[a:b] for p, a, b in zip(parts, offsets[:-1], offsets[1:])]
        return parts

    def forward_flat(self, cond: torch.Tensor) -> torch.Tensor:
        """Flat weights ``(B, num_weights)``: ``theta_0 + h(E(cond))`` (MIP Eq. 5) or ``h(cond)``."""
        parts = self.forward_parts(cond)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def split(self, flat: torch.Tensor) -> List[torch.Tensor]:
        """Cuts flat weights ``(..., num_weights)`` into the target's tensor shapes."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.param_numels, dim=-1)
        return [p.reshape(*lead, *s) for p, s in zip(parts, self.param_shapes)]

    def forward(self, cond: torch.Tensor) -> List[torch.Tensor]:
        weights = self.split(self.forward_flat(cond))
        if cond.dim() == 1:
            return _unbatch(weights)
        return weights

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
        """One line with parameter counts and the compression ratio."""
        extra = f" + theta_0 {self.num_weights:,}" if self.theta0 is not None else ""
        return (
            f"{type(self).__name__}: generator {self.num_generator_params:,} params{extra}; "
            f"target {self.num_weights:,} weights; compression ratio "
            f"{self.compression_ratio:.4f}"
        )


class MLPHypernetwork(Hypernetwork):
    """MLP hypernetwork with one output head per target tensor (PHN, Navon et al. 2021, Sec. 4).

    The heads are stored as one fused linear layer: rows ``head_slices[j]`` form the head of
    target tensor ``j`` (the same function as separate heads, computed in one matrix product).
    """

    def __init__(
        self,
        target: FunctionalTarget,
        cond_dim: int,
        *,
        hidden: Sequence[int] = (100, 100, 100),
        activation: str = "relu",
        mip_encoding: bool = False,
        residual: bool = False,
        input_range: InputRange = "unit",
    ) -> None:
        super().__init__(
            target, cond_dim, mip_encoding=mip_encoding, residual=residual, input_range=input_range
        )
        self.body = mlp(self.encoder.out_dim, hidden, activation)
        d_k = hidden[-1] if hidden else self.encoder.out_dim
        self.head = nn.Linear(d_k, self.num_weights)
        offsets = [0]
        for n in self.param_numels:
            offsets.append(offsets[-1] + n)
        self.head_slices = [slice(a, b) for a, b in zip(offsets[:-1], offsets[1:])]

    def generate(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(encoded))

    def last_hidden(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.body(encoded)


def _unbatch(weights: List[torch.Tensor]) -> List[torch.Tensor]:
    """Drops the batch dimension of one weight set as views (indexing ``w[0]`` would cost a
    zero-filled full-size gradient plus a copy in the backward)."""
    return [w.view(w.shape[1:]) for w in weights]


class _SplitPadded(torch.autograd.Function):
    """Views of a padded flat output ``(B, P)`` as the target's tensors; backward in one pass.

    Autograd's own slice + split backward zero-fills the whole padded gradient and copies it
    twice; here each tensor's gradient is written into its slot and only the padding is zeroed.
    """

    @staticmethod
    def forward(ctx, padded, numels, shapes):
        ctx.numels, ctx.width = numels, padded.shape[1]
        b = padded.shape[0]
        outs, offset = [], 0
        for n, shape in zip(numels, shapes):
            outs.append(padded[:, offset : offset + n].reshape(b, *shape))
            offset += n
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        first = next(g for g in grads if g is not None)
        b = first.shape[0]
        out = first.new_empty(b, ctx.width)
        offset = 0
        for n, g in zip(ctx.numels, grads):
            if g is None:
                out[:, offset : offset + n].zero_()
            else:
                out[:, offset : offset + n].copy_(g.reshape(b, n))
            offset += n
        out[:, offset:].zero_()
        return out, None, None


class ChunkedHypernetwork(Hypernetwork):
    """Chunked hypernetwork (von Oswald et al. 2020, Sec. 3, "Model compression").

    ``num_chunks = ceil(num_weights / chunk_size)`` chunk embeddings of width
    ``chunk_emb_dim`` are learned and shared across conditions; each is concatenated with the
    (encoded) condition and passed through one MLP with a ``chunk_size`` output head. Choose a
    small ``chunk_size`` and narrow hidden layers to get fewer parameters than the target.
    """

    def __init__(
        self,
        target: FunctionalTarget,
        cond_dim: int,
        *,
        chunk_size: int,
        chunk_emb_dim: int = 8,
        hidden: Sequence[int] = (25, 25),
        activation: str = "elu",
        mip_encoding: bool = False,
        residual: bool = False,
        input_range: InputRange = "unit",
    ) -> None:
        super().__init__(
            target, cond_dim, mip_encoding=mip_encoding, residual=residual, input_range=input_range
        )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.num_chunks = math.ceil(self.num_weights / chunk_size)
        self.chunk_embeddings = nn.Parameter(torch.randn(self.num_chunks, chunk_emb_dim))
        self.body = mlp(chunk_emb_dim + self.encoder.out_dim, hidden, activation)
        d_k = hidden[-1] if hidden else chunk_emb_dim + self.encoder.out_dim
        self.head = nn.Linear(d_k, chunk_size)

    @property
    def last_chunk_size(self) -> int:
        """Entries of the last chunk that are used (the rest of it is padding)."""
        return self.num_weights - (self.num_chunks - 1) * self.chunk_size

    def _inputs(self, encoded: torch.Tensor) -> torch.Tensor:
        b = encoded.shape[0]
        chunks = self.chunk_embeddings.unsqueeze(0).expand(b, -1, -1)
        conds = encoded.unsqueeze(1).expand(-1, self.num_chunks, -1)
        return torch.cat([chunks, conds], dim=-1)

    def last_hidden(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.body(self._inputs(encoded))

    def forward(self, cond: torch.Tensor) -> List[torch.Tensor]:
        """As :meth:`Hypernetwork.forward`; without a residual, the weights are views of one
        padded head output and the backward writes each gradient once (:class:`_SplitPadded`)."""
        if self.theta0 is not None:
            return super().forward(cond)
        batched = self.check_conditions(cond)
        hidden = self.last_hidden(self.encoder(batched))
        padded = self.head(hidden).reshape(batched.shape[0], -1)
        weights = list(_SplitPadded.apply(padded, self.param_numels, self.param_shapes))
        return _unbatch(weights) if cond.dim() == 1 else weights

    def generate(self, encoded: torch.Tensor) -> torch.Tensor:
        parts = self.generate_parts(encoded)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def generate_parts(self, encoded: torch.Tensor) -> List[torch.Tensor]:
        """Full chunks ``(B, (C-1) * chunk_size)`` and the last chunk's used entries ``(B, rem)``.

        The last chunk runs the head with only the rows it needs, so no padding is computed
        and nothing is sliced off afterwards.
        """
        hidden = self.last_hidden(encoded)  # (B, C, d_k)
        b = encoded.shape[0]
        rem = self.last_chunk_size
        last = nn.functional.linear(hidden[:, -1], self.head.weight[:rem], self.head.bias[:rem])
        if self.num_chunks == 1:
            return [last]
        full = self.head(hidden[:, :-1]).reshape(b, -1)
        return [full, last]
