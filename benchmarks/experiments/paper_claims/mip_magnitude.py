"""MIP claim 1 (Fig. 1a, 3a/3b): the scale of the generated weights follows the input's scale, unless MIP.

Evaluates ``gamma = c u`` for fixed draws ``u ~ N(0, I_d)`` and scales ``c`` from 1/8 to 4 (a 32x
range; ``c = 1`` is the training prior) and measures the std of the generated parameters
``theta(gamma)`` and of the target's layer outputs on MNIST test images, at initialisation and after
a short training, for the default hypernetwork, MIP, and each MIP component alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List

import numpy as np

from . import ClaimOutcome
from . import _bnn as bnn

PAPER = "Gonzalez Ortiz et al., ICLR 2024 (MIP), Fig. 1a and 3a/3b, Sec. 3 and 6"
CLAIM = (
    "With default formulations, the scale of the predicted parameters θ (measured in standard deviation) is "
    "directly proportional to scale of the hypernetwork input γ at initialization (initial), and even after "
    "training the model (final). Our proposed Magnitude Invariant Parametrizations (MIP) mitigates this "
    "proportionality issue with respect to γ. [...] While the default hypernetwork parametrization is highly "
    "sensitive to changes in the input, the proposed MIP eliminates this dependency [...] We found that both "
    "components reduce the proportionality dependency between the hypernetwork inputs and outputs."
)
SCALES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Criteria: "proportional" = std ratio (largest / smallest scale, a 32x range) of at least this ...
PROPORTIONAL_MIN_RATIO = 4.0
#: ... and "flat" = the ratio within [1 / FLAT_TOLERANCE, FLAT_TOLERANCE].
FLAT_TOLERANCE = 1.25
TRAIN_STEPS, QUICK_TRAIN_STEPS = 300, 10
LR = 3e-4
N_DIRECTIONS, N_IMAGES = 16, 256
SETTING = (
    "Bayesian neural network on MNIST (Sec. 5.1): gamma in R^4, gamma ~ N(0, I) drawn each training step; "
    "hypernetwork with LeakyReLU hidden layers of 16 and 128 units and a linear head (Sec. 5.2), MIP "
    "encoding after a logistic as App. B.3 does for normal inputs (cl_moo input_range='unbounded'). "
    f"Measured at gamma = c u for {N_DIRECTIONS} fixed draws u ~ N(0, I) and c in {list(SCALES)}: the std of "
    "all generated target parameters per gamma and the std of each target layer's output (pre-activation) on "
    f"{N_IMAGES} test images, averaged over the u, at initialisation and after {TRAIN_STEPS} Adam steps "
    f"(lr {LR}, App. A.2), batch 128. Variants: default, MIP (encoding + residual), encoding only, residual "
    "only. Departures, for the CPU: the target is an MLP 196-32-32-10 on 2x2-pooled 14x14 images (the paper: "
    "a LeNet variant with two convolutional layers of 32 and 64 features on 28x28 images); short training "
    "(the paper's 'final' is after full training); hypernetworks initialised by cl_moo's default "
    "(hyperfan-in, head calibrated on N(0, I) probes; MIP's theta_0 drawn with the same variances, "
    "||Delta theta|| = 0.01 ||theta_0||) instead of Kaiming fan-out; App. A.2 samples gamma ~ U[0, 1] while "
    "Sec. 5.1 says N(0, 1): the N(0, 1) prior is used here."
)


def ratio(stds: List[float]) -> float:
    """Std at the largest scale over std at the smallest (``inf`` when the latter is 0)."""
    return stds[-1] / stds[0] if stds[0] > 0 else math.inf


def log_slope(stds: List[float]) -> float:
    """Least-squares slope of log std against log c (1: proportional, 0: flat)."""
    return float(np.polyfit(np.log(SCALES), np.log(np.maximum(stds, 1e-30)), 1)[0])


def measure(hnet, target, directions, images) -> Dict[str, object]:
    """Parameter std and per-layer output std at every scale of :data:`SCALES`."""
    params, layers = [], []
    for c in SCALES:
        gammas = c * directions
        params.append(bnn.parameter_std(hnet, gammas))
        layers.append(bnn.layer_output_std(hnet, target, gammas, images))
    last = [per_layer[-1] for per_layer in layers]
    return {
        "param_std": params,
        "layer_output_std": layers,
        "param_ratio": ratio(params),
        "param_slope": log_slope(params),
        "output_ratio": ratio(last),
        "output_slope": log_slope(last),
    }


def _flat(r: float) -> bool:
    return 1 / FLAT_TOLERANCE <= r <= FLAT_TOLERANCE


def judge(numbers: Dict[str, Dict[str, Dict[str, Dict[str, object]]]], seeds: List[int]) -> List[tuple]:
    """``(criterion, met)`` per stated criterion, over every seed and both phases."""
    phases = ("init", "trained")

    def all_seeds(variant: str, key: str, test, when=phases) -> tuple:
        vals = {f"{p}/seed{s}": numbers[variant][str(s)][p][key] for p in when for s in seeds}
        return all(test(v) for v in vals.values()), ", ".join(f"{k} {v:.3g}" for k, v in vals.items())

    out = []
    # parameters: Fig. 1a, initial and final; layer outputs: Fig. 3b, at initialisation only
    for key, what, when, said in (
        ("param_ratio", "parameter std", phases, "at init and after training"),
        ("output_ratio", "last-layer output std", ("init",), "at init (Fig. 3b)"),
    ):
        met, text = all_seeds("default", key, lambda r: r >= PROPORTIONAL_MIN_RATIO, when)
        out.append(
            (
                f"default: {what} grows with the gamma scale, ratio(c=4 / c=1/8) >= "
                f"{PROPORTIONAL_MIN_RATIO} {said}, every seed ({text})",
                met,
            )
        )
        met, text = all_seeds("mip", key, _flat, when)
        out.append(
            (
                f"MIP: {what} flat, ratio within [{1 / FLAT_TOLERANCE:.2f}, {FLAT_TOLERANCE}] {said}, "
                f"every seed ({text})",
                met,
            )
        )
    for part in ("encoding_only", "residual_only"):
        pairs = {
            f"{p}/seed{s}": (numbers[part][str(s)][p]["param_ratio"], numbers["default"][str(s)][p]["param_ratio"])
            for p in phases
            for s in seeds
        }
        met = all(abs(math.log(a)) < abs(math.log(b)) for a, b in pairs.values())
        text = ", ".join(f"{k} {a:.3g} vs {b:.3g}" for k, (a, b) in pairs.items())
        out.append(
            (
                f"{part}: parameter-std ratio closer to 1 than the default's at init and after training, "
                f"every seed ({text})",
                met,
            )
        )
    return out


def verdict(met: List[bool]):
    """True when every criterion is met, False when none is, else 'partly'."""
    return True if all(met) else False if not any(met) else "partly"


def _plot(numbers, seeds: List[int], figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6))
    panels = [
        ("init", "param_std", "(a) parameter std, initial"),
        ("trained", "param_std", "(b) parameter std, final"),
        ("init", "last_output", "(c) last-layer output std, initial"),
        ("trained", "last_output", "(d) last-layer output std, final"),
    ]
    for ax, (phase, key, title) in zip(axes, panels):
        for variant in bnn.VARIANTS:
            curves = []
            for s in seeds:
                m = numbers[variant][str(s)][phase]
                curves.append(m["param_std"] if key == "param_std" else [lay[-1] for lay in m["layer_output_std"]])
            curves = np.array(curves)
            ax.plot(SCALES, curves.mean(0), color=bnn.COLORS[variant], label=variant, **bnn.STYLES[variant])
            for c in curves:
                ax.plot(SCALES, c, "-", color=bnn.COLORS[variant], alpha=0.25, lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("gamma scale c (gamma = c u, u ~ N(0, I))")
        ax.set_ylabel("std")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    fig.suptitle(
        f"MIP Fig. 1a / 3a-b: generated-weight and activation scale vs gamma scale "
        f"(BNN on MNIST, seeds {seeds}; thin lines: seeds)"
    )
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    plt.close(fig)


def run(*, seeds: List[int], quick: bool, figure: Path) -> ClaimOutcome:
    """Measures every variant at init and after training for each seed; judges the stated criteria."""
    if not seeds:
        raise ValueError("run needs at least one seed, e.g. seeds=[0, 1, 2]")
    setting = bnn.BNNSetting()
    data = bnn.mnist(setting.pool)
    steps = QUICK_TRAIN_STEPS if quick else TRAIN_STEPS
    directions = bnn.fixed_directions(4 if quick else N_DIRECTIONS, setting.cond_dim)
    images = data.x_test[: 64 if quick else N_IMAGES]
    numbers: Dict[str, Dict[str, Dict[str, Dict[str, object]]]] = {v: {} for v in bnn.VARIANTS}
    for variant in bnn.VARIANTS:
        for seed in seeds:
            target = bnn.make_target(images.shape[1], setting.target_hidden)
            hnet = bnn.build_variant(variant, target, setting, seed)
            at_init = measure(hnet, target, directions, images)
            bnn.train(
                hnet,
                target,
                data,
                steps=steps,
                optimizer="adam",
                lr=LR,
                seed=seed,
                batch_size=setting.batch_size,
                eval_every=steps,
                n_test=256,
            )
            numbers[variant][str(seed)] = {"init": at_init, "trained": measure(hnet, target, directions, images)}
    checks = judge(numbers, seeds)
    holds = verdict([met for _, met in checks])
    _plot(numbers, seeds, figure)

    def mean_ratio(variant: str, phase: str, key: str = "param_ratio") -> float:
        return float(np.mean([numbers[variant][str(s)][phase][key] for s in seeds]))

    summary = (
        "parameter-std ratio between gamma scales 4 and 1/8 (32x), mean over seeds, init -> trained: "
        + "; ".join(f"{v} {mean_ratio(v, 'init'):.3g} -> {mean_ratio(v, 'trained'):.3g}" for v in bnn.VARIANTS)
        + f" (proportional: >= {PROPORTIONAL_MIN_RATIO}; flat: within {FLAT_TOLERANCE}x)"
    )
    settings = {
        **setting.describe(),
        "gamma_scales": list(SCALES),
        "directions": len(directions),
        "images": len(images),
        "train_steps": steps,
        "optimizer": "adam",
        "lr": LR,
        "criteria": {"proportional_min_ratio": PROPORTIONAL_MIN_RATIO, "flat_tolerance": FLAT_TOLERANCE},
    }
    return ClaimOutcome(
        holds=holds,
        summary=summary,
        numbers=numbers,
        settings=settings,
        checked=[f"{text} -> {'met' if met else 'not met'}" for text, met in checks],
    )
