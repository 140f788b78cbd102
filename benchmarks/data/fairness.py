"""Fairness benchmarks (Navon et al. 2021, Sec. 5.3): Adult, Default of credit card clients, Bank.

Each sample is ``(x, y, s)``: features, binary label, binary sensitive attribute.

* Adult: label ``salary == '>50K'``; sensitive ``sex == 'Female'``. Read from ``adult.csv`` (UCI's
  ``adult.data`` with a header row), else from the raw ``adult.data`` as UCI distributes it (no header
  row, ``", "`` separators); both give the same arrays. Only the training file is read (UCI's
  ``adult.test`` is not part of the benchmark; ``cl_moo.data.read_data_csv("adult.test")`` reads it).
* Default: label ``default.payment.next.month == 1``; sensitive ``SEX == 2`` (female).
* Bank: label ``y == 'yes'``; sensitive ``age < 25`` (young clients; chosen over marital status
  because it is the protected attribute most often used for this data set).

Categorical columns are one-hot encoded; numeric columns are standardised with the mean and
std of the training split only; a missing numeric value (empty, ``?`` or ``nan``, e.g. the two
``nan`` ages in the Default file) is set to the training mean. Malformed files (missing columns,
ragged rows, non-numeric cells, empty labels) and degenerate data (one group, one class, an empty
(group, label) cell in train or test) are refused with the file, line, column and counts; so is a
numeric column whose standardisation is not finite (a value so large that the mean or std overflows).
Splits (70% / 10% / 20% train / val / test) are fixed by the seed.

Objectives, with ``p = sigmoid(z)`` the predicted probability and groups ``g in {0, 1}``:

* ``l_1``: binary cross-entropy;
* FP fairness ``l_2 = | E[p | y=0, s=0] - E[p | y=0, s=1] |`` (gap in soft false-positive rate);
* FN fairness ``l_3 = | E[1-p | y=1, s=0] - E[1-p | y=1, s=1] |`` (gap in soft false-negative rate).

For evaluation the hard rates replace ``p`` by the decision ``1[z > 0]`` (:func:`hard_objectives`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import TensorDataset

from cl_moo.data import CsvTable, DataFormatError, DegenerateDataError, data_root, read_data_csv


@dataclass(frozen=True)
class FairnessSpec:
    """How a fairness CSV maps to ``(x, y, s)``; every column named here must be in the file.

    ``label_values`` / ``sensitive_values`` map a cell to its class / group, and any other cell
    (an empty one included) is refused; with ``sensitive_values=None`` the sensitive column is
    numeric and group 1 is ``value < sensitive_below``.
    """

    file: str
    delimiter: str
    label_column: str
    label_values: Mapping[str, int]
    sensitive_column: str
    sensitive_values: Optional[Mapping[str, int]]
    sensitive_below: Optional[float]
    categorical: Tuple[str, ...]
    drop: Tuple[str, ...]
    groups: Tuple[str, str]  # readable names of s=0 and s=1, for messages
    raw_file: Optional[str] = None  # read instead of ``file`` when only it is in the data root (UCI's own form)


SPECS: Dict[str, FairnessSpec] = {
    "adult": FairnessSpec(
        "adult.csv", ",", "salary", {"<=50K": 0, "<=50K.": 0, ">50K": 1, ">50K.": 1},
        "sex", {"Male": 0, "Female": 1}, None,
        ("workclass", "education", "marital-status", "occupation", "relationship", "race", "sex", "native-country"),
        ("salary",), ("sex=Male", "sex=Female"), "adult.data",
    ),
    "default": FairnessSpec(
        "default_credit.csv", ",", "default.payment.next.month", {"0": 0, "1": 1},
        "SEX", {"1": 0, "2": 1}, None,
        ("SEX", "EDUCATION", "MARRIAGE"), ("ID", "default.payment.next.month"), ("SEX=1 (male)", "SEX=2 (female)"),
    ),
    "bank": FairnessSpec(
        "bank-full.csv", ";", "y", {"no": 0, "yes": 1},
        "age", None, 25.0,
        ("job", "marital", "education", "default", "housing", "loan", "contact", "month", "poutcome"), ("y",),
        ("age>=25", "age<25"),
    ),
}


def _sensitive(table: CsvTable, spec: FairnessSpec) -> np.ndarray:
    """The binary sensitive attribute ``s``; an empty or unknown cell raises naming the row."""
    if spec.sensitive_values is not None:
        return table.codes(spec.sensitive_column, spec.sensitive_values, "the sensitive attribute")
    values = table.numeric(spec.sensitive_column)
    missing = np.flatnonzero(np.isnan(values))
    if len(missing):
        raise DataFormatError(
            f"{table.where(int(missing[0]), spec.sensitive_column)}: the sensitive attribute is missing "
            f"(rows without it: {len(missing)}); every row needs it to assign a group: fill in the cell or delete "
            "the row"
        )
    return (values < spec.sensitive_below).astype(np.int64)


def _check_cells(table: CsvTable, spec: FairnessSpec, y: np.ndarray, s: np.ndarray,
                 split: Dict[str, np.ndarray], rows_note: str) -> None:
    """Refuses data for which the FP/FN rate gaps are undefined, giving the counts."""
    where = f"{table.path}{rows_note}"
    groups = {spec.groups[g]: int((s == g).sum()) for g in (0, 1)}
    labels = {f"{spec.label_column}={'positive' if c else 'negative'} (y={c})": int((y == c).sum()) for c in (0, 1)}
    fix = "use the full published file, or a larger benchmark.max_rows"
    if min(groups.values()) == 0:
        raise DegenerateDataError(
            f"{where}: fewer than two sensitive groups among {len(y)} rows ({groups}); the FP/FN rate gaps "
            f"compare two groups: {fix}"
        )
    if min(labels.values()) == 0:
        raise DegenerateDataError(
            f"{where}: fewer than two label classes among {len(y)} rows ({labels}); the FP/FN rate gaps need "
            f"both classes: {fix}"
        )
    for part in ("train", "test"):
        idx = split[part]
        counts = {(g, c): int(((s[idx] == g) & (y[idx] == c)).sum()) for g in (0, 1) for c in (0, 1)}
        empty = [k for k, v in counts.items() if v == 0]
        if empty:
            g, c = empty[0]
            table_txt = ", ".join(f"(s={a},y={b}): {v}" for (a, b), v in counts.items())
            raise DegenerateDataError(
                f"{where}: the {part} split ({len(idx)} of {len(y)} rows) has no sample in cell (s={g}, y={c}) "
                f"[{spec.groups[g]}, y={c}], so the {'FP' if c == 0 else 'FN'}-rate gap is undefined; {part} cell "
                f"counts {table_txt}; {fix}"
            )


def _check_standardised(table: CsvTable, col: str, values: np.ndarray, scaled: np.ndarray, mean: float,
                        std: float, rows_note: str) -> None:
    """Refuses a numeric column whose standardisation is not finite in the float32 features (a value so
    large that the training mean or std overflows would otherwise turn the column into zeros), naming the cell."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(scaled.astype(np.float32)) & ~np.isnan(values)
    if math.isfinite(mean) and math.isfinite(std) and not bad.any():
        return
    i = int(np.nanargmax(np.abs(values)))  # the largest magnitude: the cell that overflows
    raise DataFormatError(
        f"{table.where(i, col)}{rows_note}: standardising column '{col}' gives non-finite values (training mean "
        f"{mean}, std {std}; the largest cell is {table.rows[i][table.header.index(col)]!r}, too large to standardise "
        "into float32 features); correct that cell, or rescale the column, or delete the row"
    )


