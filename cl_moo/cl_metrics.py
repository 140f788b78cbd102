"""Continual-learning summaries of a result matrix ``R`` (row i: after training task i; column j: task j).

* average final score: ``mean_j R[T-1, j]``
* forgetting of task j (Chaudhry et al. 2018): best earlier score minus final score,
  ``max_{i<T-1} R[i, j] - R[T-1, j]`` for accuracy; for errors such as MSE (lower is better)
  the increase ``R[T-1, j] - min_{i<T-1} R[i, j]``; averaged over j < T-1
* backward transfer (Lopez-Paz & Ranzato 2017): ``mean_{j<T-1} R[T-1, j] - R[j, j]``
  (for errors, the sign is flipped so that positive means better)
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np


def cl_summary(matrix: Sequence[Sequence[float]], *, higher_is_better: bool = True) -> Dict[str, object]:
    """Average final score, per-task and average forgetting, BWT of a (partial) result matrix.

    ``matrix`` may hold only the first k rows (k tasks trained so far); entries for tasks not
    yet trained are ignored.
    """
    rows = [list(map(float, r)) for r in matrix]
    k = len(rows)
    if k == 0:
        raise ValueError("empty result matrix")
    final = np.array(rows[-1][:k])
    sign = 1.0 if higher_is_better else -1.0
    forgetting: List[float] = []
    bwt: List[float] = []
    for j in range(k - 1):
        earlier = [rows[i][j] for i in range(j, k - 1)]
        best = max(earlier) if higher_is_better else min(earlier)
        forgetting.append(sign * (best - rows[-1][j]))
        bwt.append(sign * (rows[-1][j] - rows[j][j]))
    return {
        "average_final": float(final.mean()),
        "forgetting_per_task": forgetting,
        "average_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
        "bwt": float(np.mean(bwt)) if bwt else 0.0,
    }
