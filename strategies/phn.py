"""Pareto HyperNetworks (Navon et al. 2021) as a plug-in strategy.

The hypernetwork takes a preference ray ``r`` on the m-simplex and emits the target network's
weights ``theta(r)``. Each step samples ``rays_per_step`` rays from ``Dirichlet(alpha)`` and runs
all of them in one batched call (the target runs B weight sets at once). Objective:

* PHN-LS (Eq. 3): ``sum_b sum_i r_bi l_i(theta(r_b))``
* PHN-EPO: ``sum_b sum_i w_bi l_i(theta(r_b))`` with ``w_b`` the EPO weights
  (:mod:`strategies.epo`) from the per-objective gradients with respect to the generated weights
  (m backward passes for all rays together).

Same plug-in shape as the continual strategy: keyword-only constructor, ``train(experience)``,
``eval(...)``, and plugins with Avalanche-named callbacks (``before_training_iteration``,
``after_training_iteration``, ``after_training_epoch``, ``after_eval``).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.func import vmap
from torch.utils.data import DataLoader, Dataset

from cl_moo import FunctionalTarget, Hypernetwork, build_hypernetwork
from cl_moo.moo_metrics import check_rays, evaluation_rays
from cl_moo.optim import make_adam

from .epo import epo_weights_batch

LossFn = Callable[..., torch.Tensor]
logger = logging.getLogger(__name__)


class ParetoHypernetworkStrategy:
    """PHN-LS / PHN-EPO over any target ``nn.Module`` and any list of loss callables.

    Without ``hnet``, :func:`cl_moo.build_hypernetwork` builds an MLP hypernetwork (one head per
    target tensor), or a chunked one when ``chunk_size`` is given, initialised with ``init`` on
    Dirichlet(alpha) rays.
    Each loss is called as ``loss(output, *targets)`` for one weight set, where a batch from
    the data is ``(x, *targets)``; it is vectorised over the rays with ``torch.func.vmap``.
    """

    def __init__(
        self,
        *,
        target: nn.Module,
        losses: Sequence[LossFn],
        hnet: Optional[Hypernetwork] = None,
        hidden: Sequence[int] = (100, 100, 100),
        activation: str = "relu",
        last_activation: bool = True,
        chunk_size: Optional[int] = None,
        chunk_emb_dim: int = 8,
        mip: bool = False,
        init: str = "hyperfan_in",
        target_gain: float = 2.0,
        param_names: Optional[Sequence[str]] = None,
        solver: str = "ls",
        alpha: float = 0.2,
        rays_per_step: int = 1,
        lr: float = 1e-3,
        train_epochs: int = 1,
        train_mb_size: int = 256,
        eval_mb_size: int = 4096,
        device: Union[str, torch.device] = "cpu",
        plugins: Sequence[Any] = (),
    ) -> None:
        if len(losses) < 2:
            raise ValueError(f"a Pareto front needs at least 2 losses, got {len(losses)}")
        if solver not in ("ls", "epo"):
            raise ValueError(f"solver must be 'ls' or 'epo', got {solver!r}")
        if alpha <= 0:
            raise ValueError(f"the Dirichlet concentration alpha must be > 0, got {alpha}")
        if rays_per_step < 1:
            raise ValueError(f"rays_per_step must be >= 1, got {rays_per_step}")
        self.device = torch.device(device)
        self.losses = list(losses)
        self.m = len(self.losses)
        self.target = target if isinstance(target, FunctionalTarget) else FunctionalTarget(target, param_names)
        if hnet is None:
            probe = torch.distributions.Dirichlet(torch.full((self.m,), float(alpha))).sample((256,))
            hnet = build_hypernetwork(
                self.target, self.m, chunk_size=chunk_size, chunk_emb_dim=chunk_emb_dim, hidden=hidden,
                activation=activation, last_activation=last_activation, mip=mip, input_range="unit", init=init,
                target_gain=target_gain, probe_conditions=probe,
            )
        if hnet.cond_dim != self.m:
            raise ValueError(f"the hypernetwork takes {hnet.cond_dim}-dim conditions but there are {self.m} losses")
        self.hnet = hnet.to(self.device)
        self.target.to(self.device)
        self.solver = solver
        self.dirichlet = torch.distributions.Dirichlet(torch.full((self.m,), float(alpha), device=self.device))
        self.rays_per_step = rays_per_step
        params = list(self.hnet.parameters()) + [p for p in self.target.parameters() if p.requires_grad]
        self.optimizer = make_adam(params, lr=lr)
        self.train_epochs = train_epochs
        self.train_mb_size = train_mb_size
        self.eval_mb_size = eval_mb_size
        self.plugins = list(plugins)
        self.iteration = 0
        self.epo_fallbacks = 0
        self.last_loss = float("nan")
        self.last_rays: Optional[torch.Tensor] = None
        self.last_losses: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ helpers
    def _callback(self, name: str, **kwargs: Any) -> None:
        for plugin in self.plugins:
            fn = getattr(plugin, name, None)
            if fn is not None:
                fn(self, **kwargs)

    @staticmethod
    def _dataset(data: Any) -> Dataset:
        return data.dataset if hasattr(data, "dataset") else data

    def objective_values(self, weights: List[torch.Tensor], batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Losses ``(B, m)`` of B weight sets on one batch ``(x, *targets)``."""
        x, *targets = batch
        out = self.target.forward_shared(weights, x)  # (B, N, ...)
        cols = [vmap(fn, in_dims=(0,) + (None,) * len(targets))(out, *targets) for fn in self.losses]
        return torch.stack(cols, dim=1)

    def weights_for(self, rays: torch.Tensor) -> List[torch.Tensor]:
        """Generated weight sets for rays ``(B, m)`` (checked to lie on the simplex)."""
        rays = check_rays(rays, self.m).to(self.device)
        return self.hnet(rays)

    # ------------------------------------------------------------------ training
    def _scalarization(self, rays: torch.Tensor, values: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        if self.solver == "ls":
            return (rays * values).sum(dim=1).mean()
        grads = []
        for i in range(self.m):  # m backward passes, all rays at once
            (g,) = torch.autograd.grad(values[:, i].sum(), flat, retain_graph=True)
            grads.append(g)
        G = torch.stack(grads, dim=1)  # (B, m, W)
        grams = torch.bmm(G, G.transpose(1, 2)).detach().cpu().numpy()
        results = epo_weights_batch(values.detach().cpu().numpy(), rays.detach().cpu().numpy(), grams)
        failed = sum(r.mode == "fallback" for r in results)
        if failed:
            self.epo_fallbacks += failed
            logger.warning("EPO: the LP failed for %d of %d rays at iteration %d; used the LS weights r / sum(r)",
                           failed, len(results), self.iteration)
        w = torch.as_tensor(np.stack([r.weights for r in results]), dtype=values.dtype, device=values.device)
        return (w * values).sum(dim=1).mean()

    def training_step(self, batch: Sequence[torch.Tensor]) -> float:
        """One optimizer step on ``rays_per_step`` rays; returns the scalarized loss."""
        batch = [t.to(self.device) for t in batch]
        rays = self.dirichlet.sample((self.rays_per_step,))
        flat = self.hnet.forward_flat(rays)
        values = self.objective_values(self.hnet.layout.split(flat), batch)
        if not torch.isfinite(values).all():
            raise RuntimeError(
                f"a loss became NaN/inf at iteration {self.iteration} (losses {values.detach().cpu().tolist()}): "
                "lower the learning rate or check the data for NaN"
            )
        loss = self._scalarization(rays, values, flat)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.last_rays, self.last_losses = rays.detach(), values.detach()
        return float(loss.detach())

    def train(self, experience: Any, **kwargs: Any) -> None:
        """Trains on an Avalanche experience (its ``dataset``) or a torch ``Dataset``."""
        loader = DataLoader(self._dataset(experience), batch_size=self.train_mb_size, shuffle=True, drop_last=False)
        self.hnet.train()
        self._callback("before_training")
        for epoch in range(self.train_epochs):
            for batch in loader:
                self._callback("before_training_iteration")
                self.last_loss = self.training_step(batch)
                self.iteration += 1
                self._callback("after_training_iteration")
            self._callback("after_training_epoch", epoch=epoch)
        self._callback("after_training")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def eval(self, data: Any, rays: Optional[Union[np.ndarray, torch.Tensor]] = None, k: int = 25) -> np.ndarray:
        """Loss vectors ``(K, m)`` on ``data`` for K rays (default: PHN's evaluation rays).

        Losses are averaged over samples (batch means weighted by batch size).
        """
        rays_t = check_rays(torch.as_tensor(evaluation_rays(self.m, k) if rays is None else rays), self.m).to(self.device)
        self.hnet.eval()
        weights = self.hnet(rays_t)
        total = torch.zeros(len(rays_t), self.m, device=self.device)
        n = 0
        for batch in DataLoader(self._dataset(data), batch_size=self.eval_mb_size):
            batch = [t.to(self.device) for t in batch]
            total += self.objective_values(weights, batch) * len(batch[0])
            n += len(batch[0])
        self.hnet.train()
        result = (total / max(n, 1)).cpu().numpy()
        self._callback("after_eval", rays=rays_t.cpu().numpy(), losses=result)
        return result
