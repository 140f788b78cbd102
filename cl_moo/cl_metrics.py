"""Continual-learning summaries of a result matrix ``R`` (row i: after training task i; column j: task j).

* average final score: ``mean_j R[T-1, j]``
* forgetting of task j (Chaudhry et al. 2018): best earlier score minus final score,
  ``max_{i<T-1} R[i, j] - R[T-1, j]`` for accuracy; for errors such as MSE (lower is better)
  the increase ``R[T-1, j] - min_{i<T-1} R[i, j]``; averaged over j < T-1
* backward transfer (Lopez-Paz & Ranzato 2017): ``mean_{j<T-1} R[T-1, j] - R[j, j]``
  (for errors, the sign is flipped so that positive means better)
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

import numpy as np


def cl_summary(matrix: Sequence[Sequence[float]], *, higher_is_better: bool = True) -> Dict[str, object]:
    """Average final score, per-task and average forgetting, BWT of a (partial) result matrix.

    ``matrix`` may hold only the first k rows (k tasks trained so far); entries for tasks not
    yet trained are ignored. Entries not evaluated (None, e.g. a run that evaluates only the task
    just trained) are skipped: the average is over the evaluated tasks of the last row, and
    forgetting uses the evaluated earlier scores of each task that the last row evaluated
    (``forgetting_measured`` counts those tasks). A NaN score stays NaN and makes the summary NaN.
    """
    rows = [[None if v is None else float(v) for v in r] for r in matrix]
    k = len(rows)
    if k == 0:
        raise ValueError("empty result matrix")
    final = [v for v in rows[-1][:k] if v is not None]
    if not final:
        raise ValueError(f"the last row of the result matrix evaluates none of the {k} trained tasks")
    sign = 1.0 if higher_is_better else -1.0
    forgetting: List[float] = []
    bwt: List[float] = []
    for j in range(k - 1):
        earlier = [rows[i][j] for i in range(j, k - 1) if rows[i][j] is not None]
        if rows[-1][j] is None or not earlier:
            continue
        best = max(earlier) if higher_is_better else min(earlier)
        if any(math.isnan(v) for v in earlier):
            best = math.nan
        forgetting.append(sign * (best - rows[-1][j]))
        if rows[j][j] is not None:
            bwt.append(sign * (rows[-1][j] - rows[j][j]))
    return {
        "average_final": float(np.mean(final)),
        "forgetting_measured": len(forgetting),
        "forgetting_per_task": forgetting,
        "average_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
        "bwt": float(np.mean(bwt)) if bwt else 0.0,
    }
