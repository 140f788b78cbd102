"""Builds Avalanche benchmarks (with task labels) from in-memory tensors."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from avalanche.benchmarks.scenarios import benchmark_from_datasets, with_task_labels
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute
from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset
from torch.utils.data import Dataset, TensorDataset

from strategies.fast_batches import RowSource, tag_rows


class PermutedRows(Dataset):
    """``(x[i][perm], y[i])``: a fixed permutation of the columns of ``x`` applied per sample, so that
    T permuted tasks share one copy of the data (PMNIST-100 pre-permuted would need 100 copies)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> None:
        if len(x) != len(y) or x.dim() != 2 or sorted(perm.tolist()) != list(range(x.shape[1])):
            raise ValueError(f"need x (N, D), y (N,) and a permutation of range(D); got x {tuple(x.shape)}, "
                             f"y {tuple(y.shape)}, perm of length {len(perm)}")
        self.x, self.y, self.perm = x, y, perm
        self.source = RowSource(x, y, perm=perm)  # whole-batch fetch (strategies.fast_batches)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].index_select(0, self.perm), self.y[i]


class TensorRows(TensorDataset):
    """``(x[i], y[i])``, with a :class:`RowSource` for whole-batch fetches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__(x, y)
        self.source = RowSource(x, y)


def task_dataset(x: torch.Tensor, y: torch.Tensor, task: int, perm: Optional[torch.Tensor] = None) -> AvalancheDataset:
    """An AvalancheDataset yielding ``(x, y, task_label)`` (with ``x``'s columns permuted by ``perm``
    if given), with ``targets`` set; integer targets give Avalanche's task-aware classification
    dataset (``task_set``, used e.g. by ``LwFPlugin``)."""
    labels = torch.full((len(x),), task, dtype=torch.long)
    kind = AvalancheDataset if y.is_floating_point() else TaskAwareSupervisedClassificationDataset
    rows = TensorRows(x, y) if perm is None else PermutedRows(x, y, perm)
    return kind(
        [rows],
        data_attributes=[
            DataAttribute(labels, "targets_task_labels", use_in_getitem=True),
            DataAttribute(y, "targets"),
            tag_rows(rows.source),
        ],
    )


def task_benchmark(
    train: Sequence[Tuple[torch.Tensor, ...]], test: Sequence[Tuple[torch.Tensor, ...]]
):
    """One experience per task from ``(x, y)`` or ``(x, y, column permutation)`` tuples; experience
    ``i`` has task label ``i``. Classification streams
    (integer targets) also carry Avalanche's classes timeline (``classes_in_this_experience``, used
    by multi-head models and plugins)."""
    bench = with_task_labels(
        benchmark_from_datasets(
            train=[task_dataset(x, y, i, *perm) for i, (x, y, *perm) in enumerate(train)],
            test=[task_dataset(x, y, i, *perm) for i, (x, y, *perm) in enumerate(test)],
        )
    )
    if all(not xy[1].is_floating_point() for xy in list(train) + list(test)):
        bench = with_classes_timeline(bench)
        for stream in bench.streams.values():
            for exp in stream:  # lists, as Avalanche's own generators give (multi-head modules index with them)
                exp.classes_in_this_experience = sorted(int(c) for c in exp.classes_in_this_experience)
    return bench
