"""One builder for every strategy and runner: target -> hypernetwork, initialised.

``build_hypernetwork(target, cond_dim, ...)`` picks a generator from :data:`GENERATORS`
(``chunk_size`` given: chunked, von Oswald et al. 2020; else one head per tensor, PHN), switches
MIP on or off (encoding + residual, Gonzalez Ortiz et al. 2024) and initialises it
(:func:`cl_moo.init_hypernetwork`). The returned hypernetwork records what it was built with in
``hnet.build_options``, which runs write next to their config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence, cast

import torch
from torch import nn

from .chunked_hypernetwork import ChunkedHypernetwork
from .encoding import InputRange
from .hnet_options import BUILDER_DEFAULTS, HypernetworkOptions
from .hypernetwork import ACTIVATIONS, Hypernetwork
from .init import INIT_SCHEMES, THETA0_INITS, InitScheme, Theta0Init, init_hypernetwork
from .mlp_hypernetwork import MLPHypernetwork
from .target import FunctionalTarget

GENERATORS: Dict[str, Callable[..., Hypernetwork]] = {"mlp": MLPHypernetwork, "chunked": ChunkedHypernetwork}


def build_hypernetwork(
    target: "FunctionalTarget | nn.Module",
    cond_dim: int,
    options: Optional[HypernetworkOptions] = None,
    *,
    input_range: InputRange = "unit",
    probe_conditions: Optional[torch.Tensor] = None,
    param_names: Optional[Sequence[str]] = None,
    **option_keywords: Any,
) -> Hypernetwork:
    """Builds and initialises a hypernetwork for ``target`` (an ``nn.Module`` or a ``FunctionalTarget``).

    ``mip=True``: MIP encoding of the condition and the residual ``theta_0 + Delta theta``; the
    start weights are ``theta_0``: with ``theta0="init"`` drawn as ``init`` initialises a target
    (Kaiming / Xavier with zero biases, or the hyperfan variances;
    :func:`cl_moo.init.start_variances`), with ``theta0="keep"`` the target's current weights (a
    pretrained model). ``input_range``: ``"unit"`` for conditions in [0, 1] (rays),
    ``"unbounded"`` for learned embeddings (a logistic first). ``probe_conditions``: samples of
    the conditions the hypernetwork will see, for the init (default: uniform / normal).
    ``generator``: a name in :data:`GENERATORS` (default: ``"chunked"`` when ``chunk_size`` is
    given, else ``"mlp"``); a registered generator gets the common keyword arguments.

    The build options (generator, widths, MIP, init, ...) are one :class:`HypernetworkOptions`
    (``options``) or its fields as keywords (``build_hypernetwork(t, 2, hidden=(50,), mip=True)``), not
    both; unset ones take :data:`cl_moo.hnet_options.BUILDER_DEFAULTS`.
    """
    if options is not None and option_keywords:
        raise TypeError(
            f"build_hypernetwork: pass the build options either as options=HypernetworkOptions(...) or as "
            f"keywords, not both (got options and {sorted(option_keywords)})"
        )
    known = {f.name for f in dataclasses.fields(HypernetworkOptions)}
    unknown = sorted(set(option_keywords) - known)
    if unknown:
        raise TypeError(f"build_hypernetwork: unknown option(s) {unknown}; the options are {sorted(known)}")
    opts = (options if options is not None else HypernetworkOptions(**option_keywords)).filled(BUILDER_DEFAULTS)
    generator, chunk_size, chunk_emb_dim = opts.generator, opts.chunk_size, opts.chunk_emb_dim
    hidden, activation, last_activation, mip = opts.hidden, opts.activation, opts.last_activation, opts.mip
    init, target_gain, residual_scale, theta0 = opts.init, opts.target_gain, opts.residual_scale, opts.theta0
    assert hidden is not None and activation is not None and init is not None and theta0 is not None  # filled
    assert target_gain is not None and residual_scale is not None  # filled from BUILDER_DEFAULTS
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {init!r}; choose one of {list(INIT_SCHEMES)}")
    if theta0 not in THETA0_INITS:
        raise ValueError(
            f"theta0 must be one of {list(THETA0_INITS)} ('init': drawn as init={init!r} initialises a "
            f"target; 'keep': the target's current, e.g. pretrained, weights), got {theta0!r}"
        )
    if theta0 != "init" and not mip:
        raise ValueError(f"theta0={theta0!r} applies with mip=True (MIP's residual theta_0 + Delta theta)")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be integers >= 1, got {list(hidden)}")
    if not isinstance(target, FunctionalTarget):
        target = FunctionalTarget(target, param_names)
    elif param_names is not None and list(param_names) != target.param_names:
        raise ValueError(
            "param_names applies when target is an nn.Module; this FunctionalTarget already selects "
            f"{target.param_names}"
        )
    common: Dict[str, Any] = dict(
        hidden=tuple(hidden),
        activation=activation,
        last_activation=last_activation,
        mip_encoding=mip,
        residual=mip,
        input_range=input_range,
    )
    generator = generator or ("mlp" if chunk_size is None else "chunked")
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}; choose one of {sorted(GENERATORS)}")
    if generator == "chunked":
        if chunk_size is None:
            raise ValueError("the chunked generator needs chunk_size=<entries per chunk>")
        common.update(chunk_size=chunk_size, chunk_emb_dim=chunk_emb_dim)
    elif chunk_size is not None and generator == "mlp":
        raise ValueError(f"chunk_size={chunk_size} applies to the chunked generator, not {generator!r}")
    hnet: Hypernetwork = GENERATORS[generator](target, cond_dim, **common)
    init_hypernetwork(
        hnet,
        cast(InitScheme, init),  # checked against INIT_SCHEMES above
        target_gain=target_gain,
        probe_conditions=probe_conditions,
        residual_scale=residual_scale,
        theta0=cast(Theta0Init, theta0),  # checked against THETA0_INITS above
    )
    hnet.build_options = {
        "generator": generator,
        "cond_dim": cond_dim,
        "chunk_size": chunk_size,
        "chunk_emb_dim": chunk_emb_dim if chunk_size is not None else None,
        "hidden": list(hidden),
        "activation": activation,
        "last_activation": last_activation,
        "mip": mip,
        "input_range": input_range,
        "init": init,
        "target_gain": target_gain,
        "residual_scale": residual_scale if mip else None,
        "theta0": theta0 if mip else None,
        "target_layout": target.layout.describe(),
    }
    return hnet
