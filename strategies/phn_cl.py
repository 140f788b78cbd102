"""Continual Pareto fronts: one hypernetwork for the Pareto fronts of a sequence of tasks.

The hypernetwork takes a task embedding and a preference ray, ``theta = h([e_t, r])``: for each task
it is a Pareto hypernetwork (Navon et al. 2021), and across tasks it is a task-conditioned
hypernetwork whose outputs for earlier tasks the output regularizer keeps fixed (von Oswald et al.
2020, Eq. 2), here at a fixed set of K rays per earlier task:

    L = solver(l(h([e_t, r_b])), r_b)  +  beta / (K (t-1)) * sum_{s<t} sum_k || h([e_s, r_k]) - h*([e_s, r_k]) ||^2

with ``h*`` the outputs recorded before task t. The regularizer is :class:`OutputRegularizer`
(its head-linearity fast path applies unchanged: each (task, ray) pair is one condition), added to the
loss by the same Avalanche plugin as in the continual strategy, :class:`OutputRegularizerPlugin`, the
first of the strategy's plugins. Earlier embeddings are frozen; a new task's embedding is drawn from
N(0, emb_std^2) with a per-task seed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from cl_moo import FunctionalTarget, Hypernetwork, build_hypernetwork, task_embedding_seed
from cl_moo.hnet_options import HypernetworkOptions, resolve_options
from cl_moo.hypernetwork import unbatch
from cl_moo.moo_metrics import evaluation_rays
from cl_moo.optim import make_adam

from ._checks import is_integral, is_real
from .phn import PHN_HNET_DEFAULTS, DirichletRays, ParetoHypernetworkStrategy, seeded_global_rng
from .regularizer import OutputRegularizer
from .regularizer_plugin import OutputRegularizerPlugin

START = ("phn", "random")

# the hypernetwork h([e, r]) ContinualParetoStrategy builds when hnet_options leaves a field at None
CONTINUAL_PARETO_HNET_DEFAULTS = dataclasses.replace(PHN_HNET_DEFAULTS, hidden=(100, 100))


def start_as_phn(inner: Hypernetwork, phn: Hypernetwork, emb_dim: int) -> None:
    """Copies the parameters of a ray-only PHN ``phn`` (conditions ``r``) into ``inner`` (conditions
    ``[e, r]``), with zero first-layer columns for the task embedding ``e``: at the start
    ``inner([e, r]) == phn(r)`` for every ``e``, so task 0 begins where a stand-alone PHN of the same
    seed begins. The one parameter whose shape differs must be that first layer, ``emb_dim`` inputs
    wider, the ray's columns last."""
    ours, theirs = dict(inner.named_parameters()), dict(phn.named_parameters())
    if ours.keys() != theirs.keys():
        raise ValueError(
            f"start='phn': the two hypernetworks have different parameters ({sorted(ours.keys() ^ theirs.keys())})"
        )
    widened = [n for n in ours if ours[n].shape != theirs[n].shape]
    if (
        len(widened) != 1
        or ours[widened[0]].dim() != 2
        or ours[widened[0]].shape[1] != theirs[widened[0]].shape[1] + emb_dim
    ):
        raise ValueError(
            f"start='phn' needs one first layer that is emb_dim={emb_dim} inputs wider; the shapes "
            f"differ in {[(n, tuple(ours[n].shape), tuple(theirs[n].shape)) for n in widened]}"
        )
    m = phn.cond_dim
    with torch.no_grad():
        for name, p in ours.items():
            if name != widened[0]:
                p.copy_(theirs[name])
                continue
            w = theirs[name]
            before = w.shape[1] - m  # inputs ahead of the condition (chunk embeddings)
            p.copy_(torch.cat([w[:, :before], w.new_zeros(w.shape[0], emb_dim), w[:, before:]], dim=1))
        rays = torch.full((1, m), 1.0 / m, dtype=w.dtype, device=w.device)
        emb = torch.randn(1, emb_dim, generator=torch.Generator().manual_seed(0))  # not the global RNG
        conds = torch.cat([emb.to(w.device, w.dtype), rays], dim=1)
        if not torch.allclose(inner.forward_flat(conds), phn.forward_flat(rays), atol=1e-5):
            raise ValueError(
                f"start='phn': {type(inner).__name__} does not take the condition as the last inputs "
                "of its first layer, so the copy does not reproduce the PHN; use start='random'"
            )
    inner.init_report = phn.init_report


