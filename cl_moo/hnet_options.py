"""One options object for how a hypernetwork is built: :class:`HypernetworkOptions`.

The strategies (continual, Pareto, continual Pareto) take either a ready hypernetwork or one of
these, instead of repeating the builder's keywords. A field left at ``None`` means "the default of
whoever builds": each strategy has its own defaults (e.g. the continual strategy a chunked
hypernetwork, von Oswald et al. 2020; PHN one head per tensor, Navon et al. 2021), filled in by
:meth:`HypernetworkOptions.filled`; :func:`cl_moo.build_hypernetwork` fills the rest with
:data:`BUILDER_DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple


@dataclass(frozen=True)
class HypernetworkOptions:
    """How to build a hypernetwork (:func:`cl_moo.build_hypernetwork`); ``None``: the builder's default.

    Attributes:
        generator: a name in :data:`cl_moo.builder.GENERATORS` (``"mlp"``: one output head per target
            tensor; ``"chunked"``: shared chunk embeddings, von Oswald et al. 2020, Sec. 3.2). None:
            chunked when ``chunk_size`` is set, else MLP.
        chunk_size: generated weights per chunk (chunked generator only).
        chunk_emb_dim: width of each learned chunk embedding (chunked generator only).
        hidden: hidden layer widths of the hypernetwork.
        activation: its hidden activation, a name in ``cl_moo.hypernetwork.ACTIVATIONS``.
        last_activation: whether the activation also follows the last hidden layer.
        mip: MIP (Gonzalez Ortiz et al. 2024): the condition's magnitude-invariant encoding (Eq. 4)
            and the residual ``theta = theta_0 + Delta theta`` (Eq. 5).
        init: initialisation scheme, one of ``cl_moo.init.INIT_SCHEMES`` (``"hyperfan_in"``,
            ``"hyperfan_out"``: Chang et al. 2020, Eqs. 6-7; ``"kaiming"``, ``"xavier"``).
        target_gain: the gain ``c`` of the variance the generated weights should have (2 for ReLU
            targets, 1 for linear or tanh ones; Chang et al. 2020).
        residual_scale: with ``mip``, the scale of the initial ``Delta theta`` relative to ``theta_0``.
        theta0: with ``mip``, ``"init"`` (``theta_0`` drawn as ``init`` initialises a target) or
            ``"keep"`` (the target's current, e.g. pretrained, weights).
    """

    generator: Optional[str] = None
    chunk_size: Optional[int] = None
    chunk_emb_dim: Optional[int] = None
    hidden: Optional[Tuple[int, ...]] = None
    activation: Optional[str] = None
    last_activation: Optional[bool] = None
    mip: Optional[bool] = None
    init: Optional[str] = None
    target_gain: Optional[float] = None
    residual_scale: Optional[float] = None
    theta0: Optional[str] = None

    def __post_init__(self) -> None:
        hidden: Any = self.hidden  # annotated as a tuple; a caller may pass any sequence (or a wrong type)
        if hidden is not None:
            if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
                raise TypeError(f"HypernetworkOptions.hidden must be a sequence of widths, got {hidden!r}")
            object.__setattr__(self, "hidden", tuple(hidden))  # a list stays hashable and comparable

    def filled(self, defaults: "HypernetworkOptions") -> "HypernetworkOptions":
        """These options with every ``None`` taken from ``defaults`` (a strategy's own defaults).

        ``chunk_size`` and ``chunk_emb_dim`` are taken from ``defaults`` only when the generator is the
        chunked one (or left to ``chunk_size``): ``HypernetworkOptions(generator="mlp")`` on a strategy
        whose default is chunked builds an MLP hypernetwork, not a refused mix."""
        chosen = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        generator = chosen["generator"] if chosen["generator"] is not None else defaults.generator
        for name, value in chosen.items():
            if value is not None:
                continue
            if name in ("chunk_size", "chunk_emb_dim") and generator not in (None, "chunked"):
                continue
            chosen[name] = getattr(defaults, name)
        return HypernetworkOptions(**chosen)

    def keywords(self) -> Dict[str, Any]:
        """The fields that are set, as keyword arguments of :func:`cl_moo.build_hypernetwork`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


# the builder's own defaults (:func:`cl_moo.build_hypernetwork` without options): PHN's MLP hypernetwork
BUILDER_DEFAULTS = HypernetworkOptions(
    generator=None,
    chunk_size=None,
    chunk_emb_dim=8,
    hidden=(100, 100, 100),
    activation="relu",
    last_activation=True,
    mip=False,
    init="hyperfan_in",
    target_gain=2.0,
    residual_scale=0.01,
    theta0="init",
)


# the keywords strategies took one by one before :class:`HypernetworkOptions` (``chunked``: a generator)
MOVED_KEYWORDS = frozenset(f.name for f in dataclasses.fields(HypernetworkOptions)) | {"chunked"}


def refuse_keywords(owner: str, keywords: Mapping[str, Any]) -> None:
    """Raises ``TypeError`` for keywords ``owner`` does not take, pointing build options (the fields of
    :class:`HypernetworkOptions`, which strategies took one by one before) to ``hnet_options=``."""
    if not keywords:
        return
    moved = sorted(k for k in keywords if k in MOVED_KEYWORDS)
    if moved:
        example = ", ".join(
            f"generator={'chunked' if keywords[k] else 'mlp'!r}" if k == "chunked" else f"{k}={keywords[k]!r}"
            for k in moved
        )
        raise TypeError(
            f"{owner}: {', '.join(moved)} {'is' if len(moved) == 1 else 'are'} set through one options object "
            f"now: pass hnet_options=HypernetworkOptions({example}) (from cl_moo import HypernetworkOptions)"
        )
    raise TypeError(f"{owner} got unexpected keyword argument(s) {sorted(keywords)}")


def resolve_options(options: Optional[HypernetworkOptions], defaults: HypernetworkOptions) -> HypernetworkOptions:
    """A strategy's ``hnet_options`` (None: none set) with its unset fields from the strategy's ``defaults``;
    anything but a :class:`HypernetworkOptions` is refused with an example."""
    if options is not None and not isinstance(options, HypernetworkOptions):
        raise TypeError(
            f"hnet_options must be a cl_moo.HypernetworkOptions, got {type(options).__name__}; e.g. "
            "hnet_options=HypernetworkOptions(hidden=(100, 100), mip=True)"
        )
    return (options if options is not None else HypernetworkOptions()).filled(defaults)
