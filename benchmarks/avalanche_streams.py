"""Builds Avalanche benchmarks (with task labels) from in-memory tensors."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from avalanche.benchmarks.scenarios import benchmark_from_datasets, with_task_labels
from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute
from torch.utils.data import TensorDataset


def task_dataset(x: torch.Tensor, y: torch.Tensor, task: int) -> AvalancheDataset:
    """An AvalancheDataset yielding ``(x, y, task_label)``, with ``targets`` set."""
    labels = torch.full((len(x),), task, dtype=torch.long)
    return AvalancheDataset(
        [TensorDataset(x, y)],
        data_attributes=[
            DataAttribute(labels, "targets_task_labels", use_in_getitem=True),
            DataAttribute(y, "targets"),
        ],
    )


def task_benchmark(
    train: Sequence[Tuple[torch.Tensor, torch.Tensor]], test: Sequence[Tuple[torch.Tensor, torch.Tensor]]
):
    """One experience per task; experience ``i`` has task label ``i``."""
    return with_task_labels(
        benchmark_from_datasets(
            train=[task_dataset(x, y, i) for i, (x, y) in enumerate(train)],
            test=[task_dataset(x, y, i) for i, (x, y) in enumerate(test)],
        )
    )
