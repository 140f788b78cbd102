"""Published numbers that a report puts beside ours, each keyed by a predicate on the run config.

Values are in the units the runners write: accuracy as a fraction (the papers' 97.6 % is 0.976),
MSE as is, hypervolume as is. A predicate reads the flattened config (``{"target.hidden": [1000,
1000], ...}``) and says whether a group ran the published setting; training length is not part of
it, so a short run of the paper's architecture is compared with the paper's number. Sources are in
``/work/shared/design/REFERENCES.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

Config = Mapping[str, Any]

VON_OSWALD = "von Oswald et al. 2020, Continual learning with hypernetworks (ICLR)"
NAVON = "Navon et al. 2021, Learning the Pareto front with hypernetworks (ICLR), Table 2"
DIFFERENT_REF_POINT = "different ref. point"
CHEN_KWOK = ("Chen & Kwok 2022, Multi-Objective Deep Learning with Adaptive Reference Vectors (NeurIPS), Table 1: "
             "their runs of PHN, mean of 10 (PHN's own Table 1 could not be read here)")
REPRODUCTION = "another group's runs of PHN"


@dataclass(frozen=True)
class Published:
    """One published number: which metric, for which setting, from where."""

    name: str                       # short label of the setting, e.g. "PMNIST-10, MLP 1000-1000"
    metric: str                     # the metrics.json key it compares with
    value: float
    source: str
    matches: Callable[[Config], bool]
    note: str = ""                  # e.g. "different ref. point": not directly comparable


def _is(config: Config, **wanted: Any) -> bool:
    """True when every ``key=value`` holds (dots in keys written as ``__``)."""
    return all(config.get(key.replace("__", ".")) == value for key, value in wanted.items())


def _pmnist(config: Config, n_tasks: int, hidden: Optional[List[int]] = None) -> bool:
    """PMNIST with the task id given, plain (non-MIP) hypernetwork, and optionally a target width."""
    return (_is(config, benchmark__name="pmnist", benchmark__n_tasks=n_tasks, strategy__task_inference="given")
            and not config.get("hnet.mip", False)
            and (hidden is None or config.get("target.hidden") == hidden))


def _regularized(config: Config) -> bool:
    return config.get("strategy.name") == "hnet_cl" and (config.get("strategy.beta") or 0) > 0


def _finetuned(config: Config) -> bool:
    return config.get("strategy.name") in ("hnet_cl", "finetune") and config.get("strategy.beta") == 0


def _regression_paper(config: Config) -> bool:
    return (_is(config, benchmark__name="regression", target__hidden=[10, 10], hnet__chunked=False,
                hnet__hidden=[10, 10], strategy__task_inference="given")
            and _regularized(config) and not config.get("hnet.mip", False))


def _fairness(benchmark: str, strategy: str) -> Callable[[Config], bool]:
    return lambda config: _is(config, benchmark__name=benchmark, strategy__name=strategy)


# von Oswald et al. 2020, regression Sec. 4.1: final MSE per task 0.0042 / 0.0024 / 0.0061
REGRESSION_FINAL_MSE = (0.0042, 0.0024, 0.0061)

PUBLISHED: List[Published] = [
    Published("PMNIST-10, MLP 1000-1000", "average_final", 0.976, VON_OSWALD,
              lambda c: _pmnist(c, 10, [1000, 1000]) and _regularized(c)),
    Published("PMNIST-10, MLP 100-100", "average_final", 0.9505, VON_OSWALD,
              lambda c: _pmnist(c, 10, [100, 100]) and _regularized(c)),
    Published("PMNIST-10 fine-tuning, MLP 1000-1000", "average_final", 0.9008, VON_OSWALD,
              lambda c: _pmnist(c, 10, [1000, 1000]) and _finetuned(c)),
    Published("PMNIST-10 fine-tuning, MLP 100-100", "average_final", 0.4789, VON_OSWALD,
              lambda c: _pmnist(c, 10, [100, 100]) and _finetuned(c)),
    Published("PMNIST-100", "average_final", 0.9590, VON_OSWALD,
              lambda c: _pmnist(c, 100) and _regularized(c)),
    Published("1D regression, final MSE (mean of 0.0042/0.0024/0.0061)", "average_final",
              sum(REGRESSION_FINAL_MSE) / len(REGRESSION_FINAL_MSE), VON_OSWALD, _regression_paper),
]
_FAIRNESS_HV: Dict[str, Dict[str, float]] = {  # Navon et al. 2021; their "EPO" row (separate EPO models) has no runner
    "adult": {"ls_separate": 0.628, "phn_ls": 0.658, "phn_epo": 0.648},
    "default": {"ls_separate": 0.522, "phn_ls": 0.551},
    "bank": {"ls_separate": 0.704, "phn_ls": 0.730, "phn_epo": 0.748},
}
_LABEL = {"ls_separate": "LS", "phn_ls": "PHN-LS", "phn_epo": "PHN-EPO"}
PUBLISHED += [
    Published(f"{benchmark} {_LABEL[strategy]} hypervolume", "hypervolume", hv, NAVON,
              _fairness(benchmark, strategy), note=DIFFERENT_REF_POINT)
    for benchmark, rows in _FAIRNESS_HV.items() for strategy, hv in rows.items()
]


# Chen & Kwok 2022, Table 1 (reference point (2, 2) as PHN's); keys are benchmark.kind and the strategy
MULTIMNIST_PHN_HV: Dict[str, Dict[str, float]] = {
    "mnist": {"phn_ls": 2.79, "phn_epo": 2.82},
    "fashion": {"phn_ls": 2.14, "phn_epo": 2.16},
    "fashion_mnist": {"phn_ls": 2.67, "phn_epo": 2.74},
}


def _multimnist(kind: str, strategy: str) -> Callable[[Config], bool]:
    solver = strategy.split("_", 1)[1]
    return lambda config: _is(config, benchmark__name="multimnist", benchmark__kind=kind, strategy__name=strategy,
                              strategy__solver=solver)


PUBLISHED += [
    Published(f"Multi-MNIST ({kind}) {_LABEL[strategy]} hypervolume", "hypervolume", hv, CHEN_KWOK,
              _multimnist(kind, strategy), note=REPRODUCTION)
    for kind, rows in MULTIMNIST_PHN_HV.items() for strategy, hv in rows.items()
]


def published_for(config: Config, metric: str) -> Optional[Published]:
    """The published number for ``metric`` whose setting ``config`` (flattened) matches, else None."""
    for entry in PUBLISHED:
        if entry.metric == metric and entry.matches(config):
            return entry
    return None
