"""Hypernetwork input encodings (Gonzalez Ortiz et al. 2024, "Magnitude Invariant Parametrizations").

MIP Sec. 4.1: each input dimension gamma in [0, 1] is encoded as
``E(gamma) = [cos(gamma * pi / 2), sin(gamma * pi / 2)]``, a point on the unit circle, so the
encoded input has a constant norm whatever the input magnitude. Bounded inputs are min-max
scaled to [0, 1] first; unbounded inputs go through a logistic first.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

InputRange = Literal["unit", "unbounded"]
_TOLERANCE = 1e-6


def minmax_scale(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Scales ``x`` from ``[low, high]`` to ``[0, 1]`` (MIP Sec. 4.1, bounded inputs)."""
    if not high > low:
        raise ValueError(f"minmax_scale needs high > low, got low={low}, high={high}")
    return (x - low) / (high - low)


class MIPEncoding(nn.Module):
    """``E(gamma) = [cos(gamma pi/2), sin(gamma pi/2)]`` per input dimension (MIP Eq. 6).

    ``input_range="unit"`` expects inputs in [0, 1] and refuses others with a message that says
    how to scale them; ``input_range="unbounded"`` maps inputs through a logistic first
    (for learned task embeddings). Output width is twice the input width; the norm of the
    output is ``sqrt(in_dim)`` for every input.
    """

    def __init__(self, in_dim: int, input_range: InputRange = "unit") -> None:
        super().__init__()
        if input_range not in ("unit", "unbounded"):
            raise ValueError(f"input_range must be 'unit' or 'unbounded', got {input_range!r}")
        self.in_dim = in_dim
        self.out_dim = 2 * in_dim
        self.input_range = input_range

    def forward(self, gamma: torch.Tensor) -> torch.Tensor:
        if self.input_range == "unbounded":
            gamma = torch.sigmoid(gamma)
        else:
            lo, hi = float(gamma.min()), float(gamma.max())
            if lo < -_TOLERANCE or hi > 1 + _TOLERANCE:
                raise ValueError(
                    f"MIP encoding expects inputs in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                    "min-max scale bounded inputs with cl_moo.minmax_scale(x, low, high), or build "
                    "the hypernetwork with input_range='unbounded' to pass them through a logistic"
                )
        angle = gamma * (math.pi / 2)
        return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


class IdentityEncoding(nn.Module):
    """No encoding: the condition enters the hypernetwork as it is (the default parametrization).

    ``input_range`` only records what the conditions will be (``"unit"``: in [0, 1]; ``"unbounded"``:
    e.g. learned embeddings), so that the init probes the hypernetwork with such conditions."""

    def __init__(self, in_dim: int, input_range: InputRange = "unit") -> None:
        super().__init__()
        if input_range not in ("unit", "unbounded"):
            raise ValueError(f"input_range must be 'unit' or 'unbounded', got {input_range!r}")
        self.in_dim = in_dim
        self.out_dim = in_dim
        self.input_range = input_range

    def forward(self, gamma: torch.Tensor) -> torch.Tensor:
        return gamma
