"""Pareto HyperNetworks (Navon et al. 2021) as an Avalanche strategy.

The hypernetwork takes a preference ray ``r`` on the m-simplex and emits the target network's
weights ``theta(r)``. Each step samples ``rays_per_step`` rays (default ``Dirichlet(alpha)``) and runs
all of them in one batched call (the target runs B weight sets at once); a :class:`~strategies.solvers.Solver`
turns the ``(B, m)`` losses into the scalar to backpropagate:

* PHN-LS (Eq. 3): ``mean_b sum_i r_bi l_i(theta(r_b))`` (:class:`~strategies.solvers.LinearScalarization`)
* PHN-EPO: ``mean_b sum_i w_bi l_i(theta(r_b))`` with ``w_b`` the EPO weights (Mahapatra & Rajan 2020,
  :class:`~strategies.solvers.EPO`) from the per-objective gradients with respect to the generated weights.

Same shape as the continual strategy (:class:`strategies.hnet_cl.HypernetworkStrategy`): an Avalanche
``SupervisedTemplate`` whose ``forward`` samples the rays and generates the weights, whose ``criterion``
is the solver's scalarization, and whose optimizer step, callbacks and plugins are Avalanche's
(``strategy.train(experience)``). ``eval(...)`` returns the ``(K, m)`` loss vectors of K rays.
The ray sampler, the batch iteration and the hypernetwork protocol above the strategy do not need Avalanche.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import warnings
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
from avalanche.benchmarks.scenarios.generic_scenario import CLStream
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.func import vmap
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cl_moo import FunctionalTarget, WeightLayout, build_hypernetwork
from cl_moo.hnet_options import BUILDER_DEFAULTS, MOVED_KEYWORDS, HypernetworkOptions, refuse_keywords, resolve_options
from cl_moo.hypernetwork import unbatch
from cl_moo.moo_metrics import RayError, check_rays, evaluation_rays
from cl_moo.optim import make_adam

from ._checks import is_integral, is_real
from .clock_state import clock_state, load_clock_state
from .iteration_body import iteration_body
from .solvers import SOLVERS, Solver, make_solver

LossFn = Callable[..., torch.Tensor]
RaySampler = Callable[[int, torch.Generator], torch.Tensor]


class RayHypernetwork(Protocol):
    """What :class:`ParetoHypernetworkStrategy` uses of its hypernetwork (``hnet=``): a
    :class:`cl_moo.Hypernetwork`, or a module with the same calls (:class:`strategies.phn_cl.TaskRayHypernetwork`)."""

    layout: WeightLayout

    @property
    def cond_dim(self) -> int: ...

    def output_head(self) -> nn.Linear: ...

    def forward_flat(self, cond: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, cond: torch.Tensor) -> List[torch.Tensor]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...

    def to(self, device: torch.device) -> RayHypernetwork: ...

    def train(self, mode: bool = True) -> object: ...

    def eval(self) -> object: ...


__all__ = [
    "DataExperience",
    "DirichletRays",
    "PHN_HNET_DEFAULTS",
    "ParetoHypernetworkStrategy",
    "ParetoModel",
    "ParetoPlugin",
    "iterate_batches",
    "RaySampler",
    "SOLVERS",
    "Solver",
]

# the hypernetwork ParetoHypernetworkStrategy builds when hnet_options leaves a field at None: PHN's ray-MLP
# (Navon et al. 2021; one output head per target tensor, hyperfan-in init for ReLU targets)
PHN_HNET_DEFAULTS = BUILDER_DEFAULTS


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _positional_count(init: Callable[..., Any]) -> int:
    """How many positional arguments (after ``self``) ``init`` takes (a large number for ``*args``)."""
    params = list(inspect.signature(init).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 1 << 30
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _positive_int(value: Any, name: str, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}{hint}")
    return int(value)


_NATIVE_DIRICHLET = hasattr(torch, "_sample_dirichlet")  # else the pure-torch sampler below


def _standard_gamma(shape: Sequence[int], a: float, generator: torch.Generator) -> torch.Tensor:
    """Gamma(a, 1) samples (float64) drawn only from ``generator`` (Marsaglia & Tsang 2000;
    ``a < 1`` via ``Gamma(a + 1) * U^(1/a)``)."""
    n = int(np.prod(shape))
    d = (a + 1.0 if a < 1 else a) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while len(todo):
        z = torch.randn(len(todo), generator=generator, dtype=torch.float64)
        u = torch.rand(len(todo), generator=generator, dtype=torch.float64)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if a < 1:
        out = out * torch.rand(n, generator=generator, dtype=torch.float64) ** (1.0 / a)
    return out.reshape(*shape)


@contextlib.contextmanager
def seeded_global_rng(seed: Optional[int]) -> Iterator[None]:
    """Runs the block with the global RNG seeded by ``seed`` and restores it afterwards (nothing for
    None): a hypernetwork built from a seed leaves the caller's random stream untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _loader_order(n: int, generator: Optional[torch.Generator]) -> tuple:
    """The draws of ``DataLoader(shuffle=True, generator=generator)`` for one pass: the iterator's base
    seed, then (from the global RNG when ``generator`` is None) the sampler's permutation."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
    return torch.randperm(n, generator=generator), generator


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    *,
    device: Union[str, torch.device] = "cpu",
    shuffle: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Iterator[List[torch.Tensor]]:
    """One pass over ``dataset`` in batches on ``device``: the batches, and the random draws, of
    ``DataLoader(dataset, batch_size, shuffle=shuffle, generator=generator)`` (the global RNG when
    shuffling without a generator), so results and checkpoints do not depend on which path ran.
    A ``TensorDataset`` is moved to the device once per pass and sliced by index: no per-sample
    collation and no host-to-device copy per step. Any other dataset goes through the ``DataLoader``."""
    device = torch.device(device)
    if not isinstance(dataset, TensorDataset):
        # an own generator when not shuffling: the loader's per-iterator seed draw must not touch the global RNG
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=False,
            generator=generator if shuffle else torch.Generator(),
        )
        for batch in loader:
            yield [t.to(device) for t in batch]
        return
    tensors = [t.to(device) for t in dataset.tensors]
    n = len(tensors[0])
    if not shuffle:
        for start in range(0, n, batch_size):
            yield [t[start : start + batch_size] for t in tensors]
        return
    order, sampler_generator = _loader_order(n, generator)
    order = order.to(device)
    full = n - n % batch_size
    for start in range(0, full, batch_size):
        yield [t[order[start : start + batch_size]] for t in tensors]
    torch.randperm(n, generator=sampler_generator)  # RandomSampler's (empty) remainder draw, where the loader makes it
    if full < n:
        yield [t[order[full:]] for t in tensors]


class DirichletRays:
    """The default ray sampler: ``n`` rays from ``Dirichlet(alpha, ..., alpha)`` on the m-simplex
    (PHN trains on ``Dirichlet(0.2)``), drawn only from the given ``torch.Generator``."""

    def __init__(self, m: int, alpha: float) -> None:
        self.m, self.alpha = m, float(alpha)

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if _NATIVE_DIRICHLET:  # the kernel behind torch.distributions.Dirichlet, which takes a generator
            return torch._sample_dirichlet(torch.full((n, self.m), self.alpha), generator=generator)
        g = _standard_gamma((n, self.m), self.alpha, generator).clamp_min(1e-300)
        return (g / g.sum(dim=1, keepdim=True)).float()

    def __repr__(self) -> str:
        return f"DirichletRays(m={self.m}, alpha={self.alpha})"


class ParetoPlugin(SupervisedPlugin):
    """Avalanche's ``SupervisedPlugin`` with the callback :meth:`ParetoHypernetworkStrategy.eval` adds,
    ``after_front_eval(strategy, rays=, losses=)`` (the strategy's ``PLUGIN_CLASS``, so a plugin that
    implements it is not reported as incompatible)."""

    def after_front_eval(self, strategy: Any, *, rays: np.ndarray, losses: np.ndarray, **kwargs: Any) -> None:
        """After :meth:`ParetoHypernetworkStrategy.eval`: the rays ``(K, m)`` and their losses ``(K, m)``."""


class ParetoModel(nn.Module):
    """The template's ``model`` (what Avalanche moves, switches to train mode and hands to plugins): the
    hypernetwork ``hnet`` and the target network ``target`` whose weights it generates."""

    def __init__(self, hnet: RayHypernetwork, target: FunctionalTarget) -> None:
        super().__init__()
        self.hnet = hnet
        self.target = target


class _StreamName:
    """The ``origin_stream`` of a :class:`DataExperience`: what Avalanche's metrics and loggers read (its ``name``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"_StreamName({self.name!r})"


