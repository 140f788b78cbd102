"""Task-conditioned hypernetwork model (von Oswald et al. 2020, Eq. 1): ``theta_t = h(e_t)``.

An Avalanche ``MultiTaskModule``: ``forward(x, task_labels)`` runs every sample with the weights
of its own task (one batched hypernetwork call for all tasks in the mini-batch), so Avalanche
routes replayed or mixed-task mini-batches correctly and plugins that call
``forward_single_task`` / ``forward_all_tasks`` (EWC, LwF) work. Each task's generated weights
include its own output layer (multi-head, "CL1"). Task inference by the lowest predictive
entropy over the trained embeddings ("CL3", HNET+ENT) is :meth:`infer_task`.

Task embeddings are created by :meth:`adaptation` when a training experience brings a new task
label: from ``N(0, emb_std^2)`` drawn from the model's own generator (``emb_init="random"``, the
default) or copied from the previous task's embedding (``emb_init="previous"``, the hypercl
reference code's option; a new task starts from the last task's network). Measured on 5-task
Split MNIST (``benchmarks/experiments/cl_fast_start.py``; ``docs/reproduction.md``, Split MNIST), copying did not
start new tasks faster and forgot more (the new task's gradient first moves the old task's outputs),
so it is not the default.
Evaluation creates nothing and draws no random numbers.

A task id without an embedding (never trained) is refused with :class:`TaskLabelError`, naming it and
the trained ids, by every path (``forward``, ``forward_single_task``, :meth:`weights`,
:meth:`all_task_outputs`, :meth:`infer_task`): its network would be the untrained one that the
hypernetwork generates from no embedding. ``allow_untrained=True`` runs that network (the all-zero
embedding) on purpose; ``HypernetworkStrategy(untrained_tasks="evaluate")`` does so to score untrained
experiences in Avalanche's full-stream evaluation.

Running statistics (BatchNorm/InstanceNorm with ``track_running_stats``) are kept per task, as in the
hypernetwork papers' code (hypnettorch: one set of ``running_mean``/``running_var`` per task, chosen by
the task id): each task normalises with its own statistics at evaluation, so training a later task no
longer changes an earlier task's outputs through shared statistics. A new task starts from the target
module's own statistics (its initial or pretrained ones, which the model never changes). In training
mode only the task :attr:`TaskConditionedHypernetwork.stats_task` updates its statistics (the strategy
sets it to the task being trained; replayed samples of other tasks are normalised with the mini-batch
statistics, as BatchNorm does in training, without touching their task's); ``stats_task=None`` (the
default outside the strategy) updates whichever task is run. ``per_task_stats=False`` shares the
module's one set across tasks (the behaviour before).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Set, Union, cast

import torch
from avalanche.models import MultiTaskModule
from torch import nn

from cl_moo import FunctionalTarget, Hypernetwork, HypernetworkOptions, build_hypernetwork, task_embedding_seed
from cl_moo.hnet_options import BUILDER_DEFAULTS, refuse_keywords, resolve_options

EMB_INITS = ("previous", "random")


class TaskLabelError(ValueError):
    """Task labels that cannot be used: missing, several in one training experience, already trained,
    or (for a forward pass or an evaluation) never trained."""


class _TaskStats(nn.Module):
    """One task's copy of the target's running statistics, as buffers ``s0, s1, ...`` (the order of
    :meth:`FunctionalTarget.running_stat_names`)."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        super().__init__()
        for i, t in enumerate(tensors):
            self.register_buffer(f"s{i}", t)

    def tensors(self) -> List[torch.Tensor]:
        return [getattr(self, f"s{i}") for i in range(len(self._buffers))]