class TaskRayHypernetwork(nn.Module):
    """``rays -> weights`` for the current task: ``inner([e_current, r])``. Looks like a ray-conditioned
    hypernetwork to :class:`ParetoHypernetworkStrategy` (``cond_dim`` is the number of objectives)."""

    def __init__(self, inner: Hypernetwork, *, m: int, emb_dim: int, emb_std: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if inner.cond_dim != emb_dim + m:
            raise ValueError(
                f"the inner hypernetwork takes {inner.cond_dim}-dim conditions; need emb_dim + m = {emb_dim} + {m}"
            )
        self.inner, self.m, self.emb_dim, self.emb_std, self.seed = inner, m, emb_dim, float(emb_std), int(seed)
        self.task_embeddings = nn.ParameterList()
        self.current: Optional[int] = None
        self.layout = inner.layout

    @property
    def cond_dim(self) -> int:
        return self.m

    def output_head(self) -> nn.Linear:
        return self.inner.output_head()

    def ensure_tasks(self, n: int) -> None:
        """Adds embeddings until there are ``n``; task t's is drawn with seed
        :func:`cl_moo.task_embedding_seed` ``(seed, t)``, as :class:`TaskConditionedHypernetwork` draws its own."""
        head = self.inner.output_head().weight
        while len(self.task_embeddings) < n:
            gen = torch.Generator().manual_seed(task_embedding_seed(self.seed, len(self.task_embeddings)))
            emb = torch.randn(self.emb_dim, generator=gen) * self.emb_std
            self.task_embeddings.append(nn.Parameter(emb.to(head.device, head.dtype)))

    def conditions(self, task: int, rays: torch.Tensor) -> torch.Tensor:
        """``[e_task, r]`` for each ray ``(B, m)``: ``(B, emb_dim + m)``."""
        emb = self.task_embeddings[task]
        return torch.cat([emb.expand(rays.shape[0], -1), rays.to(emb.dtype)], dim=1)

    def forward_flat(self, rays: torch.Tensor) -> torch.Tensor:
        if self.current is None:
            raise RuntimeError(
                "no current task: train with train_task(task, data) and evaluate with eval_task(task, data)"
            )
        return self.inner.forward_flat(self.conditions(self.current, rays.reshape(-1, self.m)))

    def forward(self, rays: torch.Tensor) -> List[torch.Tensor]:
        weights = self.layout.split(self.forward_flat(rays))
        return unbatch(weights) if rays.dim() == 1 else weights


class ContinualParetoStrategy(ParetoHypernetworkStrategy):
    """Learns the Pareto front of each task in turn with one hypernetwork, keeping earlier fronts
    (module docstring). ``train_task(t, data)`` / ``eval_task(t, data, rays)``; every other argument
    is :class:`ParetoHypernetworkStrategy`'s (solver, rays_per_step, lr, train_steps, ...).

    ``beta``: regularizer strength (0: no protection of earlier fronts); ``reg_rays``: K, the rays
    (PHN's evaluation rays) at which each earlier task's outputs are kept; ``emb_std``: std of each
    new task embedding. Defaults from the permuted Multi-MNIST runs (numbers in ``docs/reproduction.md``,
    "Numbers behind the defaults"): ``emb_std`` small enough that a 16-dim embedding does not drown the
    2-dim ray (at 1 it did); ``beta`` 2, which met the forgetting goal (<= 1% relative HV) on every seed
    where 0.5 did not, with about the same HV right after each task.

    ``start="random"``: a fresh draw for the ``emb_dim + m`` inputs; ``"phn"``: the hypernetwork starts
    as the ray-only PHN that ``ParetoHypernetworkStrategy(seed=seed)`` with the same options would
    build, the task embedding's first-layer columns at zero (:func:`start_as_phn`), so task 0 and the
    stand-alone reference share their initial weights (not with ``mip``). On permuted Multi-MNIST
    "phn" brought task 0 level with the stand-alone PHN but not the later tasks, so it is not the
    default (see ``docs/reproduction.md``).

    **Regularizer.** ``plugins[0]`` is the :class:`OutputRegularizerPlugin` of ``regularizer``: at
    each ``train_task`` it records the earlier tasks' outputs at the K rays (``before_training_exp``,
    :meth:`snapshot_earlier_tasks`) and adds the penalty to ``strategy.loss`` (``before_backward``),
    asking the strategy what to regularize (:meth:`regularized_outputs`). With ``beta > 0`` training
    refuses to run without it; append other plugins rather than replacing the list (with ``beta=0``
    there is nothing to protect and it may be left out).

    **Checkpoints.** :meth:`state_dict` / :meth:`load_state_dict`, between tasks or within one (at any
    step, also in the middle of a pass over the data, see :meth:`ParetoHypernetworkStrategy.state_dict`):
    a strategy built with the same arguments continues with the same steps, losses and parameters. After
    loading a state taken within task t, ``train_task(t, data, steps=rest)`` finishes it: it continues
    the task (the recorded targets of the earlier tasks and the task's optimizer are kept) and then
    counts it as trained.

    Args:
        target: the target network (an ``nn.Module``, or a :class:`cl_moo.FunctionalTarget` around one).
        losses: ``m >= 2`` loss callables, one per objective, each called as ``loss(output, *targets)``
            for one weight set and returning a scalar (as in :class:`ParetoHypernetworkStrategy`).
        emb_dim: width of each task embedding ``e_t`` (>= 1).
        emb_std: standard deviation of a new task's embedding, drawn from ``N(0, emb_std^2)`` (> 0).
        beta: regularizer strength, the ``beta`` of the module docstring's loss (von Oswald et al. 2020,
            Eq. 2, at K rays per earlier task; >= 0; 0: earlier fronts are not protected).
        reg_rays: K, the number of rays (PHN's evaluation rays) at which each earlier task's outputs are
            kept (>= 2).
        hnet_options: how to build the hypernetwork ``h([e, r])`` (:class:`cl_moo.HypernetworkOptions`:
            generator, chunking, widths, activation, MIP, init scheme, target gain); its None fields take
            :data:`CONTINUAL_PARETO_HNET_DEFAULTS`. None: all defaults.
        param_names: the target parameters to generate (default: all); only when ``target`` is an ``nn.Module``.
        alpha: the concentration of the default ray sampler ``Dirichlet(alpha)`` (> 0).
        lr: Adam's learning rate (each task gets a fresh Adam over the shared parameters and its embedding).
        seed: seeds the hypernetwork's initialisation, ray sampling, shuffling and each task's embedding (an int).
        start: ``"random"`` or ``"phn"``, the starting hypernetwork (see above).
        **kwargs: the other arguments of :class:`ParetoHypernetworkStrategy`: ``solver``,
            ``solver_options``, ``rays_per_step``, ``ray_sampler``, ``train_epochs``, ``train_steps``,
            ``train_mb_size``, ``eval_mb_size``, ``objective_only``, ``device``, ``plugins`` (placed after
            the regularizer's plugin), ``evaluator``.
    """

    hnet: TaskRayHypernetwork  # the base class's hnet, with the task embeddings

    def __init__(
        self,
        *,
        target: nn.Module,
        losses: Sequence,
        emb_dim: int = 16,
        emb_std: float = 0.1,
        beta: float = 2.0,
        reg_rays: int = 10,
        hnet_options: Optional[HypernetworkOptions] = None,
        param_names: Optional[Sequence[str]] = None,
        alpha: float = 0.2,
        lr: float = 1e-3,
        seed: int = 0,
        start: str = "random",
        **kwargs: Any,
    ) -> None:
        m = len(losses)
        for name, value, least, what in (
            ("reg_rays", reg_rays, 2, "rays kept per earlier task: its front"),
            ("emb_dim", emb_dim, 1, "task embedding width"),
        ):
            if isinstance(value, bool) or not is_integral(value) or value < least:
                raise ValueError(f"{name} must be an integer >= {least} ({what}), got {value!r}")
        if not is_real(emb_std) or not math.isfinite(emb_std) or emb_std <= 0:
            raise ValueError(f"emb_std must be a finite number > 0 (tasks need distinct embeddings), got {emb_std!r}")
        if isinstance(seed, bool) or not is_integral(seed):
            raise TypeError(f"seed must be an int (it also seeds each task's embedding), got {seed!r}")
        reg_rays, emb_dim = int(reg_rays), int(emb_dim)
        if start not in START:
            raise ValueError(
                f"start must be one of {START} (phn: task 0 begins as a stand-alone PHN of the same "
                f"seed; random: a fresh draw for the wider input), got {start!r}"
            )
        if "hnet" in kwargs:
            raise TypeError(
                "ContinualParetoStrategy builds its hypernetwork h([e, r]) itself: pass hnet_options=, not hnet="
            )
        options = resolve_options(hnet_options, CONTINUAL_PARETO_HNET_DEFAULTS)
        if start == "phn" and options.mip:
            raise ValueError(
                "start='phn' does not apply with mip=True: the MIP encoding of [e, r] (unbounded "
                "inputs) differs from a PHN's encoding of r. Pass start='random' (command line: "
                "strategy.start=random)"
            )
        ft = target if isinstance(target, FunctionalTarget) else FunctionalTarget(target, param_names)
        gen = torch.Generator().manual_seed(int(seed))
        probe = torch.cat(
            [torch.randn(256, emb_dim, generator=gen) * emb_std, DirichletRays(m, alpha)(256, gen)], dim=1
        )
        with seeded_global_rng(int(seed)):
            inner = build_hypernetwork(ft, emb_dim + m, options, input_range="unbounded", probe_conditions=probe)
        if start == "phn":
            # the probe rays and draws of ParetoHypernetworkStrategy(seed=seed) with the same ray sampler
            sampler = kwargs.get("ray_sampler") or DirichletRays(m, alpha)
            rays = torch.as_tensor(sampler(256, torch.Generator().manual_seed(int(seed))))
            with seeded_global_rng(int(seed)):
                phn = build_hypernetwork(ft, m, options, input_range="unit", probe_conditions=rays)
            start_as_phn(inner, phn, emb_dim)
        assert inner.build_options is not None  # build_hypernetwork sets it
        inner.build_options = {**inner.build_options, "start": start}
        hnet = TaskRayHypernetwork(inner, m=m, emb_dim=emb_dim, emb_std=emb_std, seed=int(seed))
        self.regularizer = OutputRegularizer(beta=beta)
        self.regularizer_plugin = OutputRegularizerPlugin(self.regularizer)
        plugins = [self.regularizer_plugin, *kwargs.pop("plugins", ())]
        super().__init__(target=ft, losses=losses, hnet=hnet, alpha=alpha, lr=lr, seed=seed, plugins=plugins, **kwargs)
        self.lr = float(lr)
        self.reg_rays = torch.as_tensor(evaluation_rays(m, reg_rays), dtype=self._dtype)
        self.trained_tasks: List[int] = []
        self._reg_tasks: List[int] = []
        self._snapshot_due = False  # a train_task started: record the earlier tasks' outputs before its first step
        self._resumable_task: Optional[int] = None  # loaded within this task: train_task(it) continues it

    def _reg_conditions(self, tasks: List[int]) -> torch.Tensor:
        rays = self.reg_rays.to(self.device)
        if not tasks:
            return rays.new_zeros(0, self.hnet.emb_dim + self.m)
        with torch.no_grad():
            return torch.cat([self.hnet.conditions(t, rays) for t in tasks])

    # ------------------------------------------------------------------ what OutputRegularizerPlugin asks
    def regularized_outputs(self) -> Tuple[Hypernetwork, torch.Tensor]:
        """The hypernetwork whose outputs are kept and the conditions ``[e_s, r_k]`` at which they are
        kept (every earlier task s times the K rays), in the order of the regularizer's recorded targets."""
        return self.hnet.inner, self._reg_conditions(self._reg_tasks)

    def snapshot_earlier_tasks(self) -> None:
        """Records the regularizer's targets ``h*([e_s, r_k])`` of the earlier tasks when a task starts
        (:meth:`train_task`); a ``train()`` that continues a task (e.g. after :meth:`load_state_dict`
        within one) keeps the recorded ones."""
        if not self._snapshot_due:
            return
        self._snapshot_due = False
        conds = self._reg_conditions(self._reg_tasks)
        self.regularizer.snapshot(self.hnet.inner, conds, list(range(len(conds))))

    def train(self, experience: Any = None, eval_streams: Any = None, *, steps: Optional[int] = None, **kwargs: Any):
        """:meth:`ParetoHypernetworkStrategy.train` on the current task, refused when ``beta > 0`` and the
        regularizer's plugin is no longer among ``plugins`` (e.g. ``strategy.plugins = [mine]`` replaced the
        list): earlier fronts would silently go unprotected; and refused for a stream of several experiences
        (they would all train one task's front): :meth:`train_task` takes one task at a time."""
        if self.regularizer.beta != 0 and not any(p is self.regularizer_plugin for p in self.plugins):
            raise ValueError(
                "ContinualParetoStrategy: the output regularizer's plugin (strategy.regularizer_plugin) is not in "
                "strategy.plugins, so earlier tasks' fronts would not be protected; add plugins with "
                "strategy.plugins.append(...) instead of replacing the list, or build the strategy with beta=0 "
                "(no protection; the plugin may then be left out)"
            )
        stream = self._experiences(experience)
        if stream is not None and len(stream) > 1:
            raise ValueError(
                f"ContinualParetoStrategy.train got {len(stream)} experiences, which would all train the current "
                f"task ({self.hnet.current}): one task is one front; train each with its own task number, "
                "for t, exp in enumerate(stream): strategy.train_task(t, exp)"
            )
        return super().train(experience, eval_streams, steps=steps, **kwargs)

    def train_task(self, task: int, data: Any = None, *, steps: Optional[int] = None) -> None:
        """Trains task ``task`` (0, 1, ...) on ``data``; earlier tasks' outputs at the K rays are kept.

        After :meth:`load_state_dict` of a state taken within task ``task`` (its current task, not yet
        trained), this finishes that task: training continues with the loaded optimizer and the loaded
        targets of the earlier tasks (no new record), then ``task`` joins ``trained_tasks``."""
        if not isinstance(task, int) or isinstance(task, bool) or task < 0:
            raise ValueError(f"task must be an integer >= 0, got {task!r}")
        if task in self.trained_tasks:
            raise ValueError(
                f"task {task} was already trained (trained: {self.trained_tasks}); training it again "
                "would overwrite its front. Use a new task number"
            )
        if self._resumable_task is not None and task == self._resumable_task:
            self.hnet.current = task
            self.train(data, steps=steps)
            self._resumable_task = None
            self.trained_tasks.append(task)
            return
        self._resumable_task = None
        self._resume_pass = None  # a new task starts a new pass
        self.hnet.ensure_tasks(task + 1)
        self.hnet.current = task
        self._reg_tasks = list(self.trained_tasks)
        self._snapshot_due = True  # the regularizer's plugin records them at before_training_exp
        self.optimizer = self._task_optimizer(task)
        try:
            self.train(data, steps=steps)
        finally:
            self._snapshot_due = False
        self.trained_tasks.append(task)

    def _task_optimizer(self, task: int) -> torch.optim.Adam:
        """Adam over the shared parameters and task ``task``'s embedding (earlier embeddings stay frozen)."""
        shared = list(self.hnet.inner.parameters()) + [p for p in self.target.parameters() if p.requires_grad]
        return make_adam(shared + [self.hnet.task_embeddings[task]], lr=self.lr)

    # ------------------------------------------------------------------ state
    STATE_KEYS = ParetoHypernetworkStrategy.STATE_KEYS + (
        "num_tasks",
        "current_task",
        "trained_tasks",
        "regularized_tasks",
        "regularizer",
    )

    def state_dict(self) -> Dict[str, Any]:
        """:meth:`ParetoHypernetworkStrategy.state_dict` (the task embeddings are in ``hnet``) plus what
        :meth:`train_task` and :meth:`eval_task` need to continue exactly, between tasks or within one:
        the number of task embeddings (``num_tasks``), the task being trained or last trained
        (``current_task``, None before the first; the optimizer is that task's), the trained tasks, the
        earlier tasks the regularizer keeps (``regularized_tasks``) and its recorded targets (``regularizer``)."""
        return {
            **super().state_dict(),
            "num_tasks": len(self.hnet.task_embeddings),
            "current_task": self.hnet.current,
            "trained_tasks": list(self.trained_tasks),
            "regularized_tasks": list(self._reg_tasks),
            "regularizer": self.regularizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned, into a strategy built with the same arguments.

        ``optimizer`` and ``regularizer`` may be None for a state taken between tasks without them
        (checkpoints of the continual Pareto runner before this method existed): the optimizer is then
        left as built and the regularizer keeps no task, and the next :meth:`train_task` makes both anew,
        as it always does."""
        missing = [k for k in self.STATE_KEYS if k not in state and k not in self.STATE_OPTIONAL]
        if missing:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: the state lacks {missing} "
                f"(it needs {list(self.STATE_KEYS)}); pass what state_dict() returned"
            )
        self.hnet.ensure_tasks(int(state["num_tasks"]))
        self._load_common_state(state, self.STATE_KEYS)
        current = state["current_task"]
        self.hnet.current = None if current is None else int(current)
        self.trained_tasks = [int(t) for t in state["trained_tasks"]]
        self._reg_tasks = [int(t) for t in state["regularized_tasks"]]
        self._snapshot_due = False
        within = self.hnet.current is not None and self.hnet.current not in self.trained_tasks
        self._resumable_task = self.hnet.current if within else None
        if state["regularizer"] is None:
            self.regularizer.snapshot(self.hnet.inner, self._reg_conditions([]), [])  # no targets
        else:
            self.regularizer.load_state_dict(state["regularizer"], self.hnet.inner)  # the targets go to its device
        if self.hnet.current is not None:
            self.optimizer = self._task_optimizer(self.hnet.current)
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    def eval_task(
        self, task: int, data: Any = None, rays: Optional[Union[np.ndarray, torch.Tensor]] = None, k: int = 25
    ) -> np.ndarray:
        """Loss vectors ``(K, m)`` of task ``task``'s front (see :meth:`ParetoHypernetworkStrategy.eval`)."""
        if task not in self.trained_tasks:
            raise ValueError(
                f"task {task} has not been trained (trained: {self.trained_tasks}): its front would "
                "come from an untrained embedding"
            )
        previous, self.hnet.current = self.hnet.current, task
        try:
            return self.eval(data, rays, k)
        finally:
            self.hnet.current = previous
