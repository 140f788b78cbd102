"""Loads the run configuration: Hydra composition of ``configs/``, presets, validation.

``load_config(["benchmark=pmnist", "hnet.mip=true"])`` composes ``configs/config.yaml`` with the
overrides (Hydra syntax), then fills every key that the command line did not set from
``benchmark.presets[preset]``, then checks every choice. Bad keys or values raise
:class:`ConfigError` with the valid choices.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from omegaconf import DictConfig, OmegaConf

CHOICES: Dict[str, Sequence] = {
    "device": ("auto", "cpu", "cuda"),
    "hnet.init": ("hyperfan_in", "hyperfan_out", "kaiming", "xavier"),
    "hnet.activation": ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "linear"),
    "target.activation": ("relu", "leaky_relu", "elu", "sigmoid", "tanh"),
    "strategy.reg_targets": ("stored", "online"),
    "strategy.task_inference": ("given", "entropy"),
    "strategy.solver": ("ls", "epo"),
    "benchmark.builder": ("tensors", "avalanche"),
}
BOOLEANS = ("resume", "progress", "data.download", "data.verify", "hnet.mip", "hnet.chunked", "hnet.last_activation",
            "strategy.lookahead")
CONTINUAL_BENCHMARKS = ("pmnist", "regression")
CONTINUAL_STRATEGIES = ("hnet_cl", "finetune")
PARETO_BENCHMARKS = ("adult", "default", "bank")
PARETO_STRATEGIES = ("phn_ls", "phn_epo", "ls_separate")
# keys one kind of run does not read: setting them on the command line is an error, not a no-op
NOT_READ = {
    "pareto": ("hnet.emb_dim", "train.iterations"),
    "continual": ("train.epochs",),
}


class ConfigError(ValueError):
    """A configuration key or value is not valid; the message lists the valid ones."""


def config_dir() -> Path:
    """Folder of the shipped configs (the ``configs`` package installed beside ``cl_moo``)."""
    return Path(__file__).resolve().parent.parent / "configs"


def _group_options(group: str) -> List[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _explicit_keys(overrides: Iterable[str]) -> List[str]:
    keys = []
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not of the form key=value")
        keys.append(o.split("=", 1)[0].lstrip("+~"))
    return keys


def _flatten(d: dict, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Composes, applies the preset and validates; raises :class:`ConfigError` on bad input."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    explicit = _explicit_keys(overrides)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain(f"{exc}\n{exc.__cause__ or ''}", overrides)) from None
    presets = OmegaConf.to_container(cfg.benchmark.get("presets", {}) or {}, resolve=True)
    if cfg.preset not in presets:
        raise ConfigError(
            f"preset={cfg.preset!r} is not defined for benchmark={cfg.benchmark.name}; "
            f"valid presets: {sorted(presets)}"
        )
    OmegaConf.set_struct(cfg, False)
    for key, value in _flatten(presets[cfg.preset]).items():
        if key not in explicit and not any(key.startswith(e + ".") for e in explicit):
            OmegaConf.update(cfg, key, value, merge=False)
    OmegaConf.set_struct(cfg, True)
    validate(cfg)
    kind = "pareto" if cfg.benchmark.name in PARETO_BENCHMARKS else "continual"
    ignored = [k for k in NOT_READ[kind] if k in explicit]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} not used by {kind} runs "
                          f"(benchmark={cfg.benchmark.name}); drop the override")
    return cfg


def _explain(message: str, overrides: Sequence[str]) -> str:
    first = message.strip().splitlines()[0].rstrip(".")
    if "Could not find" in message or "Could not load" in message:
        return (
            f"{first}. Valid choices: benchmark={'|'.join(_group_options('benchmark'))}, "
            f"strategy={'|'.join(_group_options('strategy'))}"
        )
    if "not in struct" in message or "Could not override" in message:
        base = OmegaConf.load(config_dir() / "config.yaml")
        keys = sorted(k for k in _flatten(OmegaConf.to_container(base)) if not k.startswith("defaults"))
        return (
            f"{first}. Unknown configuration key. Valid keys: {', '.join(keys)}, plus "
            "benchmark.* and strategy.* from the chosen benchmark/strategy files"
        )
    return f"invalid configuration ({first}); overrides were {list(overrides)}"


def validate(cfg: DictConfig) -> None:
    """Checks every value with a fixed set of choices, and numeric ranges."""
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in allowed:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {list(allowed)}")
    for key in BOOLEANS:
        value = OmegaConf.select(cfg, key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")
    for key in ("train.iterations", "train.batch_size", "hnet.chunk_size", "hnet.emb_dim"):
        value = OmegaConf.select(cfg, key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key}={value!r} must be a positive integer")
    lr = OmegaConf.select(cfg, "train.lr")
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ConfigError(f"train.lr={lr!r} must be a positive number")
    beta = OmegaConf.select(cfg, "strategy.beta")
    if beta is not None and (not isinstance(beta, (int, float)) or beta < 0):
        raise ConfigError(f"strategy.beta={beta!r} must be a number >= 0")
