"""Pareto HyperNetworks (Navon et al. 2021) as a plug-in strategy.

The hypernetwork takes a preference ray ``r`` on the m-simplex and emits the target network's
weights ``theta(r)``. Each step samples ``rays_per_step`` rays (default ``Dirichlet(alpha)``) and runs
all of them in one batched call (the target runs B weight sets at once); a :class:`~strategies.solvers.Solver`
turns the ``(B, m)`` losses into the scalar to backpropagate:

* PHN-LS (Eq. 3): ``mean_b sum_i r_bi l_i(theta(r_b))`` (:class:`~strategies.solvers.LinearScalarization`)
* PHN-EPO: ``mean_b sum_i w_bi l_i(theta(r_b))`` with ``w_b`` the EPO weights (Mahapatra & Rajan 2020,
  :class:`~strategies.solvers.EPO`) from the per-objective gradients with respect to the generated weights.

Same plug-in shape as the continual strategy: keyword-only constructor, ``train(experience)``,
``eval(...)``, and plugins with Avalanche-named callbacks (``before_training``, ``before_training_iteration``,
``after_training_iteration``, ``after_training_epoch``, ``after_training``, ``after_eval``).
This module does not import Avalanche.
"""

from __future__ import annotations

import contextlib
import math
import numbers
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
from torch import nn
from torch.func import vmap
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cl_moo import FunctionalTarget, WeightLayout, build_hypernetwork
from cl_moo.hypernetwork import unbatch
from cl_moo.moo_metrics import RayError, check_rays, evaluation_rays
from cl_moo.optim import make_adam

from ._checks import is_integral, is_real
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


__all__ = ["DirichletRays", "ParetoHypernetworkStrategy", "iterate_batches", "RaySampler", "SOLVERS", "Solver"]


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


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


