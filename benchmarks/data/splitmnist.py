"""Split MNIST, task-incremental (Zenke et al. 2017; von Oswald et al. 2020, Sec. 4.3 "CL1").

Five tasks of two digits each, (0, 1), (2, 3), ..., (8, 9); labels within a task are 0 / 1 and
every experience carries its task label, so each task has its own output head. Images are scaled
to [0, 1] and flattened (784 inputs). Data: the MNIST idx files of the data root (see
:func:`benchmarks.data.pmnist.load_mnist`, which falls back to the test split and says so).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from benchmarks.data.avalanche_streams import task_benchmark
from benchmarks.data.pmnist import load_mnist

PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def split_mnist(*, root: Union[str, Path, None] = None, verify: bool = True, download: bool = False,
                n_tasks: int = len(PAIRS), train_per_task: Optional[int] = None, test_per_task: Optional[int] = None,
                seed: int = 0) -> Tuple[object, Dict]:
    """The Split MNIST benchmark (Avalanche streams with task labels; the first ``n_tasks`` of the five digit
    pairs) and an info dict. ``train_per_task`` / ``test_per_task``: a seeded random subset of each task's
    images (None: all)."""
    if not 1 <= n_tasks <= len(PAIRS):
        raise ValueError(f"n_tasks={n_tasks}: Split MNIST has {len(PAIRS)} tasks (digit pairs {PAIRS}); pass 1 to 5")
    xtr, ytr, xte, yte, info = load_mnist(root, download=download, verify=verify)
    gen = np.random.RandomState(seed)
    train, test = [], []
    for a, b in PAIRS[:n_tasks]:
        parts = []
        for x, y, limit in ((xtr, ytr, train_per_task), (xte, yte, test_per_task)):
            idx = np.flatnonzero((y == a) | (y == b))
            if limit is not None:
                idx = np.sort(gen.permutation(idx)[:limit])
            xs = torch.from_numpy(x[idx].reshape(len(idx), -1).astype(np.float32) / 255.0)
            parts.append((xs, torch.from_numpy((y[idx] == b).astype(np.int64))))
        train.append(parts[0])
        test.append(parts[1])
    info.update({"input_size": 784, "num_classes": 2, "n_tasks": n_tasks, "pairs": PAIRS[:n_tasks]})
    return task_benchmark(train, test), info