class TaskConditionedHypernetwork(MultiTaskModule):
    """Target network + hypernetwork + one learned embedding per task, as a ``MultiTaskModule``.

    Usually built by :func:`build_cl_model`. Embeddings are created as training experiences bring new
    task labels (:meth:`adaptation`), or by :meth:`ensure_tasks`.

    Args:
        target: the functional target whose weights are generated (:class:`cl_moo.FunctionalTarget`).
        hnet: the hypernetwork, conditioned on task embeddings (``hnet.cond_dim`` is their width).
        emb_std: a new task embedding is drawn from ``N(0, emb_std^2)`` (``emb_init="random"``).
        emb_init: ``"random"`` or ``"previous"`` (a copy of the previous task's embedding); see the
            module docstring.
        seed: seeds each task embedding's draw (:func:`cl_moo.task_embedding_seed` of it and the task id).
        per_task_stats: one set of normalisation running statistics per task (module docstring).
    """

    known_train_tasks_labels: Set[int]  # MultiTaskModule's: set in its __init__, grown by adaptation

    def __init__(
        self,
        target: FunctionalTarget,
        hnet: Hypernetwork,
        *,
        emb_std: float = 1.0,
        emb_init: str = "random",
        seed: int = 0,
        per_task_stats: bool = True,
    ) -> None:
        super().__init__()
        if emb_init not in EMB_INITS:
            raise ValueError(f"emb_init must be one of {list(EMB_INITS)}, got {emb_init!r}")
        self.target = target
        self.hnet = hnet
        self.emb_dim = hnet.cond_dim
        self.emb_std = emb_std
        self.emb_init = emb_init
        self.seed = seed
        self.task_embeddings = nn.ParameterList()
        # one set of normalisation running statistics per task (module docstring)
        self.stat_names: List[str] = target.running_stat_names() if per_task_stats else []
        self.task_stats = nn.ModuleList()
        self.stats_task: Optional[int] = None

    # ------------------------------------------------------------------ embeddings
    @property
    def num_tasks(self) -> int:
        return len(self.task_embeddings)

    def shared_parameters(self) -> List[nn.Parameter]:
        """Hypernetwork parameters plus the target's own learnable (non-generated) ones."""
        return list(self.hnet.parameters()) + [p for p in self.target.parameters() if p.requires_grad]

    def param_groups(self, *, lr: float, emb_lr: Optional[float] = None) -> List[Dict[str, object]]:
        """The two optimizer groups the strategy needs: ``shared`` and (empty until a task starts)
        ``task_embedding``; e.g. ``torch.optim.Adam(model.param_groups(lr=1e-4))``."""
        return [
            {"params": self.shared_parameters(), "lr": lr, "name": "shared"},
            {"params": [], "lr": lr if emb_lr is None else emb_lr, "name": "task_embedding"},
        ]

    def _new_embedding(self, task: int) -> torch.Tensor:
        device = self.hnet.output_head().weight.device
        if self.emb_init == "previous" and task > 0:
            return self.task_embeddings[task - 1].detach().clone()
        gen = torch.Generator().manual_seed(task_embedding_seed(self.seed, task))
        dtype = self.hnet.output_head().weight.dtype
        return (torch.randn(self.emb_dim, generator=gen) * self.emb_std).to(device, dtype)

    def ensure_tasks(self, n: int) -> None:
        """Adds embeddings until there are ``n`` (tasks are numbered 0, 1, ...)."""
        while len(self.task_embeddings) < n:
            self.task_embeddings.append(nn.Parameter(self._new_embedding(len(self.task_embeddings))))
        while self.stat_names and len(self.task_stats) < n:
            self.task_stats.append(_TaskStats(self._module_stats(copy=True)))

    def _module_stats(self, copy: bool) -> List[torch.Tensor]:
        own = [self.target.module.get_buffer(n) for n in self.stat_names]
        return [t.detach().clone() for t in own] if copy else own

    def stats(self, task: int) -> Optional[Dict[str, torch.Tensor]]:
        """The running statistics task ``task`` runs with (``{buffer name: tensor}``; None without
        per-task statistics). In training mode a task other than :attr:`stats_task` gets copies, so its
        statistics stay as they are; an untrained task gets copies of the module's own."""
        if not self.stat_names:
            return None
        if task >= len(self.task_stats):
            return dict(zip(self.stat_names, self._module_stats(copy=True)))
        tensors = cast(_TaskStats, self.task_stats[task]).tensors()
        if self.training and self.stats_task is not None and task != self.stats_task:
            tensors = [t.clone() for t in tensors]
        return dict(zip(self.stat_names, tensors))

    def adaptation(self, experience) -> None:
        """Avalanche's model adaptation: embeddings for a training experience's task labels."""
        labels = [int(t) for t in getattr(experience, "task_labels", [])]
        if self.training and labels:
            self.ensure_tasks(max(labels) + 1)
            self.known_train_tasks_labels = self.known_train_tasks_labels.union(labels)

    def embeddings(self, tasks: Sequence[int], *, allow_untrained: bool = False) -> torch.Tensor:
        """Embeddings of ``tasks`` stacked, ``(len(tasks), emb_dim)``. A task without one is refused
        (:class:`TaskLabelError`); with ``allow_untrained=True`` it gets the all-zero embedding."""
        zero = None
        rows = []
        for t in tasks:
            if not 0 <= t:
                raise KeyError(f"task labels must be >= 0, got {t}")
            if t < self.num_tasks:
                rows.append(self.task_embeddings[t])
            elif not allow_untrained:
                raise TaskLabelError(
                    f"task {t} is not trained: it has no task embedding "
                    f"(trained tasks: {list(range(self.num_tasks))}), "
                    "so its network would be the untrained one the hypernetwork generates from no embedding. Use a "
                    "trained task id, infer the task among the trained ones (model.infer_task(x, trained_tasks), or "
                    'HypernetworkStrategy(task_inference="entropy")), or pass allow_untrained=True to run the '
                    "untrained network (all-zero embedding) on purpose"
                )
            else:
                if zero is None:
                    zero = self.hnet.output_head().weight.new_zeros(self.emb_dim)
                rows.append(zero)
        return torch.stack(rows)

    def weights(self, task: int, *, allow_untrained: bool = False) -> List[torch.Tensor]:
        """Generated weight set of one task (unbatched tensors)."""
        return self.hnet(self.embeddings([task], allow_untrained=allow_untrained)[0])

    # ------------------------------------------------------------------ forward
    def forward_single_task(self, x: torch.Tensor, task_label: int, *, allow_untrained: bool = False) -> torch.Tensor:
        task = int(task_label)
        return self.target(self.weights(task, allow_untrained=allow_untrained), x, buffers=self.stats(task))

    def forward_all_tasks(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        tasks = sorted(self.known_train_tasks_labels)
        if not tasks:
            return {}
        return dict(zip(tasks, self.all_task_outputs(x, tasks)))

    @staticmethod
    def task_ids(task_labels: Union[torch.Tensor, int]) -> List[int]:
        """The distinct task ids of a batch's labels (an int, a 0-d tensor or one label per sample), sorted."""
        if isinstance(task_labels, int) or task_labels.dim() == 0:
            return [int(task_labels)]
        return [int(t) for t in task_labels.unique().tolist()]

    def forward(
        self, x: torch.Tensor, task_labels: Union[torch.Tensor, int, None], *, allow_untrained: bool = False
    ) -> Union[torch.Tensor, Dict[int, torch.Tensor]]:
        """Each sample through its own task's weights (one hypernetwork call for all tasks). A task
        id without an embedding is refused unless ``allow_untrained=True`` (see the module docstring).
        ``task_labels=None``: every trained task's outputs, ``{task: output}`` (:meth:`forward_all_tasks`)."""
        if task_labels is None:
            return self.forward_all_tasks(x)
        tasks = self.task_ids(task_labels)
        if len(tasks) == 1:
            return self.forward_single_task(x, tasks[0], allow_untrained=allow_untrained)
        assert torch.is_tensor(task_labels)  # several ids come only from a tensor of labels
        weight_sets = self.hnet(self.embeddings(tasks, allow_untrained=allow_untrained))
        out: Optional[torch.Tensor] = None
        for i, t in enumerate(tasks):
            mask = task_labels == t
            y = self.target([w[i] for w in weight_sets], x[mask], buffers=self.stats(t))
            if out is None:
                out = y.new_empty((len(x),) + tuple(y.shape[1:]))
            out[mask] = y
        assert out is not None
        return out

    def all_task_outputs(self, x: torch.Tensor, tasks: Sequence[int], *, allow_untrained: bool = False) -> torch.Tensor:
        """Outputs of every task's network on ``x``: ``(len(tasks), N, ...)``, one batched call."""
        weight_sets = self.hnet(self.embeddings(list(tasks), allow_untrained=allow_untrained))
        if not self.stat_names:
            return self.target.forward_shared(weight_sets, x)
        # each task with its own running statistics: one call per task
        return torch.stack(
            [self.target([w[i] for w in weight_sets], x, buffers=self.stats(int(t))) for i, t in enumerate(tasks)]
        )

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


# the continual strategy's hypernetwork unless told otherwise (build_cl_model(hnet_options=None)): chunked (von
# Oswald et al. 2020, Sec. 3.2: 2000 generated weights per chunk, 8-wide chunk embeddings), hidden widths
# (100, 75, 50) with ELU, hyperfan-in init for ReLU-like targets, no MIP. A field set in hnet_options wins;
# HypernetworkOptions(generator="mlp") builds one head per target tensor (the chunk fields then do not apply).
CL_HNET_DEFAULTS = dataclasses.replace(
    BUILDER_DEFAULTS, generator="chunked", chunk_size=2000, hidden=(100, 75, 50), activation="elu"
)


def build_cl_model(
    module: nn.Module,
    *,
    hnet_options: Optional[HypernetworkOptions] = None,
    emb_dim: int = 24,
    param_names: Optional[Sequence[str]] = None,
    emb_std: float = 1.0,
    emb_init: str = "random",
    seed: int = 0,
    per_task_stats: bool = True,
    **unknown: Any,
) -> TaskConditionedHypernetwork:
    """The task-conditioned hypernetwork model ``theta_t = h(e_t)`` (von Oswald et al. 2020, Eq. 1) of
    ``module``: its functional target, the hypernetwork (:func:`cl_moo.build_hypernetwork`, initialised on
    probe embeddings drawn as the task embeddings are, ``N(0, emb_std^2)``) and, created as tasks arrive,
    one learned embedding ``e_t`` per task.

    Args:
        module: the target network whose weights are generated (any ``nn.Module`` that
            :class:`cl_moo.FunctionalTarget` accepts); each task's generated weights include its own
            output layer (multi-head, "CL1"). Its own weights are left as they are (``theta0="keep"``
            starts MIP's residual from them).
        hnet_options: how the hypernetwork is built (:class:`cl_moo.HypernetworkOptions`); a field left
            at ``None`` (or ``hnet_options=None``) takes :data:`CL_HNET_DEFAULTS`: a chunked
            hypernetwork (von Oswald et al. 2020, Sec. 3.2) with hidden widths (100, 75, 50), ELU,
            hyperfan-in init and no MIP. ``HypernetworkOptions(generator="mlp")``: one output head per
            target tensor. ``HypernetworkOptions(mip=True)``: MIP (Gonzalez Ortiz et al. 2024): the task
            embedding goes through a logistic and the magnitude-invariant encoding (Eq. 4), and the
            hypernetwork predicts a residual ``theta = theta_0 + Delta theta`` (Eq. 5) around ``theta_0``,
            drawn as ``init`` initialises a target (``theta0="init"``) or the module's own, e.g.
            pretrained, weights (``theta0="keep"``).
        emb_dim: width of each task embedding ``e_t`` (the hypernetwork's input; von Oswald et al.
            2020, Eq. 1-3: the embeddings are learned with the hypernetwork, and the output regularizer
            of Eq. 2-3 keeps ``h(e_t)`` of every earlier task where it was).
        param_names: the module's parameters to generate (default: all of them); the others stay the
            module's own and are trained as shared parameters.
        emb_std: a new task embedding is drawn from ``N(0, emb_std^2)`` (also the probe distribution of
            the init).
        emb_init: ``"random"`` (the draw above, from a generator seeded by ``seed`` and the task id) or
            ``"previous"`` (a copy of the previous task's embedding, the hypercl reference code's option;
            see the module docstring for why it is not the default).
        seed: seeds the task embeddings' draws (:func:`cl_moo.task_embedding_seed`); the hypernetwork's
            init draws from the global generator, as ``torch.manual_seed`` set it.
        per_task_stats: one set of BatchNorm/InstanceNorm running statistics per task (module docstring);
            False shares the module's one set across tasks.

    Returns:
        The :class:`TaskConditionedHypernetwork`, for :class:`strategies.HypernetworkStrategy`.
    """
    refuse_keywords("build_cl_model", unknown)
    opts = resolve_options(hnet_options, CL_HNET_DEFAULTS)
    target = FunctionalTarget(module, param_names)
    hnet = build_hypernetwork(
        target,
        emb_dim,
        opts,
        input_range="unbounded",
        probe_conditions=torch.randn(256, emb_dim) * emb_std,
    )
    return TaskConditionedHypernetwork(
        target, hnet, emb_std=emb_std, emb_init=emb_init, seed=seed, per_task_stats=per_task_stats
    )
