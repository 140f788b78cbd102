"""The one description of a generated weight set: names, shapes, sizes and offsets.

A hypernetwork emits all target tensors as one flat vector ``theta`` (von Oswald et al. 2020,
Eq. 1; chunked: the concatenated chunks, cut to ``num_weights``). :class:`WeightLayout` says
where each tensor lives in that vector and converts between the flat form and the tensors.
Every part of the library (target, generators, initialisation, regularizer) reads it; nothing
recomputes offsets.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import torch


@dataclass(frozen=True)
class WeightLayout:
    """Names and shapes of the generated tensors, in the order of the flat vector."""

    names: Tuple[str, ...]
    shapes: Tuple[torch.Size, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.shapes):
            raise ValueError(f"{len(self.names)} names but {len(self.shapes)} shapes")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"tensor names given twice: {list(self.names)}")
        object.__setattr__(self, "shapes", tuple(torch.Size(s) for s in self.shapes))

    @classmethod
    def from_named(cls, named: Iterable[Tuple[str, Sequence[int]]]) -> "WeightLayout":
        """Layout of ``(name, shape)`` pairs, e.g. ``module.named_parameters()`` shapes."""
        pairs = list(named)
        return cls(tuple(n for n, _ in pairs), tuple(torch.Size(s) for _, s in pairs))

    @property
    def numels(self) -> Tuple[int, ...]:
        """Entries of each tensor."""
        return tuple(int(torch.Size(s).numel()) for s in self.shapes)

    @property
    def offsets(self) -> Tuple[int, ...]:
        """Start of each tensor in the flat vector, plus the total at the end."""
        out = [0]
        for n in self.numels:
            out.append(out[-1] + n)
        return tuple(out)

    @property
    def num_weights(self) -> int:
        """Length of the flat vector."""
        return self.offsets[-1]

    @property
    def slices(self) -> Tuple[slice, ...]:
        """``slice`` of each tensor in the flat vector."""
        off = self.offsets
        return tuple(slice(a, b) for a, b in zip(off[:-1], off[1:]))

    def __len__(self) -> int:
        return len(self.names)

    def split(self, flat: torch.Tensor) -> List[torch.Tensor]:
        """Cuts ``(..., num_weights)`` into tensors ``(..., *shape)`` (views, no copy)."""
        if flat.shape[-1] != self.num_weights:
            raise ValueError(f"expected {self.num_weights} weights in the last dimension, got {flat.shape[-1]}")
        lead = flat.shape[:-1]
        return [p.reshape(*lead, *s) for p, s in zip(torch.split(flat, list(self.numels), dim=-1), self.shapes)]

    def join(self, tensors: Sequence[torch.Tensor], batch_dims: int = 0) -> torch.Tensor:
        """Inverse of :meth:`split`: tensors ``(*lead, *shape)`` -> ``(*lead, num_weights)``."""
        if len(tensors) != len(self):
            raise ValueError(f"expected {len(self)} tensors ({list(self.names)}), got {len(tensors)}")
        lead = tensors[0].shape[:batch_dims]
        return torch.cat([t.reshape(*lead, -1) for t in tensors], dim=-1)

    def as_dict(self, tensors: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``{name: tensor}`` of a weight set given in layout order."""
        return dict(zip(self.names, tensors))

    def ordered(self, weights: Mapping[str, torch.Tensor]) -> List[torch.Tensor]:
        """Tensors of a ``{name: tensor}`` weight set in layout order. Refuses a set with missing or
        unknown names (an ignored misspelled key would leave its tensor unused), naming both and, for
        each unknown name, the closest expected one."""
        expected = set(self.names)
        missing = [n for n in self.names if n not in weights]
        unknown = [n for n in weights if n not in expected]
        if missing or unknown:
            parts = []
            if unknown:
                hints = []
                for n in unknown:
                    close = difflib.get_close_matches(str(n), list(self.names), n=1)
                    hints.append(f"{n!r} (did you mean {close[0]!r}?)" if close else repr(n))
                parts.append(f"has unknown name(s) {', '.join(hints)}")
            if missing:
                parts.append(f"lacks {missing}")
            raise KeyError(f"weight set {' and '.join(parts)}; expected exactly {list(self.names)}")
        return [weights[n] for n in self.names]

    def describe(self) -> List[Dict[str, object]]:
        """``[{name, shape, numel, offset}]``: what a run records about its generated tensors."""
        return [
            {"name": n, "shape": list(s), "numel": k, "offset": o}
            for n, s, k, o in zip(self.names, self.shapes, self.numels, self.offsets)
        ]
