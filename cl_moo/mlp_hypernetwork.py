"""MLP hypernetwork with one output head per target tensor (Navon et al. 2021, Sec. 4, PHN).

``theta_j = W_j f(r) + b_j``: the heads of all target tensors are stored as ONE linear layer
whose rows ``layout.slices[j]`` form the head of tensor ``j`` (the same function as separate
heads, computed in one matrix product). One head piece, applied once per condition.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .encoding import InputRange
from .hypernetwork import HeadPiece, Hypernetwork, mlp
from .target import FunctionalTarget


class MLPHypernetwork(Hypernetwork):
    """``cond -> E(cond) -> MLP(hidden) -> linear head (num_weights outputs)``."""

    def __init__(
        self,
        target: FunctionalTarget,
        cond_dim: int,
        *,
        hidden: Sequence[int] = (100, 100, 100),
        activation: str = "relu",
        last_activation: bool = True,
        mip_encoding: bool = False,
        residual: bool = False,
        input_range: InputRange = "unit",
    ) -> None:
        super().__init__(target, cond_dim, mip_encoding=mip_encoding, residual=residual, input_range=input_range)
        self.body = mlp(self.encoder.out_dim, hidden, activation, last_activation=last_activation)
        d_k = hidden[-1] if hidden else self.encoder.out_dim
        self.head = nn.Linear(d_k, self.num_weights)

    def head_pieces(self, encoded: torch.Tensor) -> List[HeadPiece]:
        return [HeadPiece(self.body(encoded).unsqueeze(1), slice(0, self.num_weights))]

    def generate_parts(self, encoded: torch.Tensor) -> List[torch.Tensor]:
        """One head output ``(B, num_weights)`` (the contract's single piece, without a reshape)."""
        return [self.head(self.body(encoded))]
