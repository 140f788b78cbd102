"""Figures of a continual-learning result matrix (row i = after task i, column j = task j).

Shared by the runner (PNG next to ``metrics.json`` and TensorBoard images) and the report.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib's pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Writes ``fig`` as PNG and closes it."""
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def matrix_figure(matrix: np.ndarray, score: str, title: str):
    """Heatmap of a result matrix: row i = after training task i, column j = evaluated on task j."""
    plt = pyplot()
    n_rows, n_cols = matrix.shape
    size = min(12.0, 3.0 + 0.45 * n_cols)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis" if score != "mse" else "viridis_r", aspect="auto")
    fig.colorbar(image, ax=ax, label=f"{score} (mean over seeds)")
    if n_cols <= 12:
        for i in range(n_rows):
            for j in range(n_cols):
                if math.isfinite(matrix[i, j]):
                    r, g, b, _ = image.cmap(image.norm(matrix[i, j]))
                    ink = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
                    ax.text(j, i, f"{matrix[i, j]:.3g}", ha="center", va="center", fontsize=7, color=ink)
    if n_cols <= 20:
        ax.set_xticks(range(n_cols))
        ax.set_yticks(range(n_rows))
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def forgetting_figure(matrix: np.ndarray, score: str, title: str):
    """Left: each task's score over the tasks trained since (accuracy over time); right: just after
    training it vs after the last task (forgetting)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    k = min(matrix.shape)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for j in range(k):
        left.plot(range(j, k), matrix[j:k, j], marker="o", ms=3, label=f"task {j}")
    left.set_xlabel("after training task i")
    left.set_ylabel(f"{score} on task j")
    if k <= 10:
        left.legend(fontsize=7)
    tasks = np.arange(k)
    right.plot(tasks, np.diag(matrix)[:k], marker="o", label="just after training it")
    right.plot(tasks, matrix[k - 1, :k], marker="s", label="after the last task")
    right.set_xlabel("task j")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel(score)
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
