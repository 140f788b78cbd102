"""The implemented papers' own headline claims, each reproduced by one command with a figure.

``python -m benchmarks.experiments.paper_claims <name>`` runs one claim over seeds 0-2 (``--seeds`` for others) and
writes ``bench/results/paper_claims/<name>.json`` and ``<name>.png``. The JSON holds the paper's claim in
its own words, ``holds`` (``true``, ``false`` or ``"partly"``) decided from the numbers by the claim's
module, the numbers behind it, the settings and the seeds. A claim that does not hold here is recorded as
such, with what was checked.

Each claim is one module of this package with ``PAPER``, ``CLAIM`` (the paper's words), ``SETTING`` (what
is run, and where it departs from the paper) and ``run(*, seeds, quick, figure) -> ClaimOutcome``.
"""

from dataclasses import dataclass, field
from importlib import import_module
from types import ModuleType
from typing import Any, Dict, List, Union

Holds = Union[bool, str]

#: Claim name -> module of this package that reproduces it.
CLAIMS: Dict[str, str] = {
    "mip_magnitude": "mip_magnitude",
    "mip_convergence": "mip_convergence",
    "hyperfan_scale": "hyperfan_scale",
    "hyperfan_cl": "hyperfan_cl",
}


@dataclass
class ClaimOutcome:
    """What one claim's run found: ``holds`` from the numbers, the numbers and a sentence with them."""

    holds: Holds
    summary: str
    numbers: Dict[str, Any]
    settings: Dict[str, Any] = field(default_factory=dict)
    checked: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.holds not in (True, False, "partly"):
            raise ValueError(f"holds must be true, false or 'partly', got {self.holds!r}")


def claim_module(name: str) -> ModuleType:
    """The module that reproduces claim ``name``; an unknown name is refused with the known ones."""
    if name not in CLAIMS:
        raise KeyError(f"unknown paper claim {name!r}; known: {', '.join(sorted(CLAIMS))}")
    return import_module(f"{__name__}.{CLAIMS[name]}")