class ParetoHypernetworkStrategy:
    """PHN over any target ``nn.Module``, any list of loss callables and any :class:`Solver`.

    **Model.** Without ``hnet``, :func:`cl_moo.build_hypernetwork` builds an MLP hypernetwork (one head
    per target tensor; ``last_activation=False``: no activation after the last hidden layer), or a
    chunked one when ``chunk_size`` is given, initialised with ``init`` on sampled rays.

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

    **Solver.** ``solver``: a name in :data:`strategies.solvers.SOLVERS` (``"ls"``, ``"epo"``) or a
    :class:`~strategies.solvers.Solver` instance (the extension point); ``solver_options``: the
    keyword arguments of a named solver's constructor (:func:`strategies.solvers.make_solver`, e.g.
    ``solver="stch", solver_options={"mu": 0.5}``; an option it does not take is refused);
    ``epo_fallbacks`` reads the solver's count of failed EPO LPs. ``generator``: a name in
    :data:`cl_moo.builder.GENERATORS` (default: chunked when ``chunk_size`` is given, else MLP).

    **Steps and randomness.** ``train_steps``: a budget of optimizer steps per ``train()`` call that
    overrides ``train_epochs`` (epochs repeat until it is spent; ``train(steps=N)`` overrides it for
    one call). ``ray_sampler(n, generator) -> (n, m)`` rays (default :class:`DirichletRays`\\ (alpha));
    its rays are checked with :func:`cl_moo.check_rays`. ``seed``: seeds a private
    ``torch.Generator`` for ray sampling and data shuffling, and the hypernetwork's initialisation
    (in a forked RNG), so a seeded run is reproducible and leaves the global RNG untouched.

    ``rays_per_step=1`` runs ONE unbatched weight set (``target(weights, x)``, no vmap over weight sets),
    so targets without a vmap batching rule can train.

    **Checkpoints.** :meth:`state_dict` / :meth:`load_state_dict`: a strategy built with the same
    arguments continues from a saved state with the same steps, losses and parameters.

    Args:
        target: the target network (an ``nn.Module``, or a :class:`cl_moo.FunctionalTarget` around one)
            whose weights the hypernetwork generates.
        losses: ``m >= 2`` loss callables, one per objective (see **Losses** above for how each is called).
        hnet: a ready hypernetwork from rays to weights (:class:`RayHypernetwork`, ``cond_dim == m``);
            None (default): one is built by :func:`cl_moo.build_hypernetwork` from the options below,
            which then do not apply.
        hidden: hidden layer widths of the built hypernetwork.
        activation: its hidden activation (a name in ``cl_moo.hypernetwork.ACTIVATIONS``, e.g. ``"relu"``).
        last_activation: whether the activation also follows the last hidden layer.
        chunk_size: with a number, a chunked hypernetwork generating that many weights per chunk; None: one
            output head per target tensor.
        chunk_emb_dim: width of the learned chunk embeddings (chunked hypernetworks only).
        mip: MIP encoding of the ray and the residual ``theta_0 + Delta theta`` (:func:`cl_moo.build_hypernetwork`).
        init: initialisation scheme, one of ``cl_moo.init.INIT_SCHEMES`` (``"hyperfan_in"``,
            ``"hyperfan_out"``, ``"kaiming"``, ``"xavier"``).
        target_gain: the gain ``c`` of the wanted variance of the generated weights (2 for ReLU targets,
            1 for linear ones; Chang et al. 2020).
        param_names: the target parameters to generate (default: all); the others stay ordinary,
            learnable parameters of the target. Only when ``target`` is an ``nn.Module``.
        solver: a name in :data:`strategies.solvers.SOLVERS` or a :class:`~strategies.solvers.Solver` instance.
        solver_options: keyword arguments of a named solver's constructor (None: its defaults).
        generator: the hypernetwork kind, a name in :data:`cl_moo.builder.GENERATORS` (None: chunked when
            ``chunk_size`` is given, else MLP).
        alpha: the concentration of the default ray sampler ``Dirichlet(alpha)`` (> 0; PHN's 0.2).
        rays_per_step: rays sampled (and weight sets generated) per optimizer step (>= 1).
        ray_sampler: ``ray_sampler(n, generator) -> (n, m)`` rays; None: :class:`DirichletRays` ``(m, alpha)``.
        objective_only: losses take the weight set itself, no data (see **Objective-only problems**).
        lr: Adam's learning rate.
        train_epochs: passes over the data per :meth:`train` call (when no step budget is given).
        train_steps: optimizer steps per :meth:`train` call, across epochs (overrides ``train_epochs``).
        train_mb_size: training batch size.
        eval_mb_size: evaluation batch size (only memory depends on it).
        seed: seeds ray sampling, shuffling and the hypernetwork's initialisation; None: a random seed.
        device: where the hypernetwork and the target live and compute.
        plugins: objects with Avalanche-named callbacks (module docstring), called with the strategy.
    """

    def __init__(
        self,
        *,
        target: nn.Module,
        losses: Sequence[LossFn],
        hnet: Optional[RayHypernetwork] = None,
        hidden: Sequence[int] = (100, 100, 100),
        activation: str = "relu",
        last_activation: bool = True,
        chunk_size: Optional[int] = None,
        chunk_emb_dim: int = 8,
        mip: bool = False,
        init: str = "hyperfan_in",
        target_gain: float = 2.0,
        param_names: Optional[Sequence[str]] = None,
        solver: Union[str, Solver] = "ls",
        solver_options: Optional[Mapping[str, Any]] = None,
        generator: Optional[str] = None,
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
    ) -> None:
        if len(losses) < 2:
            raise ValueError(f"a Pareto front needs at least 2 losses, got {len(losses)}")
        for fn in losses:
            if not callable(fn):
                raise TypeError(f"every loss must be callable, got {type(fn).__name__}")
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
                hnet = build_hypernetwork(
                    self.target,
                    self.m,
                    chunk_size=chunk_size,
                    chunk_emb_dim=chunk_emb_dim,
                    hidden=hidden,
                    activation=activation,
                    last_activation=last_activation,
                    mip=mip,
                    input_range="unit",
                    init=init,
                    target_gain=target_gain,
                    probe_conditions=probe,
                    generator=generator,
                )
        if hnet.cond_dim != self.m:
            raise ValueError(f"the hypernetwork takes {hnet.cond_dim}-dim conditions but there are {self.m} losses")
        self.hnet: RayHypernetwork = hnet.to(self.device)
        self.target.to(self.device)
        params = list(self.hnet.parameters()) + [p for p in self.target.parameters() if p.requires_grad]
        self.optimizer = make_adam(params, lr=lr)
        self.train_epochs = _positive_int(train_epochs, "train_epochs", " (passes over the data)")
        self.train_mb_size = _positive_int(train_mb_size, "train_mb_size", "")
        self.eval_mb_size = _positive_int(eval_mb_size, "eval_mb_size", "")
        self.plugins = list(plugins)
        self.iteration = 0
        self.last_loss = float("nan")
        self.last_rays: Optional[torch.Tensor] = None
        self.last_losses: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ state
    # the entries of state_dict()
    STATE_KEYS: ClassVar[Tuple[str, ...]] = ("hnet", "target", "optimizer", "generator", "iteration", "solver")

    def state_dict(self) -> Dict[str, Any]:
        """Everything training needs to continue exactly as without the break: the hypernetwork's and
        the target's parameters (``hnet``, ``target``), the optimizer's state, the ray/shuffle generator's
        state (``generator``), the step count (``iteration``) and the solver's state (``solver``,
        :meth:`strategies.solvers.Solver.state_dict`, e.g. EPO's fallback counts). A strategy built with
        the same arguments and given it by :meth:`load_state_dict` then trains the same steps, losses and
        parameters. Plugins, losses and the arguments themselves are not part of it."""
        return {
            "hnet": self.hnet.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "iteration": self.iteration,
            "solver": self.solver.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned, into a strategy built with the same arguments."""
        self._load_common_state(state, self.STATE_KEYS)
        self.optimizer.load_state_dict(state["optimizer"])

    def _load_common_state(self, state: Mapping[str, Any], keys: Sequence[str]) -> None:
        """Checks that ``state`` has ``keys``; loads everything of :meth:`state_dict` but the optimizer."""
        missing = [k for k in keys if k not in state]
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

    def _callback(self, name: str, **kwargs: Any) -> None:
        for plugin in self.plugins:
            fn = getattr(plugin, name, None)
            if fn is not None:
                fn(self, **kwargs)

    @staticmethod
    def _dataset(data: Any) -> Dataset:
        return data.dataset if hasattr(data, "dataset") else data

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

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Optional[Sequence[torch.Tensor]] = None) -> float:
        """One optimizer step on ``rays_per_step`` rays; returns the solver's scalarized loss.

        ``batch`` is ``(x, *targets)``, or None for an objective-only strategy.
        """
        if batch is not None:
            batch = [t.to(self.device) for t in batch]
        rays = self.sample_rays(self.rays_per_step)
        flat = self.hnet.forward_flat(rays)  # (B, W): the solver's handle for gradients
        weights = self.hnet.layout.split(flat)
        if self.rays_per_step == 1:  # = hnet(rays[0]): unbatched tensors, target(weights, x)
            weights = unbatch(weights)
        values = self.objective_values(weights, batch)
        if not torch.isfinite(values).all():
            raise RuntimeError(
                f"a loss became NaN/inf at iteration {self.iteration} (losses {values.detach().cpu().tolist()}): "
                "lower the learning rate or check the data for NaN"
            )
        loss = self.solver(values, rays, flat)
        extra = self.extra_loss()
        if extra is not None:
            loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.last_rays, self.last_losses = rays.detach(), values.detach()
        return float(loss.detach())

    def extra_loss(self) -> Optional[torch.Tensor]:
        """A term added to the solver's scalar at every step (None: nothing); subclasses' regularizers."""
        return None

    def _step(self, batch: Optional[Sequence[torch.Tensor]]) -> None:
        self._callback("before_training_iteration")
        self.last_loss = self.training_step(batch)
        self.iteration += 1
        self._callback("after_training_iteration")

    def train(self, experience: Any = None, *, steps: Optional[int] = None, **kwargs: Any) -> None:
        """Trains on an Avalanche experience (its ``dataset``) or a torch ``Dataset``; with
        ``objective_only=True``, on no data (``train(steps=N)``).

        ``steps`` (else ``train_steps``): stop after that many optimizer steps, across epochs;
        without a budget, ``train_epochs`` epochs (an objective-only strategy needs a budget).
        """
        dataset = self._check_data(experience, "train()")
        budget = self.train_steps if steps is None else _positive_int(steps, "steps")
        if self.objective_only and budget is None:
            raise ValueError(
                "an objective_only strategy has no epochs to run: give a step budget, train(steps=N) or train_steps=N"
            )
        self.hnet.train()
        self._callback("before_training")
        if dataset is None:
            assert budget is not None  # no dataset: objective_only, which needs a budget (checked above)
            for _ in range(budget):
                self._step(None)
            self._callback("after_training_epoch", epoch=0)
        else:
            done, epoch = 0, 0
            while budget is not None or epoch < self.train_epochs:
                for batch in iterate_batches(
                    dataset, self.train_mb_size, device=self.device, shuffle=True, generator=self.generator
                ):
                    self._step(batch)
                    done += 1
                    if budget is not None and done >= budget:
                        break
                self._callback("after_training_epoch", epoch=epoch)
                epoch += 1
                if budget is not None and done >= budget:
                    break
        self._callback("after_training")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def eval(self, data: Any = None, rays: Optional[Union[np.ndarray, torch.Tensor]] = None, k: int = 25) -> np.ndarray:
        """Loss vectors ``(K, m)`` for K rays (default: PHN's evaluation rays), on ``data`` (losses
        averaged over samples, batch means weighted by batch size), or without data for an
        objective-only strategy.
        """
        dataset = self._check_data(data, "eval()")
        rays_t = check_rays(torch.as_tensor(evaluation_rays(self.m, k) if rays is None else rays), self.m)
        rays_t = rays_t.to(self.device, self._dtype)
        self.hnet.eval()
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
            self.hnet.train()
        result = total.cpu().numpy()
        self._callback("after_eval", rays=rays_t.cpu().numpy(), losses=result)
        return result