class DataExperience:
    """What :meth:`ParetoHypernetworkStrategy.train` gives Avalanche's loop for a torch ``Dataset`` (or no
    data, ``dataset=None``): ``strategy.experience`` with the ``dataset``, the calls Avalanche makes and
    what its metrics and loggers read (experience 0 of task 0 in a stream named ``train_stream``), so an
    ``evaluator`` with metrics and loggers works as with an Avalanche experience."""

    def __init__(self, dataset: Optional[Dataset], stream: str = "train_stream") -> None:
        self.dataset = dataset
        self.current_experience = 0
        self.origin_stream = _StreamName(stream)
        self.task_label = 0
        self.task_labels = [0]

    def logging(self) -> "DataExperience":
        return self

    def train(self) -> "DataExperience":
        return self

    def eval(self) -> "DataExperience":
        return self


class _TrainBatches:
    """The training loader: each pass gives the batches and the random draws of :func:`iterate_batches`
    over the data (shuffled with the strategy's generator), or ``None`` batches for an objective-only
    strategy; a pass ends early once the step budget is spent or a plugin asked to stop, WITHOUT
    fetching another batch (so the generator's draws are those of the plain loop, and a resumed run
    continues the same stream). The pass's order and position are kept on the strategy
    (``_pass_order``, ``_pass_position``) for :meth:`ParetoHypernetworkStrategy.state_dict`, and a
    pass saved there (``_resume_pass``) is continued by the next pass."""

    def __init__(self, strategy: "ParetoHypernetworkStrategy", dataset: Optional[Dataset]) -> None:
        self.strategy, self.dataset = strategy, dataset

    def __len__(self) -> int:
        s = self.strategy
        if self.dataset is None:
            return s._budget or 0
        return math.ceil(len(self.dataset) / s.train_mb_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Optional[List[torch.Tensor]]]:
        s = self.strategy
        if self.dataset is None:
            batches: Iterator[Optional[List[torch.Tensor]]] = iter([None] * len(self))
        else:
            batches = self._pass(s._resume_pass)  # cleared there once the data is checked to match
        s._pass_open = True
        try:
            while not s._should_stop():
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                yield batch
        finally:
            s._pass_open = False
            s._pass_order = None

    def _batches(self, order: torch.Tensor, tensors: Optional[List[torch.Tensor]]) -> Iterator[List[torch.Tensor]]:
        """The batches of the indices ``order`` (at most one pass), as the ``DataLoader`` forms them."""
        s = self.strategy
        if not len(order):
            return
        if tensors is not None:  # a TensorDataset on the device, sliced
            order = order.to(s.device)
            for start in range(0, len(order), s.train_mb_size):
                yield [t[order[start : start + s.train_mb_size]] for t in tensors]
            return
        assert self.dataset is not None
        loader = DataLoader(  # the shuffled loader's fetch and collation of these indices; no draw from our RNGs
            self.dataset, batch_size=s.train_mb_size, sampler=order.tolist(), generator=torch.Generator()
        )
        for batch in loader:
            yield [t.to(s.device) for t in batch]

    def _pass(self, resume: Optional[Mapping[str, Any]]) -> Iterator[List[torch.Tensor]]:
        """One shuffled pass (the draws of ``DataLoader(shuffle=True, generator=strategy.generator)``:
        the iterator's seed and the permutation at its start, the sampler's remainder draw after the last
        full batch), or the rest of the saved pass ``resume`` (its order and the samples already used)."""
        s, bs = self.strategy, self.strategy.train_mb_size
        n = len(self.dataset)  # type: ignore[arg-type]
        if resume is None:
            order, _ = _loader_order(n, s.generator)
            start = 0
        else:
            order, start = torch.as_tensor(resume["order"]).cpu(), int(resume["position"])
            if len(order) != n:
                raise ValueError(
                    f"the state was saved in the middle of a pass over {len(order)} samples; train() now got "
                    f"{n}: continue with the same data"
                )
            s._resume_pass = None  # consumed (a refused call above leaves it for the call with the right data)
        tensors = [t.to(s.device) for t in self.dataset.tensors] if isinstance(self.dataset, TensorDataset) else None
        full = n - n % bs
        s._pass_order, s._pass_position = order, start
        for batch in self._batches(order[start:full], tensors):
            s._pass_position += len(batch[0])  # before the step on it: a state saved then resumes after it
            yield batch
        if s._pass_position == full:  # the remainder draw is still to come (made where the loader makes it)
            torch.randperm(n, generator=s.generator)
            for batch in self._batches(order[full:], tensors):
                s._pass_position = n
                yield batch