def load_fairness(
    name: str, root: Union[str, Path, None] = None, *, seed: int = 0, max_rows: Optional[int] = None,
    verify: bool = True,
) -> Tuple[Dict[str, TensorDataset], Dict[str, object]]:
    """``({"train", "val", "test"} -> TensorDataset(x, y, s), info)`` for a fairness data set.

    A malformed file raises :class:`~cl_moo.data.DataFormatError` naming file, line, column and
    value; data on which the objectives are undefined (one group, one class, an empty
    (group, label) cell in train or test, a numeric column with no training value) raise
    :class:`~cl_moo.data.DegenerateDataError` with the counts.
    """
    if name not in SPECS:
        raise ValueError(f"unknown fairness data set {name!r}; choose one of {sorted(SPECS)}")
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows must be a number of rows >= 0 or None, got {max_rows}")
    spec = SPECS[name]
    file = spec.file
    if spec.raw_file and not (data_root(root) / file).is_file() and (data_root(root) / spec.raw_file).is_file():
        file = spec.raw_file  # e.g. UCI's adult.data, without the header row
    table = read_data_csv(file, root, delimiter=spec.delimiter, verify=verify)
    table.require([spec.label_column], "(the label column)")
    table.require([spec.sensitive_column], "(the sensitive-attribute column)")
    table.require(spec.categorical + spec.drop, "(listed as categorical or dropped for this data set)")
    rows_note = ""
    if max_rows is not None and max_rows < len(table):
        table, rows_note = table.head(max_rows), f" (first {max_rows} rows, benchmark.max_rows={max_rows})"
    y = table.codes(spec.label_column, spec.label_values, "the label")
    s = _sensitive(table, spec)
    columns = [c for c in table.header if c not in spec.drop]
    raw = {c: table.column(c) if c in spec.categorical else table.numeric(c) for c in columns}
    n = len(table)
    order = np.random.RandomState(seed).permutation(n)
    n_train, n_val = int(0.7 * n), int(0.1 * n)
    split = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    _check_cells(table, spec, y, s, split, rows_note)
    blocks, names = [], []
    for col in columns:
        values = raw[col]
        if col in spec.categorical:
            cats = sorted(set(values))
            index = {c: i for i, c in enumerate(cats)}
            onehot = np.zeros((n, len(cats)), dtype=np.float32)
            onehot[np.arange(n), [index[v] for v in values]] = 1.0
            blocks.append(onehot)
            names += [f"{col}={c}" for c in cats]
        else:
            num = values[:, None]
            train = num[split["train"]]
            if np.isnan(train).all():
                known = int((~np.isnan(num)).sum())
                cls = DegenerateDataError if known else DataFormatError
                raise cls(
                    f"{table.path}{rows_note}, column '{col}': no value in any of the {len(train)} training rows "
                    f"(all empty, '?' or nan; {known} values in the whole column), so it cannot be standardised or "
                    "imputed; fill in the column, or delete it from the file"
                )
            with np.errstate(over="ignore", invalid="ignore"):
                mean, std = np.nanmean(train), np.nanstd(train)
                scaled = (num - mean) / (std if std > 0 else 1.0)
            _check_standardised(table, col, num[:, 0], scaled[:, 0], float(mean), float(std), rows_note)
            blocks.append(np.nan_to_num(scaled, nan=0.0).astype(np.float32))  # missing -> train mean
            names.append(col)
    x = np.concatenate(blocks, axis=1)
    y, s = y.astype(np.float32), s.astype(np.float32)
    data = {
        k: TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), torch.from_numpy(s[idx]))
        for k, idx in split.items()
    }
    info = {"name": name, "n_features": x.shape[1], "n_rows": n, "positive_rate": float(y.mean()),
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
