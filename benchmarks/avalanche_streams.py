"""Builds Avalanche benchmarks (with task labels) from in-memory tensors."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from avalanche.benchmarks.scenarios import benchmark_from_datasets, with_task_labels
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute
from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset
from torch.utils.data import TensorDataset


def task_dataset(x: torch.Tensor, y: torch.Tensor, task: int) -> AvalancheDataset:
    """An AvalancheDataset yielding ``(x, y, task_label)``, with ``targets`` set; integer targets give
    Avalanche's task-aware classification dataset (``task_set``, used e.g. by ``LwFPlugin``)."""
    labels = torch.full((len(x),), task, dtype=torch.long)
    kind = AvalancheDataset if y.is_floating_point() else TaskAwareSupervisedClassificationDataset
    return kind(
        [TensorDataset(x, y)],
        data_attributes=[
            DataAttribute(labels, "targets_task_labels", use_in_getitem=True),
            DataAttribute(y, "targets"),
        ],
    )


def task_benchmark(
    train: Sequence[Tuple[torch.Tensor, torch.Tensor]], test: Sequence[Tuple[torch.Tensor, torch.Tensor]]
):
    """One experience per task; experience ``i`` has task label ``i``. Classification streams
    (integer targets) also carry Avalanche's classes timeline (``classes_in_this_experience``, used
    by multi-head models and plugins)."""
    bench = with_task_labels(
        benchmark_from_datasets(
            train=[task_dataset(x, y, i) for i, (x, y) in enumerate(train)],
            test=[task_dataset(x, y, i) for i, (x, y) in enumerate(test)],
        )
    )
    if all(not y.is_floating_point() for _, y in list(train) + list(test)):
        bench = with_classes_timeline(bench)
        for stream in bench.streams.values():
            for exp in stream:  # lists, as Avalanche's own generators give (multi-head modules index with them)
                exp.classes_in_this_experience = sorted(int(c) for c in exp.classes_in_this_experience)
    return bench
