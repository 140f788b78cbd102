"""Task-conditioned hypernetwork model (von Oswald et al. 2020, Eq. 1): ``theta_t = h(e_t)``.

Holds the functional target network, the hypernetwork and one learned embedding per task.
Each task's generated weights include its own output layer, so every task has its own head
(the multi-head, task-incremental setting "CL1"). Task inference by the lowest predictive
entropy over all learned embeddings ("CL3", HNET+ENT in the paper) is :meth:`infer_task`.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from cl_moo import FunctionalTarget, Hypernetwork, build_hypernetwork


class TaskConditionedHypernetwork(nn.Module):
    """``forward(x, task_labels)`` runs every sample with the weights of its task."""

    def __init__(self, target: FunctionalTarget, hnet: Hypernetwork, *, emb_std: float = 1.0) -> None:
        super().__init__()
        self.target = target
        self.hnet = hnet
        self.emb_dim = hnet.cond_dim
        self.emb_std = emb_std
        self.task_embeddings = nn.ParameterList()

    @property
    def num_tasks(self) -> int:
        return len(self.task_embeddings)

    def ensure_tasks(self, n: int) -> None:
        """Adds embeddings (N(0, emb_std^2)) until there are ``n``."""
        device = self.hnet.output_head().weight.device
        while len(self.task_embeddings) < n:
            self.task_embeddings.append(nn.Parameter(torch.randn(self.emb_dim, device=device) * self.emb_std))

    def embeddings(self, tasks: Sequence[int]) -> torch.Tensor:
        """Embeddings of ``tasks`` stacked, ``(len(tasks), emb_dim)``."""
        for t in tasks:
            if not 0 <= t < self.num_tasks:
                raise KeyError(f"no embedding for task {t}; the model knows tasks 0..{self.num_tasks - 1}")
        return torch.stack([self.task_embeddings[t] for t in tasks])

    def weights(self, task: int) -> List[torch.Tensor]:
        """Generated weight set of one task (unbatched tensors)."""
        return self.hnet(self.embeddings([task])[0])

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor) -> torch.Tensor:
        if torch.is_tensor(task_labels) and task_labels.dim() > 0:
            tasks = task_labels.unique().tolist()
        else:
            tasks = [int(task_labels)]
        if len(tasks) == 1:
            return self.target(self.weights(int(tasks[0])), x)
        weight_sets = self.hnet(self.embeddings([int(t) for t in tasks]))
        out: Optional[torch.Tensor] = None
        for i, t in enumerate(tasks):
            mask = task_labels == t
            y = self.target([w[i] for w in weight_sets], x[mask])
            if out is None:
                out = y.new_empty((len(x),) + tuple(y.shape[1:]))
            out[mask] = y
        assert out is not None
        return out

    def all_task_outputs(self, x: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        """Outputs of every task's network on ``x``: ``(len(tasks), N, ...)``, one batched call."""
        weights = self.hnet(self.embeddings(list(tasks)))
        return self.target.forward_shared(weights, x)

    def infer_task(self, x: torch.Tensor, tasks: Sequence[int]) -> tuple:
        """HNET+ENT: per sample, the task whose softmax output has the lowest entropy.

        Returns ``(inferred task ids, logits of the inferred task)``.
        """
        logits = self.all_task_outputs(x, tasks)  # (T, N, C)
        logp = torch.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)  # (T, N)
        best = entropy.argmin(dim=0)
        chosen = logits[best, torch.arange(x.shape[0], device=x.device)]
        return torch.as_tensor(tasks, device=x.device)[best], chosen


def build_cl_model(
    module: nn.Module,
    *,
    emb_dim: int = 24,
    chunked: bool = True,
    chunk_size: int = 2000,
    chunk_emb_dim: int = 8,
    hidden: Sequence[int] = (100, 75, 50),
    activation: str = "elu",
    last_activation: bool = True,
    mip: bool = False,
    init: str = "hyperfan_in",
    target_gain: float = 2.0,
    param_names: Optional[Sequence[str]] = None,
    emb_std: float = 1.0,
) -> TaskConditionedHypernetwork:
    """Target, hypernetwork (:func:`cl_moo.build_hypernetwork`: chunked or one head per tensor,
    MIP on/off, initialised on probe embeddings ``N(0, emb_std^2)``) and the task embeddings.

    With ``mip=True`` the task embedding goes through a logistic and the MIP encoding, and the
    hypernetwork predicts a residual around the model's own (e.g. pretrained) weights.
    """
    target = FunctionalTarget(module, param_names)
    hnet = build_hypernetwork(
        target, emb_dim, chunk_size=chunk_size if chunked else None, chunk_emb_dim=chunk_emb_dim, hidden=hidden,
        activation=activation, last_activation=last_activation, mip=mip, input_range="unbounded", init=init,
        target_gain=target_gain, probe_conditions=torch.randn(256, emb_dim) * emb_std,
    )
    return TaskConditionedHypernetwork(target, hnet, emb_std=emb_std)
