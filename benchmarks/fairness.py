"""Fairness benchmarks (Navon et al. 2021, Sec. 5.3): Adult, Default of credit card clients, Bank.

Each sample is ``(x, y, s)``: features, binary label, binary sensitive attribute.

* Adult: label ``salary == '>50K'``; sensitive ``sex == 'Female'``.
* Default: label ``default.payment.next.month == 1``; sensitive ``SEX == 2`` (female).
* Bank: label ``y == 'yes'``; sensitive ``age < 25`` (young clients; chosen over marital status
  because it is the protected attribute most often used for this data set).

Categorical columns are one-hot encoded; numeric columns are standardised with the mean and
std of the training split only; a missing numeric value (e.g. the two ``nan`` ages in the
Default file) is set to the training mean. Splits (70% / 10% / 20% train / val / test) are fixed by the seed.

Objectives, with ``p = sigmoid(z)`` the predicted probability and groups ``g in {0, 1}``:

* ``l_1``: binary cross-entropy;
* FP fairness ``l_2 = | E[p | y=0, s=0] - E[p | y=0, s=1] |`` (gap in soft false-positive rate);
* FN fairness ``l_3 = | E[1-p | y=1, s=0] - E[1-p | y=1, s=1] |`` (gap in soft false-negative rate).

For evaluation the hard rates replace ``p`` by the decision ``1[z > 0]`` (:func:`hard_objectives`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import TensorDataset

from cl_moo.data import require_file


@dataclass(frozen=True)
class FairnessSpec:
    file: str
    delimiter: str
    label: Callable[[Dict[str, str]], int]
    sensitive: Callable[[Dict[str, str]], int]
    categorical: Tuple[str, ...]
    drop: Tuple[str, ...]


SPECS: Dict[str, FairnessSpec] = {
    "adult": FairnessSpec(
        "adult.csv", ",", lambda r: int(r["salary"].startswith(">50K")), lambda r: int(r["sex"] == "Female"),
        ("workclass", "education", "marital-status", "occupation", "relationship", "race", "sex", "native-country"),
        ("salary",),
    ),
    "default": FairnessSpec(
        "default_credit.csv", ",", lambda r: int(r["default.payment.next.month"] == "1"), lambda r: int(r["SEX"] == "2"),
        ("SEX", "EDUCATION", "MARRIAGE"), ("ID", "default.payment.next.month"),
    ),
    "bank": FairnessSpec(
        "bank-full.csv", ";", lambda r: int(r["y"] == "yes"), lambda r: int(float(r["age"]) < 25),
        ("job", "marital", "education", "default", "housing", "loan", "contact", "month", "poutcome"), ("y",),
    ),
}


def _read_rows(path: Path, delimiter: str) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        return [{k.strip().strip('"'): v.strip().strip('"') for k, v in row.items()} for row in reader]


def load_fairness(
    name: str, root: Union[str, Path, None] = None, *, seed: int = 0, max_rows: Optional[int] = None,
    verify: bool = True,
) -> Tuple[Dict[str, TensorDataset], Dict[str, object]]:
    """``({"train", "val", "test"} -> TensorDataset(x, y, s), info)`` for a fairness data set."""
    if name not in SPECS:
        raise ValueError(f"unknown fairness data set {name!r}; choose one of {sorted(SPECS)}")
    spec = SPECS[name]
    rows = _read_rows(require_file(spec.file, root, verify=verify), spec.delimiter)
    if max_rows is not None:
        rows = rows[:max_rows]
    y = np.array([spec.label(r) for r in rows], dtype=np.float32)
    s = np.array([spec.sensitive(r) for r in rows], dtype=np.float32)
    columns = [c for c in rows[0] if c not in spec.drop]
    order = np.random.RandomState(seed).permutation(len(rows))
    n_train, n_val = int(0.7 * len(rows)), int(0.1 * len(rows))
    split = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    blocks, names = [], []
    for col in columns:
        values = [r[col] for r in rows]
        if col in spec.categorical:
            cats = sorted(set(values))
            index = {c: i for i, c in enumerate(cats)}
            onehot = np.zeros((len(rows), len(cats)), dtype=np.float32)
            onehot[np.arange(len(rows)), [index[v] for v in values]] = 1.0
            blocks.append(onehot)
            names += [f"{col}={c}" for c in cats]
        else:
            num = np.array([float(v) if v not in ("", "?") else np.nan for v in values], dtype=np.float64)[:, None]
            mean, std = np.nanmean(num[split["train"]]), np.nanstd(num[split["train"]])
            scaled = (num - mean) / (std if std > 0 else 1.0)
            blocks.append(np.nan_to_num(scaled, nan=0.0).astype(np.float32))  # missing -> train mean
            names.append(col)
    x = np.concatenate(blocks, axis=1)
    data = {
        k: TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), torch.from_numpy(s[idx]))
        for k, idx in split.items()
    }
    info = {"name": name, "n_features": x.shape[1], "n_rows": len(rows), "positive_rate": float(y.mean()),
            "sensitive_rate": float(s.mean()), "feature_names": names}
    return data, info


def _group_gap(values: torch.Tensor, mask: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``| mean(values | mask, s=0) - mean(values | mask, s=1) |`` with masks as weights (vmap-safe)."""
    w0, w1 = mask * (1 - s), mask * s
    m0 = (values * w0).sum() / w0.sum().clamp_min(1.0)
    m1 = (values * w1).sum() / w1.sum().clamp_min(1.0)
    return (m0 - m1).abs()


def bce_loss(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``l_1``: binary cross-entropy of the logits."""
    return torch.nn.functional.binary_cross_entropy_with_logits(z.reshape(y.shape), y)


def fp_gap_loss(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``l_2``: gap in soft false-positive rate ``E[sigmoid(z) | y=0]`` between the groups."""
    return _group_gap(torch.sigmoid(z.reshape(y.shape)), 1 - y, s)


def fn_gap_loss(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``l_3``: gap in soft false-negative rate ``E[1 - sigmoid(z) | y=1]`` between the groups."""
    return _group_gap(1 - torch.sigmoid(z.reshape(y.shape)), y, s)


FAIRNESS_LOSSES = (bce_loss, fp_gap_loss, fn_gap_loss)


def soft_objectives(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The trained objectives ``(l_1, l_2, l_3)`` (BCE and the soft rate gaps) as one vector."""
    return torch.stack([fn(z, y, s) for fn in FAIRNESS_LOSSES])


def hard_objectives(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Evaluation objectives: BCE, and the hard FPR / FNR gaps with decisions ``1[z > 0]``."""
    z = z.reshape(y.shape)
    decision = (z > 0).float()
    return torch.stack([bce_loss(z, y, s), _group_gap(decision, 1 - y, s), _group_gap(1 - decision, y, s)])
