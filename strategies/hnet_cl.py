"""Continual learning with hypernetworks (von Oswald et al. 2020) as an Avalanche strategy.

Per training iteration on task T (paper Sec. 3 and App. C), inside Avalanche's own loop
(``SGDUpdate.training_epoch``):

1. forward: ``theta_T = h(e_T)`` and the target network on the mini-batch; every sample runs
   with its own task's weights (the model is a ``MultiTaskModule``), so replay works.
2. ``strategy.loss`` = task loss, plus every plugin's penalty, plus the output regularizer
   (Eq. 2; :class:`OutputRegularizerPlugin`, with optional look-ahead); one backward.
3. one optimizer step. The optimizer has two parameter groups: ``shared`` (hypernetwork and
   any target parameters it does not generate) and ``task_embedding`` (the current task's
   embedding only). Earlier embeddings are frozen. The optimizer object persists across
   experiences (so ``LRSchedulerPlugin`` and user schedulers act on it); its state is reset at
   each new experience (``reset_optimizer_state``), as the reference code starts every task with
   fresh Adam moments.

The iteration budget (``train_iterations``) uses Avalanche's ``stop_training``. A training
experience must bring a task label not trained before (``allow_task_revisit=True`` to continue a
task on purpose): a stream whose experiences all carry task label 0 (e.g. Avalanche's
``PermutedMNIST`` with its default ``return_task_id=False``) is refused instead of silently
becoming fine-tuning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin, default_evaluator
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from cl_moo import make_adam

from .cl_model import TaskConditionedHypernetwork, TaskLabelError
from .clock_state import CLOCK_COUNTERS, clock_state, load_clock_state
from .fast_batches import SINGLE_TASK, gathered_loader
from .health_plugin import TrainingHealthPlugin
from .optimizer_pickling import PickledOptimizer, describe_optimizer
from .regularizer import OutputRegularizer, TargetMode, check_lookahead_optimizer
from .regularizer_plugin import OutputRegularizerPlugin

SHARED, EMBEDDING = 0, 1  # parameter-group indices
UNTRAINED_TASKS = ("evaluate", "refuse")  # what eval() does with an experience of a task not trained yet

# How to learn a class-incremental stream (one task label for every experience) with this strategy.
CLASS_INCREMENTAL_HINT = (
    "For a class-incremental stream (new classes per experience, no task id at test time), give each "
    "training experience its own task label (with_task_labels(...), or the benchmark's return_task_id=True) "
    'and evaluate with HypernetworkStrategy(..., task_inference="entropy"): every test sample is then '
    "answered by the trained task whose network is most confident (lowest predictive entropy, HNET+ENT), "
    "so test experiences need no task label"
)

# Avalanche plugins that cannot work with a generated-weights model, and why (checked at construction and
# again at every train(), so a plugin appended to strategy.plugins later is refused too).
UNSUPPORTED_PLUGINS = {
    "LFLPlugin": "it distils the model's feature extractor (model.get_features), which a hypernetwork target "
    "does not have",
    "CWRStarPlugin": "it consolidates the weights of a named classifier layer of the model; here every weight is "
    "generated per task",
    "RWalkPlugin": "it tracks a fixed set of parameters, but every new task adds a task-embedding parameter",
    "GDumbPlugin": "it restarts from a fresh copy of the model at every experience, while the output regularizer "
    "anchors earlier tasks to the outputs of the model it replaced",
    "FromScratchTrainingPlugin": "it re-initialises the model at every experience, which would erase the "
    "hypernetwork that generates the earlier tasks' networks",
    "BiCPlugin": "its bias-correction layer sits on the single shared head of a class-incremental model; here every "
    'task has its own generated network (for class-incremental streams use task_inference="entropy")',
    "CoPEPlugin": "it learns class prototypes in the model's output space as a continual-prototype classifier; a "
    "task-conditioned network's outputs are per-task logits, not prototype embeddings (its loss is NaN)",
    "FeatureDistillationPlugin": "it distils the previous model's feature extractor (model.feature_extractor) on the "
    "new task's data; a hypernetwork target has no shared feature extractor, every "
    "layer is generated per task",
    "RARPlugin": "it perturbs the features of a named layer, extracted by torch.fx tracing of model(x); the "
    "task-conditioned model cannot be traced without its task labels",
    "GSS_greedyPlugin": "it scores samples by gradients of model(x) called without task labels; the "
    "task-conditioned model needs the task label of every sample",
    "GenerativeReplayPlugin": "it replays samples from a generative model (model.generate()); the hypernetwork "
    "model is a classifier/regressor, not a generator",
    "TrainGeneratorAfterExpPlugin": "it trains the generator of GenerativeReplayPlugin, which does not apply "
    "(no generative model)",
    "NCMOracle": "it replaces the classifier by a nearest-class-mean classifier over model features "
    "(NCMClassifier); the generated network has no feature extractor to compute class means on",
    "FeCAMOracle": "it replaces the classifier by FeCAM's class-prototype classifier over model features; the "
    "generated network has no feature extractor",
    "CurrentDataNCMUpdate": "it updates an NCMClassifier's class means from model features; the generated network "
    "has no feature extractor",
    "MemoryNCMUpdate": "it updates an NCMClassifier's class means from model features; the generated network has "
    "no feature extractor",
    "CurrentDataFeCAMUpdate": "it updates a FeCAM classifier from model features; the generated network has no "
    "feature extractor",
    "MemoryFeCAMUpdate": "it updates a FeCAM classifier from model features; the generated network has no feature "
    "extractor",
}
# the plugins avalanche-lib ships that work with this strategy, each with a test in tests/test_cl_plugins.py
# (tests/test_cl_plugins.py checks that every shipped plugin is in exactly one of the two tables)
SUPPORTED_PLUGINS = {
    "EWCPlugin": "works (3 experiences; training changes with the plugin)",
    "LwFPlugin": "works (3 experiences; training changes with the plugin)",
    "MASPlugin": "works (3 experiences; training changes with the plugin)",
    "SynapticIntelligencePlugin": "allowed on a GPU (not tested on a GPU); refused on the CPU (avalanche-lib "
    "0.6 keeps its weights as views there, so its importances stay 0)",
    "ReplayPlugin": "works: mixed-task mini-batches, each sample through its own task's weights",
    "MIRPlugin": "works: replays the stored samples whose loss a virtual step would raise most, each through its "
    "own task's weights",
    "GEMPlugin": "works (GEM's QP solver quadprog is installed)",
    "AGEMPlugin": "works",
    "LRSchedulerPlugin": "works: the schedule sets the learning rate actually used by both groups",
    "EarlyStoppingPlugin": "works: stops a task's training when the validation metric stops improving",
    "EvaluationPlugin": "works (the runner uses it with TensorBoard and text loggers)",
}


def check_plugins(plugins: Sequence[Any], device: torch.device) -> None:
    """Refuses plugins that would fail or silently do nothing with this strategy."""
    for plugin in plugins:
        name = type(plugin).__name__
        if name in UNSUPPORTED_PLUGINS:
            raise ValueError(
                f"{name} does not work with HypernetworkStrategy: {UNSUPPORTED_PLUGINS[name]}. The "
                "output regularizer already protects earlier tasks; see the plugin table in docs/plugins.md"
            )
        if name == "SynapticIntelligencePlugin" and device.type == "cpu":
            raise ValueError(
                "SynapticIntelligencePlugin does nothing on the CPU in avalanche-lib 0.6: it records the weights "
                "before and after each step as views of the same tensor (param.detach().cpu() is no copy on the "
                "CPU), so its importances stay 0. Run on a GPU, or use EWCPlugin / MASPlugin instead"
            )


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class HypernetworkStrategy(SupervisedTemplate):
    """Task-conditioned hypernetwork with output regularization, as a ``SupervisedTemplate``.

    Use it like any Avalanche strategy: ``strategy.train(experience)``,
    ``strategy.eval(test_stream)``, with Avalanche plugins, evaluators and loggers. Experiences
    must carry task labels; each training experience belongs to one task.

    ``lr``: 3e-4 by default. Adam moves every hypernetwork parameter by about ``lr`` per step, so a
    generated weight moves by about ``lr`` times the L1 norm of the head's input: at 1e-3 with
    ``N(0, 1)`` task embeddings one step could kill most of a chunked hypernetwork's generated ReLUs;
    at 3e-4 every seed of permuted MNIST and Split MNIST learned (``benchmarks.experiments.defaults_matrix``;
    numbers in ``docs/reproduction.md``, "Numbers behind the defaults"). Training-health
    monitors (``health_every`` iterations, :mod:`strategies.health_plugin`) warn about dead units,
    a loss at chance and forgetting spikes; ``health_every=None`` turns them off.

    ``fast_batches`` (default True): for data sets of in-memory tensor rows (every benchmark built with
    ``benchmarks.data.avalanche_streams``), mini-batches are gathered whole on the strategy's device
    instead of one sample at a time, inside Avalanche's own loaders (:mod:`strategies.fast_batches`):
    the same batches in the same order, checked on a probe batch; other data sets keep Avalanche's fetch.

    ``compile`` (default False): ``torch.compile`` the per-batch model forward of a one-task mini-batch
    (hypernetwork generation ``h(e_t)`` + the functional target call; the backward follows the compiled
    graph), with CUDA graphs (``mode="reduce-overhead"``) on a CUDA device and the default mode
    elsewhere. Mixed-task batches (replay), entropy task inference and plugins' own forwards stay eager.
    If compiling fails (a target dynamo cannot trace, no C++ compiler for inductor, ...), training goes
    on eagerly after ONE warning naming the reason; :attr:`compiled` says which happened (None until
    the first compiled call, then True, or False after a fallback; False with ``compile=False``).
    Results equal eager within float rounding (tests/test_compile.py: losses within 1e-4).

    ``optimizer``: by default Adam (fused where available) with the two groups above. A user
    optimizer must have the same two groups, built with ``model.param_groups(lr=..., emb_lr=...)``
    before any scheduler, so schedules act on both.

    **Evaluating a task that was never trained** (``untrained_tasks``). Avalanche's usual loop
    evaluates the whole test stream after every experience (the runners' ``train.eval_tasks=all``),
    which scores the tasks still to come: the upper triangle of the accuracy matrix, and what
    Avalanche's forward-transfer metrics need. Avalanche's own ``MultiHeadClassifier`` scores such a
    task with a fresh, untrained head; here:

    * ``"evaluate"`` (default): the experience is scored with the untrained network, the one the
      hypernetwork generates from the all-zero task embedding (nothing is created, no random number
      is drawn). The untrained task ids of the last ``eval()`` are in :attr:`untrained_eval_tasks`, so
      their cells can be told apart.
    * ``"refuse"``: ``eval()`` raises :class:`TaskLabelError` before evaluating anything, naming the
      untrained task ids and the trained ones.
    * With ``task_inference="entropy"`` the given task label is not used at evaluation: every sample,
      an untrained task's included, is routed to the trained task of lowest predictive entropy, so
      neither choice applies (the ids are still recorded); before any task is trained, the choice
      above applies.

    Outside ``eval()`` the model refuses an untrained task id in every forward path
    (``model(x, task_label)``, ``forward_single_task``, ``infer_task``) unless called with
    ``allow_untrained=True``.

    **Checkpoints.** :meth:`state_dict` / :meth:`load_state_dict` (as on every strategy of this
    package): a strategy built with the same arguments continues from a saved state as it would have
    without the interruption (with the global random-number generators restored as well).

    Args:
        model: the task-conditioned hypernetwork model (:func:`strategies.build_cl_model`): target,
            hypernetwork ``h`` and one embedding ``e_t`` per task, ``theta_t = h(e_t)`` (von Oswald et
            al. 2020, Eq. 1).
        optimizer: None (default): Adam (fused where available) with the two parameter groups
            ``shared`` and ``task_embedding``; a user optimizer must have exactly these groups, built
            with ``model.param_groups(lr=..., emb_lr=...)`` before any scheduler.
        lr: the default optimizer's learning rate (3e-4; see above).
        emb_lr: the task embeddings' learning rate (None: ``lr``).
        adam_betas: the default Adam's ``betas``.
        beta: strength of the output regularizer (von Oswald et al. 2020, Eq. 2-3:
            ``L = L_task + beta / (T - 1) * sum_{t < T} ||h(e_t, Theta) - h*(e_t)||^2``); 0: fine-tuning.
        reg_targets: the regularizer's targets ``h*(e_t)``: ``"stored"`` (recorded before each task, as
            the paper) or ``"online"`` (a frozen copy of the hypernetwork, for long task sequences).
        reg_subset: regularize a random subset of this many earlier tasks per step (None: all of them;
            the paper's App. C option for long sequences).
        lookahead: regularize at the look-ahead weights ``Theta + Delta Theta`` (Eq. 2's
            ``Delta Theta_h``, the step the optimizer is about to take), back-propagated after the task
            loss; False: at ``Theta``.
        task_inference: ``"given"`` (the task label of each sample, CL1) or ``"entropy"`` (at evaluation
            each sample goes to the trained task of lowest predictive entropy, HNET+ENT, CL3).
        untrained_tasks: ``"evaluate"`` or ``"refuse"``: what evaluating a task not yet trained does (see
            above).
        train_iterations: optimizer steps per training experience (None: ``train_epochs`` passes).
        allow_task_revisit: allow training a task label again (by default refused: it would overwrite
            what the regularizer protects).
        reset_optimizer_state: clear the optimizer's state (Adam's moments) at each new experience, as
            the reference code starts every task with fresh Adam moments.
        criterion: the task loss (Avalanche's; cross-entropy by default, ``nn.MSELoss()`` for regression).
        train_mb_size: training mini-batch size.
        train_epochs: passes over each training experience (when ``train_iterations`` is None).
        eval_mb_size: evaluation mini-batch size.
        device: where the model and the mini-batches live.
        plugins: Avalanche plugins, run after the output regularizer plugin; a
            :class:`~strategies.health_plugin.TrainingHealthPlugin` given here replaces the default one.
            Plugins that cannot work with generated weights are refused with the reason.
        evaluator: Avalanche's evaluation plugin (or a factory of one); None: no metrics.
        eval_every: Avalanche's periodic evaluation during training (-1: none).
        health_every: iterations between the training-health checks (None: monitors off).
        fast_batches: gather whole mini-batches of in-memory tensor rows on the device (see above).
        sync_every: iterations between reads of the finiteness checks (None: 1 on the CPU, 25 on a GPU).
        compile: ``torch.compile`` the one-task model forward (see above).
        **kwargs: further keyword arguments of Avalanche's ``SupervisedTemplate``.
    """

    model: TaskConditionedHypernetwork  # the template's model (Avalanche, untyped): checked in __init__
    dataloader: Any  # the template's current loader (Avalanche, untyped)

    def __init__(
        self,
        *,
        model: TaskConditionedHypernetwork,
        optimizer: Optional[torch.optim.Optimizer] = None,
        lr: float = 3e-4,
        emb_lr: Optional[float] = None,
        adam_betas: Sequence[float] = (0.9, 0.999),
        beta: float = 0.01,
        reg_targets: TargetMode = "stored",
        reg_subset: Optional[int] = None,
        lookahead: bool = False,
        task_inference: str = "given",
        untrained_tasks: str = "evaluate",
        train_iterations: Optional[int] = None,
        allow_task_revisit: bool = False,
        reset_optimizer_state: bool = True,
        criterion: Callable = nn.CrossEntropyLoss(),
        train_mb_size: int = 32,
        train_epochs: int = 1,
        eval_mb_size: Optional[int] = 256,
        device: Union[str, torch.device] = "cpu",
        plugins: Optional[Sequence[BasePlugin]] = None,
        evaluator: Union[EvaluationPlugin, Callable[[], EvaluationPlugin]] = default_evaluator,
        eval_every: int = -1,
        health_every: Optional[int] = 50,
        fast_batches: bool = True,
        sync_every: Optional[int] = None,
        compile: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, TaskConditionedHypernetwork):
            raise TypeError(
                "model must be a TaskConditionedHypernetwork; build one from your nn.Module with "
                "strategies.build_cl_model(module, ...)"
            )
        if task_inference not in ("given", "entropy"):
            raise ValueError(f"task_inference must be 'given' or 'entropy', got {task_inference!r}")
        if untrained_tasks not in UNTRAINED_TASKS:
            raise ValueError(
                f"untrained_tasks must be one of {list(UNTRAINED_TASKS)}, got {untrained_tasks!r}: "
                "'evaluate' scores a task not trained yet with the untrained network (all-zero task "
                "embedding), 'refuse' raises"
            )
        if sync_every is not None and (
            isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1
        ):
            raise ValueError(f"sync_every must be an integer >= 1 or None (the device's default), got {sync_every!r}")
        if train_iterations is not None and (not isinstance(train_iterations, int) or train_iterations < 1):
            raise ValueError(f"train_iterations must be an integer >= 1 or None, got {train_iterations!r}")
        for name, value in (("lr", lr), ("emb_lr", emb_lr if emb_lr is not None else lr)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        self.lr = lr
        self.emb_lr = lr if emb_lr is None else emb_lr
        self.regularizer = OutputRegularizer(beta=beta, targets=reg_targets, subset=reg_subset)
        self.regularizer_plugin = OutputRegularizerPlugin(self.regularizer, lookahead=lookahead)
        self.lookahead = lookahead
        self.task_inference = task_inference
        self.untrained_tasks = untrained_tasks
        self.untrained_eval_tasks: List[int] = []  # task ids of the last eval() that were not trained
        self.train_iterations = train_iterations
        self.allow_task_revisit = allow_task_revisit
        self.reset_optimizer_state = reset_optimizer_state
        self.fast_batches = fast_batches
        self.trained_tasks: List[int] = []
        self.current_task: Optional[int] = None
        self.sync_every = sync_every
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False, got {compile!r}")
        self.compile_step = compile
        # None: compile=True but no compiled call yet; True: compiled; False: eager (compile=False or fallback)
        self.compiled: Optional[bool] = None if compile else False
        self.compile_fallback_reason: Optional[str] = None
        self._compiled_forward: Optional[Callable[..., torch.Tensor]] = None
        self._last_loss: Optional[torch.Tensor] = None  # the last iteration's loss and penalty, on the device
        self._last_reg: Union[torch.Tensor, float] = 0.0
        self._unchecked: List[Tuple[torch.Tensor, str, int]] = []  # values whose finiteness is not read yet
        self.total_iterations = 0
        self._iter_in_exp = 0
        self.task_loss: Optional[torch.Tensor] = None
        given = [p for p in (plugins or []) if isinstance(p, TrainingHealthPlugin)]
        # a monitor the user passed (with their thresholds) replaces the default one
        self.health = given[0] if given else None if health_every is None else TrainingHealthPlugin(every=health_every)
        check_plugins(list(plugins or []), torch.device(device))
        optimizer = self._checked_optimizer(model, optimizer, tuple(adam_betas))
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=criterion,
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=[
                self.regularizer_plugin,
                *(plugins or []),
                *([] if given or self.health is None else [self.health]),
            ],
            evaluator=evaluator,
            eval_every=eval_every,
            **kwargs,
        )

    def train(self, experiences: Any, eval_streams: Optional[Sequence[Any]] = None, **kwargs: Any):
        """Avalanche's ``train``, after checking ``strategy.plugins`` again: a plugin appended to it
        after construction is refused with the same message as one passed to the constructor."""
        check_plugins(self.plugins, torch.device(self.device))
        self._unchecked = []
        try:
            return super().train(experiences, eval_streams, **kwargs)
        except Exception:
            # a NaN found only now (checks read every few steps) is the cause of what failed after it
            self.read_finite_checks()
            raise

    # ------------------------------------------------------------------ optimizer
    def _checked_optimizer(
        self, model: TaskConditionedHypernetwork, optimizer: Optional[torch.optim.Optimizer], betas: tuple
    ) -> torch.optim.Optimizer:
        if optimizer is None:
            optimizer = make_adam(model.param_groups(lr=self.lr, emb_lr=self.emb_lr), lr=self.lr, betas=betas)
        shared = model.shared_parameters()
        first = optimizer.param_groups[0]["params"]
        if {id(p) for p in first} != {id(p) for p in shared} or len(first) != len(shared):
            raise ValueError(
                "the optimizer's first parameter group must hold exactly model.shared_parameters() (the "
                "hypernetwork and the target's non-generated parameters); build the optimizer as "
                "torch.optim.Adam(model.param_groups(lr=..., emb_lr=...))"
            )
        if len(optimizer.param_groups) != 2 or optimizer.param_groups[EMBEDDING]["params"]:
            raise ValueError(
                f"the optimizer has {len(optimizer.param_groups)} parameter group(s); it needs two, the shared "
                "parameters and an empty group for the current task's embedding, both present before any "
                "scheduler is built: torch.optim.Adam(model.param_groups(lr=..., emb_lr=...))"
            )
        if self.lookahead:
            check_lookahead_optimizer(optimizer)
        return optimizer

    def make_optimizer(self, **kwargs: Any) -> None:
        """Points the ``task_embedding`` group at the current task's embedding (earlier ones frozen);
        resets the optimizer state at a new experience unless ``reset_optimizer_state=False``."""
        model: TaskConditionedHypernetwork = self.model
        assert self.current_task is not None
        shared = model.shared_parameters()
        if [id(p) for p in self.optimizer.param_groups[SHARED]["params"]] != [id(p) for p in shared]:
            # a plugin replaced the model (e.g. GDumb restarts from a copy): optimise the new parameters
            self.optimizer.param_groups[SHARED]["params"] = shared
            self.optimizer.state.clear()
        for i, emb in enumerate(model.task_embeddings):
            emb.requires_grad_(i == self.current_task)
        group = self.optimizer.param_groups[EMBEDDING]
        for p in group["params"]:
            self.optimizer.state.pop(p, None)
        group["params"] = [model.task_embeddings[self.current_task]]
        if self.reset_optimizer_state:
            self.optimizer.state.clear()

    def make_train_dataloader(self, **kwargs: Any) -> None:
        """Avalanche's loader, fetching whole batches of in-memory rows where it can (``fast_batches``)."""
        super().make_train_dataloader(**kwargs)
        if self.fast_batches:
            self.dataloader = gathered_loader(self.dataloader, self.device)

    def make_eval_dataloader(self, **kwargs: Any) -> None:
        """Avalanche's loader, fetching whole batches of in-memory rows where it can (``fast_batches``)."""
        super().make_eval_dataloader(**kwargs)
        if self.fast_batches:
            self.dataloader = gathered_loader(self.dataloader, self.device)

    def check_model_and_optimizer(self, **kwargs: Any) -> None:
        self._check_task_labels()
        self.model = self.model_adaptation()
        self.model.stats_task = self.current_task  # only this task's normalisation statistics are updated
        self.make_optimizer(**kwargs)

    def _check_task_labels(self) -> None:
        assert self.experience is not None
        labels = [int(t) for t in (getattr(self.experience, "task_labels", None) or [])]
        if not labels:
            raise TaskLabelError(
                "HypernetworkStrategy needs experiences with task labels; build the benchmark with task "
                "labels (avalanche.benchmarks.scenarios.with_task_labels, or return_task_id=True). "
                + CLASS_INCREMENTAL_HINT
            )
        if len(labels) != 1:
            raise TaskLabelError(f"a training experience must hold one task, got task labels {labels}")
        task = labels[0]
        if task in self.trained_tasks and not self.allow_task_revisit:
            raise TaskLabelError(
                f"task label {task} was already trained (trained tasks {self.trained_tasks}); continuing it would "
                "overwrite what the regularizer protects. If every experience of your stream carries task label "
                f"{task}, the benchmark has no task labels: build it with return_task_id=True (e.g. "
                "PermutedMNIST(n, return_task_id=True)) or with_task_labels(...). "
                + CLASS_INCREMENTAL_HINT
                + ". To continue training a task on purpose, pass allow_task_revisit=True"
            )
        self.current_task = task

    # ------------------------------------------------------------------ training
    def snapshot_earlier_tasks(self) -> None:
        """Records the regularizer's targets for every trained task but the current one."""
        model: TaskConditionedHypernetwork = self.model
        earlier = [t for t in self.trained_tasks if t != self.current_task]
        embs = model.embeddings(earlier) if earlier else torch.empty(0, model.emb_dim, device=self.device)
        self.regularizer.snapshot(model.hnet, embs, earlier)

    def _before_training_exp(self, **kwargs: Any) -> None:
        super()._before_training_exp(**kwargs)
        self._iter_in_exp = 0
        self._stop_training = False
        if self.train_iterations is not None:
            self.train_epochs = max(1, math.ceil(self.train_iterations / max(1, len(self.dataloader))))

    def _after_training_iteration(self, **kwargs: Any) -> None:
        self._iter_in_exp += 1
        self.total_iterations += 1
        self._last_reg = self.regularizer_plugin.last_penalty
        self._last_loss = self.loss.detach()
        if self._iter_in_exp % self.checks_every == 0:
            self.read_finite_checks()
        super()._after_training_iteration(**kwargs)
        if self.train_iterations is not None and self._iter_in_exp >= self.train_iterations:
            self.stop_training()

    @property
    def last_reg_loss(self) -> float:
        """The last iteration's regularizer value (read from the device when asked for)."""
        return float(self._last_reg)

    @property
    def last_task_loss(self) -> float:
        """The last iteration's task loss (read from the device when asked for): loss minus penalty."""
        return float("nan") if self._last_loss is None else float(self._last_loss) - self.last_reg_loss

    @property
    def last_loss_tensors(self) -> Tuple[Optional[torch.Tensor], Union[torch.Tensor, float]]:
        """The last iteration's (loss, penalty) as they are on the device, for loggers that read many at once."""
        return self._last_loss, self._last_reg

    @property
    def checks_every(self) -> int:
        """Iterations between reads of the finiteness checks: ``sync_every``, else 1 on the CPU (a read
        costs nothing there) and 25 on a GPU (no host synchronisation per step)."""
        if self.sync_every is not None:
            return self.sync_every
        return 1 if torch.device(self.device).type == "cpu" else 25

    def _after_training_exp(self, **kwargs: Any) -> None:
        self.read_finite_checks()
        if self.current_task is not None and self.current_task not in self.trained_tasks:
            self.trained_tasks.append(self.current_task)
        super()._after_training_exp(**kwargs)

    def criterion(self) -> torch.Tensor:
        """The task loss; kept as ``task_loss`` during training (before any plugin adds its penalty)."""
        loss = super().criterion()
        if self.is_training:
            self.task_loss = loss.detach()
        return loss

    @property
    def health_log(self):
        """What the training-health monitors found (:class:`cl_moo.health.HealthLog`); None when they are off."""
        return None if self.health is None else self.health.log

    def backward(self) -> None:
        self.check_finite(self.loss, "training loss")
        super().backward()

    def check_finite(self, value: torch.Tensor, what: str) -> None:
        """Raises :class:`NonFiniteLossError` for a NaN or infinite ``value``: at once where
        :attr:`checks_every` is 1, else when the checks are read (every ``checks_every`` iterations and
        at the end of the experience), naming the iteration it happened at."""
        self._unchecked.append((value.detach(), what, self._iter_in_exp))
        if self.checks_every == 1:
            self.read_finite_checks()

    def read_finite_checks(self) -> None:
        """Reads the pending finiteness checks (one host synchronisation) and raises for the first failure."""
        pending, self._unchecked = self._unchecked, []
        if not pending:
            return
        finite = torch.isfinite(torch.stack([v.reshape(()) for v, _, _ in pending])).tolist()
        for ok, (value, what, iteration) in zip(finite, pending):
            if not ok:
                raise NonFiniteLossError(
                    f"{what} became {float(value)} at iteration {iteration} of task "
                    f"{self.current_task}: lower the learning rate (lr={self.optimizer.param_groups[SHARED]['lr']}) "
                    f"or beta (beta={self.regularizer.beta}), or check the inputs for NaN"
                )

    # ------------------------------------------------------------------ evaluation
    def eval(self, exp_list: Any, **kwargs: Any):
        """Avalanche's ``eval``, leaving the random-number generators as they were: evaluating
        (e.g. the whole test stream after each experience) never changes later training
        (PyTorch's data loaders draw a seed from the global generator even without shuffling)."""
        self.untrained_eval_tasks = []
        if not isinstance(exp_list, Iterator):  # a one-shot iterator is checked per experience instead
            for exp in exp_list if isinstance(exp_list, Iterable) else [exp_list]:  # as Avalanche reads it
                self._check_untrained(exp)  # refuses before evaluating anything
        cpu = torch.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            return super().eval(exp_list, **kwargs)
        finally:
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)

    def _check_untrained(self, experience: Any) -> None:
        """Records the experience's task ids that are not trained; with ``untrained_tasks="refuse"``
        (and no task inference to route them to) refuses them."""
        labels = [int(t) for t in (getattr(experience, "task_labels", None) or [])]
        known = set(self.trained_tasks) | ({self.current_task} if self.current_task is not None else set())
        untrained = sorted(set(labels) - known)
        if not untrained:
            return
        routed = self.task_inference == "entropy" and bool(self.trained_tasks)
        if self.untrained_tasks == "refuse" and not routed:
            listed = ", ".join(str(t) for t in untrained)
            raise TaskLabelError(
                f"evaluation experience {getattr(experience, 'current_experience', '?')} holds task {listed}, which "
                f'is not trained (trained tasks: {sorted(self.trained_tasks)}); untrained_tasks="refuse" refuses '
                "it. Evaluate the trained tasks only (e.g. test_stream[:i + 1] after experience i), infer the task "
                'among the trained ones with task_inference="entropy", or pass untrained_tasks="evaluate" to score '
                "it with the untrained network (all-zero task embedding), as Avalanche's full-stream evaluation "
                "after each experience expects"
            )
        self.untrained_eval_tasks.extend(t for t in untrained if t not in self.untrained_eval_tasks)

    def _before_eval_exp(self, **kwargs: Any) -> None:
        self._check_untrained(self.experience)  # experiences given as a one-shot iterator arrive here unchecked
        super()._before_eval_exp(**kwargs)

    def forward(self) -> torch.Tensor:
        model: TaskConditionedHypernetwork = self.model
        if self.is_eval and self.task_inference == "entropy" and self.trained_tasks:
            _, logits = model.infer_task(self.mb_x, self.trained_tasks)
            return logits
        # eval() has checked (or recorded) the untrained task ids; training only sees trained or current ones
        labels = self.mb_task_id
        single = getattr(labels, SINGLE_TASK, None)  # a gathered one-task batch: no read-back of its labels
        allow_untrained = self.is_eval and self.untrained_tasks == "evaluate"
        if self.compile_step and self.compiled is not False:
            tasks = [int(single)] if single is not None else model.task_ids(labels)
            if len(tasks) == 1:
                out = self._forward_compiled(tasks[0], allow_untrained)
                if out is not None:
                    return out
        return model(self.mb_x, labels if single is None else single, allow_untrained=allow_untrained)

    # ------------------------------------------------------------------ torch.compile (compile=True)
    @property
    def compile_mode(self) -> Optional[str]:
        """``torch.compile``'s mode: ``"reduce-overhead"`` (CUDA graphs) on a CUDA device, else the default."""
        return "reduce-overhead" if torch.device(self.device).type == "cuda" else None

    def _generate_and_run(self, emb: torch.Tensor, x: torch.Tensor, buffers: Optional[dict]) -> torch.Tensor:
        """The compiled unit: the task's weights from its embedding, then the functional target on ``x``."""
        model: TaskConditionedHypernetwork = self.model
        return model.target(model.hnet(emb), x, buffers=buffers)

    def _forward_compiled(self, task: int, allow_untrained: bool) -> Optional[torch.Tensor]:
        """One task's mini-batch through the compiled forward; None after a compile failure (the caller
        then runs the eager forward, which computes the same)."""
        model: TaskConditionedHypernetwork = self.model
        emb = model.embeddings([task], allow_untrained=allow_untrained)[0]  # refuses untrained ids as eager does
        buffers = model.stats(task)
        mode = self.compile_mode
        try:
            if self._compiled_forward is None:
                self._compiled_forward = torch.compile(self._generate_and_run, mode=mode, fullgraph=True)
            if mode == "reduce-overhead":  # a new training step: earlier CUDA-graph outputs may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            out = self._compiled_forward(emb, self.mb_x, buffers)
        except Exception as exc:  # compilation failed: eager from here on, said once
            self._compile_fallback(exc)
            return None
        self.compiled = True
        return out

    def _compile_fallback(self, exc: BaseException) -> None:
        first = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")
        self.compiled = False
        self.compile_fallback_reason = reason
        self._compiled_forward = None
        warnings.warn(
            f"HypernetworkStrategy(compile=True): torch.compile of the model forward failed ({reason}); "
            f"training and evaluation continue EAGERLY (uncompiled), so results are eager ones. "
            f"strategy.compiled is False and strategy.compile_fallback_reason holds the reason",
            RuntimeWarning,
            stacklevel=3,
        )

    # ------------------------------------------------------------------ checkpoints
    # what state_dict() returns (load_state_dict refuses a state without them, except those of STATE_OPTIONAL)
    STATE_KEYS = (
        "model",
        "num_tasks",
        "known_tasks",
        "trained_tasks",
        "current_task",
        "total_iterations",
        "optimizer",
        "regularizer",
        "clock",
        "health",
    )
    # absent from states written by cl_state_dict() before state_dict() existed: loaded as described there
    STATE_OPTIONAL = ("known_tasks", "current_task", "optimizer", "regularizer", "clock", "health")
    CLOCK_COUNTERS = CLOCK_COUNTERS

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue exactly after the last finished experience (or between ``train``
        calls), for :meth:`load_state_dict` on a strategy built the same way:

        * ``model``: the model's ``state_dict()``: the hypernetwork, every task embedding ``e_t`` and the
          per-task normalisation statistics; ``num_tasks`` (how many embeddings to create before loading)
          and ``known_tasks`` (the model's trained task labels);
        * ``trained_tasks``, ``current_task`` (the task trained last; its embedding is the optimizer's
          ``task_embedding`` group) and ``total_iterations``;
        * ``optimizer``: the optimizer's ``state_dict()`` (moments, step counts and learning rates, so a
          schedule set by a plugin carries over; the moments matter with ``reset_optimizer_state=False``);
        * ``regularizer``: the output regularizer's recorded targets (von Oswald et al. 2020, Eq. 2) and
          the tasks they are for (recorded anew at the next experience, as without a checkpoint);
        * ``clock``: the counters of Avalanche's ``strategy.clock`` (the steps of its metrics and loggers);
        * ``health``: what the training-health monitors recorded (None when they are off).

        The random-number generators are not included: they are global (the runners save them next to
        this state)."""
        model: TaskConditionedHypernetwork = self.model
        return {
            "model": model.state_dict(),
            "num_tasks": model.num_tasks,
            "known_tasks": sorted(model.known_train_tasks_labels),
            "trained_tasks": list(self.trained_tasks),
            "current_task": self.current_task,
            "total_iterations": self.total_iterations,
            "optimizer": self.optimizer.state_dict(),
            "regularizer": self.regularizer.state_dict(),
            "clock": clock_state(self.clock),
            "health": None if self.health is None else self.health.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned, into a strategy built with the same arguments (the
        same model construction, optimizer type and plugins); training then continues as it would have.

        A state written by the former ``cl_state_dict()`` (runs checkpointed before this method) lacks
        some entries: without ``optimizer`` the learning rates are taken from its ``optimizer_lrs`` and
        the optimizer state starts empty (it was reset at every new experience anyway); without
        ``regularizer`` the targets are recorded at the next experience (as they always are); without
        ``clock`` Avalanche's clock is left as it is (the runner sets it from ``total_iterations``)."""
        missing = [k for k in self.STATE_KEYS if k not in state and k not in self.STATE_OPTIONAL]
        if missing:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: the state lacks {missing} "
                f"(it needs {list(self.STATE_KEYS)}); pass what state_dict() returned"
            )
        model: TaskConditionedHypernetwork = self.model
        model.ensure_tasks(int(state["num_tasks"]))
        model.load_state_dict(state["model"])
        model.known_train_tasks_labels = set(state.get("known_tasks", state["trained_tasks"]))
        self.trained_tasks = [int(t) for t in state["trained_tasks"]]
        self.total_iterations = int(state["total_iterations"])
        current = state.get("current_task")
        self.current_task = None if current is None else int(current)
        model.stats_task = self.current_task  # as check_model_and_optimizer left it
        if self.current_task is not None:  # the optimizer's task_embedding group as make_optimizer left it
            for i, emb in enumerate(model.task_embeddings):
                emb.requires_grad_(i == self.current_task)
            self.optimizer.param_groups[EMBEDDING]["params"] = [model.task_embeddings[self.current_task]]
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        else:
            for group, lr in zip(self.optimizer.param_groups, state.get("optimizer_lrs", [])):
                group["lr"] = lr
        if state.get("regularizer") is not None:
            self.regularizer.load_state_dict(state["regularizer"], model.hnet)
        load_clock_state(self.clock, state.get("clock"))
        if self.health is not None and state.get("health"):
            self.health.load_state_dict(state["health"])

    def cl_state_dict(self) -> Dict[str, Any]:
        """Deprecated: :meth:`state_dict` (the name every strategy of this package uses)."""
        warnings.warn(
            "HypernetworkStrategy.cl_state_dict() is deprecated; use state_dict()", DeprecationWarning, stacklevel=2
        )
        return self.state_dict()

    def load_cl_state_dict(self, state: Mapping[str, Any]) -> None:
        """Deprecated: :meth:`load_state_dict` (the name every strategy of this package uses)."""
        warnings.warn(
            "HypernetworkStrategy.load_cl_state_dict() is deprecated; use load_state_dict()",
            DeprecationWarning,
            stacklevel=2,
        )
        self.load_state_dict(state)

    def __getstate__(self) -> dict:
        """Pickled (``avalanche.checkpointing.save_checkpoint``, dill) with the optimizer as a
        :class:`PickledOptimizer`: dill cannot pickle torch 2.14's optimizers (see
        :mod:`strategies.optimizer_pickling`). ``save_checkpoint(strategy, path)`` then keeps the
        optimizer's state and learning rates; ``exclude=["optimizer"]`` keeps the live one instead."""
        state = self.__dict__.copy()
        state["_compiled_forward"] = None  # a compiled function does not pickle; compiled again when next used
        if isinstance(state.get("optimizer"), torch.optim.Optimizer):
            state["optimizer"] = describe_optimizer(state["optimizer"], state["model"])
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if isinstance(state.get("optimizer"), PickledOptimizer):
            self.optimizer = state["optimizer"].rebuild(self.model)

    def __copy__(self) -> "HypernetworkStrategy":
        """A shallow copy sharing the live optimizer (``save_checkpoint`` copies the strategy before it
        removes the ``exclude`` attributes, so a copy must not describe the optimizer yet)."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone
