"""Chunked hypernetwork (von Oswald et al. 2020, Sec. 3, "Model compression").

``num_chunks = ceil(num_weights / chunk_size)`` learned chunk embeddings ``c_i`` are shared by
all conditions; ``theta = [h(e, c_1), ..., h(e, c_C)]``: each chunk embedding is concatenated
with the (encoded) condition and passed through one MLP whose linear head emits
``chunk_size`` values; the outputs are flattened and cut to the target's tensors. Small chunks
and narrow hidden layers give fewer parameters than the target (compression ratio below 1).

Head contract: piece 1 applies all head rows to the first ``C - 1`` chunks; piece 2 applies only
the rows the last chunk uses (no padding is computed). Chunk embeddings are the per-application
scale that hyperfan init uses (:meth:`scale_applications`).
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn

from .encoding import InputRange
from .hypernetwork import HeadPiece, Hypernetwork, mlp, unbatch
from .target import FunctionalTarget


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
    """``[c_i, E(cond)] -> MLP(hidden) -> linear head (chunk_size outputs)`` for every chunk ``i``."""

    def __init__(
        self,
        target: FunctionalTarget,
        cond_dim: int,
        *,
        chunk_size: int,
        chunk_emb_dim: int = 8,
        hidden: Sequence[int] = (25, 25),
        activation: str = "elu",
        last_activation: bool = True,
        mip_encoding: bool = False,
        residual: bool = False,
        input_range: InputRange = "unit",
    ) -> None:
        super().__init__(target, cond_dim, mip_encoding=mip_encoding, residual=residual, input_range=input_range)
        for name, value in (("chunk_size", chunk_size), ("chunk_emb_dim", chunk_emb_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.chunk_size = chunk_size
        self.num_chunks = math.ceil(self.num_weights / chunk_size)
        self.chunk_embeddings = nn.Parameter(torch.randn(self.num_chunks, chunk_emb_dim))
        in_dim = chunk_emb_dim + self.encoder.out_dim
        self.body = mlp(in_dim, hidden, activation, last_activation=last_activation)
        self.head = nn.Linear(hidden[-1] if hidden else in_dim, chunk_size)

    @property
    def last_chunk_size(self) -> int:
        """Entries of the last chunk that are used (the rest of it is padding)."""
        return self.num_weights - (self.num_chunks - 1) * self.chunk_size

    def _hidden(self, encoded: torch.Tensor) -> torch.Tensor:
        """Head inputs of every chunk, ``(B, C, d_k)``."""
        b = encoded.shape[0]
        chunks = self.chunk_embeddings.unsqueeze(0).expand(b, -1, -1)
        conds = encoded.unsqueeze(1).expand(-1, self.num_chunks, -1)
        return self.body(torch.cat([chunks, conds], dim=-1))

    def head_pieces(self, encoded: torch.Tensor) -> List[HeadPiece]:
        hidden = self._hidden(encoded)
        last = HeadPiece(hidden[:, -1:], slice(0, self.last_chunk_size))
        if self.num_chunks == 1:
            return [last]
        return [HeadPiece(hidden[:, :-1], slice(0, self.chunk_size)), last]

    @torch.no_grad()
    def scale_applications(self, factors: torch.Tensor) -> None:
        """Chunk ``i``'s embedding times ``factors[i]`` (one application per chunk)."""
        self.chunk_embeddings.mul_(factors.to(self.chunk_embeddings).unsqueeze(1))

    def forward(self, cond: torch.Tensor) -> List[torch.Tensor]:
        """Without a residual, the weights are views of one padded head output and the backward
        writes each gradient once (:class:`_SplitPadded`)."""
        if self.theta0 is not None:
            return super().forward(cond)
        batched = self.check_conditions(cond)
        padded = self.head(self._hidden(self.encoder(batched))).reshape(batched.shape[0], -1)
        weights = list(_SplitPadded.apply(padded, list(self.layout.numels), list(self.layout.shapes)))
        return unbatch(weights) if cond.dim() == 1 else weights