class ParetoHypernetworkStrategy(SupervisedTemplate):
    """PHN over any target ``nn.Module``, any list of loss callables and any :class:`Solver`, as an
    Avalanche template (``SupervisedTemplate``): ``strategy.train(experience)`` runs Avalanche's training
    loop with its callbacks and plugins.

    **One training iteration** (Avalanche's ``training_epoch``): ``forward`` samples ``rays_per_step``
    rays, generates their weight sets in one batched hypernetwork call and evaluates the ``(B, m)``
    losses (``mb_output``); ``criterion`` is the solver's scalarization of them (PHN-LS, Eq. 3: ``mean_b
    sum_i r_bi l_i(theta(r_b))``; PHN-EPO: the EPO weights); plugins add their penalties to
    ``strategy.loss`` (``before_backward``); one backward and one optimizer step. ``last_loss``,
    ``last_rays``, ``last_losses`` and ``iteration`` are updated before ``after_training_iteration``.

    **Model.** ``strategy.model`` is a :class:`ParetoModel` holding ``hnet`` and ``target``. Without
    ``hnet``, :func:`cl_moo.build_hypernetwork` builds one from ``hnet_options`` (None fields: the
    defaults :data:`PHN_HNET_DEFAULTS`, an MLP with one head per target tensor, Navon et al. 2021),
    initialised on 256 sampled rays.

    **Losses.** With data, a batch is ``(x, *targets)`` and each loss is called as
    ``loss(output, *targets)`` for ONE weight set, ``output = target(weights, x)``; it must return a
    scalar (reduce per-sample losses with ``.mean()``). It is vectorised over the rays with
    ``torch.func.vmap``.

    **Objective-only problems** (``objective_only=True``): there is no data; the generated weight set
    itself is the solution (e.g. a vector ``x`` in the target's only parameter). Each loss is called as
    ``loss(weights)`` with ``weights`` a dict ``{parameter name: tensor}`` of ONE weight set (vmapped
    over the rays) and returns a scalar. Train with ``train(steps=N)`` (or ``train_steps=N``) and
    evaluate with ``eval(rays=...)``, both without data; passing data, or calling ``train()`` without
    data on a data-driven strategy, raises ``ValueError``.

    **Steps and randomness.** ``train_steps``: a budget of optimizer steps per ``train()`` call that
    overrides ``train_epochs`` (epochs repeat until it is spent; ``train(steps=N)`` overrides it for
    one call). ``seed`` seeds a private ``torch.Generator`` for ray sampling and data shuffling, and the
    hypernetwork's initialisation (in a forked RNG), so a seeded run is reproducible and leaves the
    global RNG untouched. ``rays_per_step=1`` runs ONE unbatched weight set (``target(weights, x)``, no
    vmap over weight sets), so targets without a vmap batching rule can train.

    **Plugins.** Avalanche plugins (``SupervisedPlugin``) or any object with Avalanche-named callbacks
    (``before_training``, ``before_training_iteration``, ``before_backward``, ``after_training_iteration``,
    ``after_training_epoch`` (also given ``epoch=``, the pass within this ``train()`` call),
    ``after_training``, ...), each called with the strategy, and :meth:`eval`'s ``after_front_eval``
    (:class:`ParetoPlugin`; given ``rays=`` and ``losses=``; plugins other than the evaluator also get
    them as ``after_eval``). The evaluator has no loggers (nothing is printed) unless ``evaluator`` is
    given; its metrics and loggers see the training phase (an Avalanche experience, or a torch
    ``Dataset`` as experience 0 of ``train_stream``), not :meth:`eval`, which is no Avalanche evaluation phase.
    ``train`` also takes an Avalanche stream (or a list of experiences): each experience in turn.

    **Checkpoints.** :meth:`state_dict` / :meth:`load_state_dict`, after any finished step (also in the
    middle of a pass over the data, from a plugin's ``after_training_iteration``): a strategy built with the
    same arguments continues from a saved state with the same steps, losses and parameters.

    All arguments are keywords (a positional one raises ``TypeError``).

    Args:
        target: the target network (an ``nn.Module``, or a :class:`cl_moo.FunctionalTarget` around one)
            whose weights the hypernetwork generates.
        losses: ``m >= 2`` loss callables, one per objective (see **Losses** above for how each is called).
        hnet: a ready hypernetwork from rays to weights (:class:`RayHypernetwork`, ``cond_dim == m``);
            None (default): one is built from ``hnet_options``. Not together with ``hnet_options``.
        hnet_options: how to build the hypernetwork (:class:`cl_moo.HypernetworkOptions`: generator,
            chunking, widths, activation, MIP, init scheme, target gain); its None fields take
            :data:`PHN_HNET_DEFAULTS`. None: all defaults.
        param_names: the target parameters to generate (default: all); the others stay ordinary,
            learnable parameters of the target. Only when ``target`` is an ``nn.Module``.
        solver: a name in :data:`strategies.solvers.SOLVERS` (``"ls"``: PHN-LS, Eq. 3; ``"epo"``: PHN-EPO)
            or a :class:`~strategies.solvers.Solver` instance (the extension point).
        solver_options: keyword arguments of a named solver's constructor (:func:`strategies.solvers.make_solver`,
            e.g. ``solver="stch", solver_options={"mu": 0.5}``; None: its defaults).
        alpha: the concentration of the default ray sampler ``Dirichlet(alpha)`` (> 0; PHN's 0.2).
        rays_per_step: rays sampled (and weight sets generated) per optimizer step (>= 1).
        ray_sampler: ``ray_sampler(n, generator) -> (n, m)`` rays, checked with :func:`cl_moo.check_rays`;
            None: :class:`DirichletRays` ``(m, alpha)``.
        objective_only: losses take the weight set itself, no data (see **Objective-only problems**).
        lr: Adam's learning rate.
        train_epochs: passes over the data per :meth:`train` call (when no step budget is given).
        train_steps: optimizer steps per :meth:`train` call, across epochs (overrides ``train_epochs``).
        train_mb_size: training batch size.
        eval_mb_size: evaluation batch size (only memory depends on it).
        seed: seeds ray sampling, shuffling and the hypernetwork's initialisation; None: a random seed.
        device: where the hypernetwork and the target live and compute.
        plugins: Avalanche plugins, or objects with Avalanche-named callbacks (see **Plugins**).
        evaluator: Avalanche's evaluation plugin (metrics and loggers); None: one without loggers.
    """

    model: ParetoModel  # the template's model (Avalanche, untyped)
    mbatch: Any  # the current mini-batch (x, *targets), None for an objective-only strategy
    train_epochs: int
    PLUGIN_CLASS = ParetoPlugin

    def __new__(cls, *args: Any, **kwargs: Any) -> "ParetoHypernetworkStrategy":
        accepted = _positional_count(cls.__init__)
        if len(args) > accepted:  # else Avalanche's wrapper maps them onto its own parameters and fails deep inside
            if accepted:
                raise TypeError(
                    f"{cls.__name__} takes {accepted} positional argument(s), then keyword arguments only; "
                    f"got {len(args)} positional arguments"
                )
            raise TypeError(
                f"{cls.__name__} takes keyword arguments only: e.g. {cls.__name__}(target=..., losses=..., "
                f"solver='ls'), not {len(args)} positional arguments"
            )
        # before Avalanche's check of the keywords (its message cannot say where a build option went)
        refuse_keywords(cls.__name__, {k: v for k, v in kwargs.items() if k in MOVED_KEYWORDS})
        return super().__new__(cls)

    def __init__(
        self,
        *,
        target: nn.Module,
        losses: Sequence[LossFn],
        hnet: Optional[RayHypernetwork] = None,
        hnet_options: Optional[HypernetworkOptions] = None,
        param_names: Optional[Sequence[str]] = None,
        solver: Union[str, Solver] = "ls",
        solver_options: Optional[Mapping[str, Any]] = None,
        alpha: float = 0.2,
        rays_per_step: int = 1,
        ray_sampler: Optional[RaySampler] = None,
        objective_only: bool = False,
        lr: float = 1e-3,
        train_epochs: int = 1,
        train_steps: Optional[int] = None,
        train_mb_size: int = 256,
        eval_mb_size: int = 4096,
        seed: Optional[int] = None,
        device: Union[str, torch.device] = "cpu",
        plugins: Sequence[Any] = (),
        evaluator: Optional[EvaluationPlugin] = None,
    ) -> None:
        if len(losses) < 2:
            raise ValueError(f"a Pareto front needs at least 2 losses, got {len(losses)}")
        for fn in losses:
            if not callable(fn):
                raise TypeError(f"every loss must be callable, got {type(fn).__name__}")
        if hnet is not None and hnet_options is not None:
            raise TypeError(
                "pass either hnet= (a built hypernetwork) or hnet_options= (how to build one), not both: "
                "the options of a built hypernetwork cannot change"
            )
        options = resolve_options(hnet_options, PHN_HNET_DEFAULTS)
        if isinstance(alpha, bool) or not is_real(alpha) or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"the Dirichlet concentration alpha must be a finite number > 0, got {alpha!r}")
        self.rays_per_step = _positive_int(rays_per_step, "rays_per_step", " (the number of rays per optimizer step)")
        self.train_steps = None if train_steps is None else _positive_int(train_steps, "train_steps", " or None")
        if seed is not None and (isinstance(seed, bool) or not is_integral(seed)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.device = torch.device(device)
        self.losses = list(losses)
        self.m = len(self.losses)
        self.objective_only = bool(objective_only)
        self.solver: Solver = make_solver(solver, **dict(solver_options or {}))
        self.alpha = float(alpha)
        self.ray_sampler: RaySampler = DirichletRays(self.m, self.alpha) if ray_sampler is None else ray_sampler
        # the Dirichlet(alpha) distribution itself, for callers that sample outside the strategy
        # (benchmarks/experiments/speed.py)
        self.dirichlet = torch.distributions.Dirichlet(torch.full((self.m,), self.alpha, device=self.device))
        self.seed = None if seed is None else int(seed)
        base = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(base)
        self.target = target if isinstance(target, FunctionalTarget) else FunctionalTarget(target, param_names)
        if hnet is None:
            probe = self._sample_rays(256)
            with seeded_global_rng(self.seed):
                hnet = build_hypernetwork(self.target, self.m, options, input_range="unit", probe_conditions=probe)
        if hnet.cond_dim != self.m:
            raise ValueError(f"the hypernetwork takes {hnet.cond_dim}-dim conditions but there are {self.m} losses")
        self.hnet: RayHypernetwork = hnet.to(self.device)
        self.target.to(self.device)
        params = list(self.hnet.parameters()) + [p for p in self.target.parameters() if p.requires_grad]
        optimizer = make_adam(params, lr=lr)
        self.iteration = 0
        self.last_loss = float("nan")
        self.last_rays: Optional[torch.Tensor] = None
        self.last_losses: Optional[torch.Tensor] = None
        self._budget: Optional[int] = None  # the step budget of the running train() call
        self._steps_done = 0  # steps of the running train() call
        self._epoch = 0  # the pass of the running train() call
        self._pass_open = False  # a pass over the data has started and not ended
        self._pass_order: Optional[torch.Tensor] = None  # the running pass's order of the samples
        self._pass_position = 0  # samples of it already given out
        self._resume_pass: Optional[Mapping[str, Any]] = None  # a loaded pass the next one continues
        self._flat: Optional[torch.Tensor] = None  # the current iteration's generated weights (B, W)
        self._rays: Optional[torch.Tensor] = None
        with warnings.catch_warnings():  # an evaluator without loggers is what is wanted here
            warnings.filterwarnings("ignore", message="No loggers specified")
            super().__init__(
                model=ParetoModel(self.hnet, self.target),
                optimizer=optimizer,
                criterion=self.solver,
                train_mb_size=_positive_int(train_mb_size, "train_mb_size", ""),
                train_epochs=_positive_int(train_epochs, "train_epochs", " (passes over the data)"),
                eval_mb_size=_positive_int(eval_mb_size, "eval_mb_size", ""),
                device=self.device,
                plugins=list(plugins),
                evaluator=evaluator,
                eval_every=-1,
            )

    # ------------------------------------------------------------------ state
    # the entries of state_dict()
    STATE_KEYS: ClassVar[Tuple[str, ...]] = (
        "hnet",
        "target",
        "optimizer",
        "generator",
        "iteration",
        "solver",
        "clock",
        "pass",
    )
    # absent from states saved before they were added: load_state_dict leaves them as they are
    STATE_OPTIONAL: ClassVar[Tuple[str, ...]] = ("clock", "pass")

    def state_dict(self) -> Dict[str, Any]:
        """Everything training needs to continue exactly as without the break: the hypernetwork's and
        the target's parameters (``hnet``, ``target``), the optimizer's state, the ray/shuffle generator's
        state (``generator``), the step count (``iteration``) and the solver's state (``solver``,
        :meth:`strategies.solvers.Solver.state_dict`, e.g. EPO's fallback counts), and the counters of
        Avalanche's ``strategy.clock`` (``clock``, the steps of its metrics and loggers; optional when
        loading). A strategy built with the same arguments and given it by :meth:`load_state_dict` then
        trains the same steps, losses and parameters. Plugins, losses and the arguments themselves are
        not part of it.

        It may be taken between ``train()`` calls, at an epoch's end, or after any finished step in the
        middle of a pass over the data (in a plugin's ``after_training_iteration``; not in the callbacks
        within a step, where the batch in progress counts as used); then ``pass``
        holds the pass's order and the samples already used (else None; optional when loading), and the
        next ``train()`` after :meth:`load_state_dict` first finishes that pass (it counts as that call's
        first epoch; with ``steps=rest`` the steps are those of the uninterrupted run)."""
        return {
            "hnet": self.hnet.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "iteration": self.iteration,
            "solver": self.solver.state_dict(),
            "clock": clock_state(self.clock),
            "pass": self._pass_state(),
        }

    def _pass_state(self) -> Optional[Dict[str, Any]]:
        """The pass over the data a state taken now is in the middle of (its order and the samples used),
        None between passes: between ``train()`` calls, at an epoch's end, after the last step of a budget."""
        if not self._pass_open or self._should_stop() or self._pass_order is None:
            return None
        return {"order": self._pass_order.cpu().clone(), "position": int(self._pass_position)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned, into a strategy built with the same arguments."""
        self._load_common_state(state, self.STATE_KEYS)
        self.optimizer.load_state_dict(state["optimizer"])

    def _load_common_state(self, state: Mapping[str, Any], keys: Sequence[str]) -> None:
        """Checks that ``state`` has ``keys``; loads everything of :meth:`state_dict` but the optimizer."""
        missing = [k for k in keys if k not in state and k not in self.STATE_OPTIONAL]
        if missing:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: the state lacks {missing} (it needs {list(keys)}); "
                "pass what state_dict() returned"
            )
        self.hnet.load_state_dict(state["hnet"])
        self.target.load_state_dict(state["target"])
        self.generator.set_state(state["generator"])
        self.iteration = int(state["iteration"])
        self.solver.load_state_dict(state["solver"])
        self._resume_pass = state.get("pass")
        load_clock_state(self.clock, state.get("clock"))  # absent from states saved before it was added

    # ------------------------------------------------------------------ helpers
    @property
    def epo_fallbacks(self) -> int:
        """Rays whose EPO LP failed so far (the solver's ``fallbacks``; 0 for solvers without LPs)."""
        return int(getattr(self.solver, "fallbacks", 0))

    @property
    def epo_rays_solved(self) -> int:
        """Rays the EPO LP was asked to solve so far (steps x ``rays_per_step``; 0 for solvers without LPs),
        the denominator of ``epo_fallbacks``."""
        return self.iteration * self.rays_per_step if hasattr(self.solver, "fallbacks") else 0

    @property
    def _dtype(self) -> torch.dtype:
        return self.hnet.output_head().weight.dtype

    @staticmethod
    def _dataset(data: Any) -> Dataset:
        return data.dataset if hasattr(data, "dataset") else data

    @staticmethod
    def _experiences(data: Any) -> Optional[List[Any]]:
        """The experiences of an Avalanche stream or a list/tuple of experiences (each has a ``dataset``);
        None for anything else (one experience, a torch ``Dataset``, no data)."""
        if data is None or hasattr(data, "dataset") or isinstance(data, (Dataset, torch.Tensor)):
            return None
        if not isinstance(data, (list, tuple, CLStream)):
            return None
        items = list(data)
        if not items or not all(hasattr(e, "dataset") for e in items):
            return None
        return items

    def _check_data(self, data: Any, what: str) -> Optional[Dataset]:
        if self.objective_only:
            if data is not None:
                raise ValueError(
                    f"this strategy is objective_only (losses take the weight set, no data): call {what} "
                    "without data" + (", e.g. train(steps=N)" if what == "train()" else "")
                )
            return None
        if data is None:
            raise ValueError(
                f"{what} needs data (an Avalanche experience or a torch Dataset); for a problem with no "
                "data pass objective_only=True and losses that take the weight set, then train(steps=N)"
            )
        dataset = self._dataset(data)
        if hasattr(dataset, "__len__") and len(dataset) == 0:
            raise ValueError(f"the dataset given to {what} is empty (0 samples): check the split or its filters")
        return dataset

    def check_finite(self, value: torch.Tensor, what: str) -> None:
        """Raises ``RuntimeError`` for a NaN or infinite ``value`` (e.g. a plugin's penalty)."""
        if not bool(torch.isfinite(value.detach()).all()):
            raise RuntimeError(
                f"the {what} became NaN/inf at iteration {self.iteration}: lower the learning rate or check "
                "the data for NaN"
            )

    def sample_rays(self, n: int) -> torch.Tensor:
        """``n`` rays ``(n, m)`` from ``ray_sampler`` and the strategy's generator, on the device."""
        return self._sample_rays(n).to(self.device, self._dtype)

    def _sample_rays(self, n: int) -> torch.Tensor:
        rays = self.ray_sampler(n, self.generator)
        rays = torch.as_tensor(rays)
        if tuple(rays.shape) != (n, self.m):
            raise RayError(
                f"ray_sampler {_name(self.ray_sampler)} returned shape {tuple(rays.shape)} for n={n}; "
                f"it must return (n, m) = ({n}, {self.m}) rays"
            )
        try:
            return check_rays(rays, self.m)
        except RayError as e:
            raise RayError(f"ray_sampler {_name(self.ray_sampler)} returned invalid rays: {e}") from None

    def _call_loss(self, fn: LossFn, *args: Any) -> torch.Tensor:
        try:
            return fn(*args)
        except TypeError as e:
            call = "loss(weights) with a {name: tensor} dict" if self.objective_only else "loss(output, *targets)"
            raise TypeError(
                f"loss {_name(fn)} failed when called as {call}: {e}. objective_only="
                f"{self.objective_only}: data-driven losses take (output, *targets); "
                "objective-only losses take the weight dict"
            ) from e

    def _check_value(self, fn: LossFn, value: Any, expected: tuple) -> torch.Tensor:
        if not torch.is_tensor(value) or tuple(value.shape) != expected:
            got = (
                f"shape {tuple(value.shape[len(expected) :])}"
                if torch.is_tensor(value)
                else f"a {type(value).__name__}"
            )
            raise ValueError(
                f"loss {_name(fn)} returned {got} for one weight set, not a scalar tensor: if these are "
                "per-sample losses, reduce them with .mean() (e.g. return loss_fn(output, y).mean()); "
                "if it returns several objectives at once, do not average them but pass one callable "
                "per objective in losses=[...], each returning a scalar"
            )
        return value

    def objective_values(
        self, weights: List[torch.Tensor], batch: Optional[Sequence[torch.Tensor]] = None
    ) -> torch.Tensor:
        """Losses ``(B, m)`` of B weight sets (``(1, m)`` for one unbatched weight set) on one batch
        ``(x, *targets)``, or of the weight sets themselves when ``objective_only`` (``batch=None``)."""
        weights = list(weights)
        single = tuple(weights[0].shape) == tuple(self.hnet.layout.shapes[0])
        if self.objective_only:
            wdict = self.hnet.layout.as_dict(weights)
            if single:
                cols = [self._check_value(fn, self._call_loss(fn, wdict), ()) for fn in self.losses]
                return torch.stack(cols).unsqueeze(0)
            B = weights[0].shape[0]
            cols = [
                self._check_value(fn, vmap(lambda w, fn=fn: self._call_loss(fn, w))(wdict), (B,)) for fn in self.losses
            ]
            return torch.stack(cols, dim=1)
        if batch is None:
            raise ValueError("objective_values needs a batch (x, *targets) unless objective_only=True")
        x, *targets = batch
        if single:  # one weight set: the plain call, no vmap over weight sets
            out = self.target(weights, x)
            cols = [self._check_value(fn, self._call_loss(fn, out, *targets), ()) for fn in self.losses]
            return torch.stack(cols).unsqueeze(0)
        out = self.target.forward_shared(weights, x)  # (B, N, ...)
        B = out.shape[0]
        in_dims = (0,) + (None,) * len(targets)
        cols = [
            self._check_value(fn, vmap(lambda *a, fn=fn: self._call_loss(fn, *a), in_dims=in_dims)(out, *targets), (B,))
            for fn in self.losses
        ]
        return torch.stack(cols, dim=1)

    def weights_for(self, rays: Union[np.ndarray, torch.Tensor]) -> List[torch.Tensor]:
        """Generated weight sets for rays ``(B, m)`` (any real dtype; checked to lie on the simplex)."""
        rays = check_rays(torch.as_tensor(rays), self.m).to(self.device, self._dtype)
        return self.hnet(rays)

    # ------------------------------------------------------------------ training (Avalanche's loop)
    def train(self, experience: Any = None, eval_streams: Any = None, *, steps: Optional[int] = None, **kwargs: Any):
        """Trains on an Avalanche experience (its ``dataset``) or a torch ``Dataset``; with
        ``objective_only=True``, on no data (``train(steps=N)``). Runs Avalanche's training loop.

        ``steps`` (else ``train_steps``): stop after that many optimizer steps, across epochs;
        without a budget, ``train_epochs`` epochs (an objective-only strategy needs a budget).
        ``eval_streams`` and further keywords are accepted for Avalanche's signature and not used:
        nothing is evaluated during training. An Avalanche stream (or a list of experiences) trains on
        each experience in turn, as Avalanche's ``train`` does (``steps`` is then per experience).
        """
        stream = self._experiences(experience)
        if stream is not None:
            result = None
            for exp in stream:
                result = self.train(exp, eval_streams, steps=steps, **kwargs)
            return result
        dataset = self._check_data(experience, "train()")
        budget = self.train_steps if steps is None else _positive_int(steps, "steps")
        if self.objective_only and budget is None:
            raise ValueError(
                "an objective_only strategy has no epochs to run: give a step budget, train(steps=N) or train_steps=N"
            )
        if experience is None or not hasattr(experience, "dataset"):
            experience = DataExperience(dataset)
        epochs = self.train_epochs
        self._budget, self._steps_done = budget, 0
        if budget is not None:  # passes enough for the budget; the loader stops when it is spent
            per_pass = len(_TrainBatches(self, dataset)) if dataset is None or hasattr(dataset, "__len__") else 0
            used = 0  # batches of a loaded pass already used: the first pass finishes it
            if self._resume_pass is not None and dataset is not None:
                used = math.ceil(int(self._resume_pass["position"]) / self.train_mb_size)
            self.train_epochs = (
                1 if dataset is None else (math.ceil((budget + used) / per_pass) if per_pass else budget)
            )
        try:
            return super().train([experience], eval_streams=[])
        finally:
            self.train_epochs = epochs
            self._budget = None
            self._pass_open = False

    def _should_stop(self) -> bool:
        return self._stop_training or (self._budget is not None and self._steps_done >= self._budget)

    def train_dataset_adaptation(self, **kwargs: Any) -> None:
        """The experience's dataset as it is (no transform switch), as the plain loop read it."""
        assert self.experience is not None
        self.adapted_dataset = self.experience.dataset

    def make_train_dataloader(self, **kwargs: Any) -> None:
        """Passes of :func:`iterate_batches` with the strategy's generator (see :class:`_TrainBatches`)."""
        self.dataloader = _TrainBatches(self, self.adapted_dataset)

    def model_adaptation(self, model: Optional[nn.Module] = None) -> Any:
        """Nothing to adapt: the hypernetwork's shape does not depend on the data."""
        return self.model if model is None else model

    def make_optimizer(self, **kwargs: Any) -> None:
        """The optimizer is built once (Adam over the hypernetwork and the target's own parameters) and
        keeps its state across ``train()`` calls; subclasses set a new one where they need it."""

    def check_model_and_optimizer(self, **kwargs: Any) -> None:
        self.make_optimizer(**kwargs)

    def _before_training_exp(self, **kwargs: Any) -> None:
        self._epoch = 0
        self.hnet.train()
        super()._before_training_exp(**kwargs)

    def _after_training_epoch(self, **kwargs: Any) -> None:
        super()._after_training_epoch(epoch=self._epoch, **kwargs)
        self._epoch += 1

    def _unpack_minibatch(self) -> None:
        if self.mbatch is not None:
            self.mbatch = [t.to(self.device) for t in self.mbatch]

    def forward(self) -> torch.Tensor:
        """Samples ``rays_per_step`` rays, generates their weight sets (one batched call) and returns the
        ``(B, m)`` losses on the mini-batch (objective-only: of the weight sets themselves)."""
        rays = self.sample_rays(self.rays_per_step)
        flat = self.hnet.forward_flat(rays)  # (B, W): the solver's handle for gradients
        weights = self.hnet.layout.split(flat)
        if self.rays_per_step == 1:  # = hnet(rays[0]): unbatched tensors, target(weights, x)
            weights = unbatch(weights)
        values = self.objective_values(weights, self.mbatch)
        if not torch.isfinite(values).all():
            raise RuntimeError(
                f"a loss became NaN/inf at iteration {self.iteration} (losses {values.detach().cpu().tolist()}): "
                "lower the learning rate or check the data for NaN"
            )
        self._rays, self._flat = rays, flat
        return values

    def criterion(self) -> torch.Tensor:
        """The solver's scalarization of the ``(B, m)`` losses (:class:`~strategies.solvers.Solver`)."""
        assert self._rays is not None and self._flat is not None
        return self.solver(self.mb_output, self._rays, self._flat)

    def training_step(self, batch: Optional[Sequence[torch.Tensor]] = None) -> float:
        """One optimizer step on ``batch`` (``(x, *targets)``; None for an objective-only strategy) outside
        :meth:`train`, e.g. to time it: the body of Avalanche's training iteration from ``zero_grad`` to the
        optimizer step, with the plugins' forward, backward and update callbacks (so their penalties
        count), but no iteration callbacks and no step counted. Returns the loss."""
        self.mbatch = None if batch is None else list(batch)
        self._unpack_minibatch()
        iteration_body(self)
        assert self._rays is not None
        self.last_rays, self.last_losses = self._rays.detach(), self.mb_output.detach()
        self._rays = self._flat = None
        return float(self.loss.detach())

    def _after_training_iteration(self, **kwargs: Any) -> None:
        assert self._rays is not None and self.mb_output is not None
        self.last_rays, self.last_losses = self._rays.detach(), self.mb_output.detach()
        self.last_loss = float(self.loss.detach())
        self._rays = self._flat = None
        self.iteration += 1
        self._steps_done += 1
        super()._after_training_iteration(**kwargs)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def eval(self, data: Any = None, rays: Optional[Union[np.ndarray, torch.Tensor]] = None, k: int = 25) -> np.ndarray:
        """Loss vectors ``(K, m)`` for K rays (default: PHN's evaluation rays), on ``data`` (ONE
        Avalanche experience or a torch ``Dataset``; losses averaged over samples, batch means weighted
        by batch size), or without data for an objective-only strategy. The whole model (hypernetwork
        and target) is in eval mode meanwhile (dropout off, so evaluations repeat) and goes back to its
        previous modes after.

        Plugins then get ``after_front_eval(strategy, rays=, losses=)``, and those other than the
        ``evaluator`` also ``after_eval(strategy, rays=, losses=)`` (the earlier name). This is not an
        Avalanche evaluation phase: the evaluator's metrics are not called (their ``after_eval`` reads
        an experience of an evaluation stream), so they log training only.
        """
        if self._experiences(data) is not None:
            raise TypeError(
                "eval() takes ONE Avalanche experience or a torch Dataset and returns its (K, m) losses, "
                f"not a stream of experiences ({type(data).__name__}): evaluate each, e.g. "
                "[strategy.eval(exp) for exp in stream]"
            )
        dataset = self._check_data(data, "eval()")
        rays_t = check_rays(torch.as_tensor(evaluation_rays(self.m, k) if rays is None else rays), self.m)
        rays_t = rays_t.to(self.device, self._dtype)
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            weights = self.hnet(rays_t)
            if dataset is None:
                total = self.objective_values(weights)
            else:
                total = torch.zeros(len(rays_t), self.m, device=self.device, dtype=self._dtype)
                n = 0
                for batch in iterate_batches(dataset, self.eval_mb_size, device=self.device):
                    total += self.objective_values(weights, batch) * len(batch[0])
                    n += len(batch[0])
                total = total / n
        finally:
            for module, mode in modes:
                module.training = mode
        result = total.cpu().numpy()
        rays_np = rays_t.cpu().numpy()
        for plugin in self.plugins:
            for hook in ("after_front_eval",) if plugin is self.evaluator else ("after_front_eval", "after_eval"):
                callback = getattr(plugin, hook, None)
                if callback is not None:
                    callback(self, rays=rays_np, losses=result)
        return result
