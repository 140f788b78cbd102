"""1D regression task sequence (von Oswald et al. 2020, Sec. 4.1) as an Avalanche benchmark.

Task 1: y = x + 3 on [-4, -2]; task 2: y = 2x^2 - 1 on [-1, 1]; task 3: y = (x - 3)^3 on
[2, 4]; Gaussian noise with std 0.05 on the training targets; 100 training and 50 test points
per task (test points on a regular grid, noise-free).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch

from benchmarks.data.avalanche_streams import task_benchmark

TASKS: List[Tuple[Callable[[torch.Tensor], torch.Tensor], Tuple[float, float]]] = [
    (lambda x: x + 3.0, (-4.0, -2.0)),
    (lambda x: 2.0 * x.pow(2) - 1.0, (-1.0, 1.0)),
    (lambda x: (x - 3.0).pow(3), (2.0, 4.0)),
]


def regression_1d(*, n_train: int = 100, n_test: int = 50, noise_std: float = 0.05, seed: int = 0) -> Tuple[object, Dict]:
    """The three-task 1D regression benchmark and an info dict."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for fn, (lo, hi) in TASKS:
        x = lo + (hi - lo) * torch.rand(n_train, 1, generator=gen)
        y = fn(x) + noise_std * torch.randn(n_train, 1, generator=gen)
        xt = torch.linspace(lo, hi, n_test).unsqueeze(1)
        train.append((x, y))
        test.append((xt, fn(xt)))
    return task_benchmark(train, test), {"input_size": 1, "output_size": 1, "n_tasks": len(TASKS), "fallback": None}
