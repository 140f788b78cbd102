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


def seeds_note(n_seeds: int) -> str:
    """``", mean over N seeds"`` when ``n_seeds > 1``, else nothing (one run is no mean)."""
    return f", mean over {n_seeds} seeds" if n_seeds > 1 else ""


def masked_matrix(matrix: np.ndarray) -> np.ma.MaskedArray:
    """``matrix`` with the cells that hold no result after training masked: not evaluated (NaN) and tasks
    not trained yet (column j > row i: an untrained task's chance-level score)."""
    matrix = np.asarray(matrix, dtype=float)
    untrained = np.triu(np.ones(matrix.shape, dtype=bool), k=1)
    return np.ma.array(matrix, mask=untrained | ~np.isfinite(matrix))


def matrix_figure(matrix: np.ndarray, score: str, title: str, n_seeds: int = 1):
    """Heatmap of a result matrix: row i = after training task i, column j = evaluated on task j. The
    colour scale spans the trained cells only; a task not trained yet (above the diagonal) or a cell
    not evaluated is grey (an untrained task's score, if evaluated, is printed in grey)."""
    plt = pyplot()
    matrix = np.asarray(matrix, dtype=float)
    data = masked_matrix(matrix)
    n_rows, n_cols = matrix.shape
    size = min(12.0, 3.0 + 0.45 * n_cols)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    cmap = plt.get_cmap("viridis" if score != "mse" else "viridis_r").with_extremes(bad="0.88")
    image = ax.imshow(data, cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax, label=f"{score}{seeds_note(n_seeds)}")
    if n_cols <= 12:
        for i in range(n_rows):
            for j in range(n_cols):
                if not math.isfinite(matrix[i, j]):
                    continue
                if data.mask[i, j]:
                    ink = "0.45"
                else:
                    r, g, b, _ = image.cmap(image.norm(matrix[i, j]))
                    ink = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
                ax.text(j, i, f"{matrix[i, j]:.3g}", ha="center", va="center", fontsize=7, color=ink)
    if n_cols <= 20:
        ax.set_xticks(range(n_cols))
        ax.set_yticks(range(n_rows))
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    grey = "\ngrey: task not trained yet, or not evaluated" if data.mask.any() else ""
    ax.set_title(f"{title}\n{score} on task j after training task i{seeds_note(n_seeds)}{grey}", fontsize=8)
    fig.tight_layout()
    return fig


def forgetting_figure(matrix: np.ndarray, score: str, title: str, n_seeds: int = 1):
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
    left.set_title(f"each task's {score} as later tasks are trained", fontsize=8)
    right.set_title(f"{score} just after training each task vs after the last", fontsize=8)
    fig.suptitle(title + seeds_note(n_seeds), fontsize=8)
    fig.tight_layout()
    return fig
