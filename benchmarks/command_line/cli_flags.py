"""The Hydra-style flags of ``python -m cl_moo.run``: ``--help``, ``--cfg``, ``--info``, ``-m``.

They behave as in any Hydra app (https://hydra.cc/docs/advanced/hydra-command-line-flags/), and
none of them imports torch: the help and the configuration print in well under a second.

* ``--help`` lists the benchmarks (each with the strategy it runs when none is named, the
  strategies that apply and its presets), the strategies, and every key with the value this run
  would use (``benchmark=adult --help`` shows the Adult run's values), its doc string and allowed values
  (both from the schema, :mod:`benchmarks.configuration.schema`).
* ``--cfg job|hydra|all`` prints the composed configuration (preset applied, checked) and exits;
  ``-p/--package KEY`` prints one part of it; ``--resolve`` resolves interpolations.
* ``--info [all|defaults|config|plugins|searchpath]`` prints where the configuration comes from.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from benchmarks.configuration.config import (ConfigError, config_dir, default_strategy, families, flatten_keys,
                                             group_options, load_config, open_dict_overrides, schema_of)
from benchmarks.configuration.schema import declared, doc_of, schema_fields
from benchmarks.data.registry import did_you_mean

CFG_CHOICES = ("job", "hydra", "all")
INFO_CHOICES = ("all", "defaults", "config", "plugins", "searchpath")
MULTIRUN_FLAGS = ("-m", "--multirun")
FLAGS = ("-h", "--help", *MULTIRUN_FLAGS, "--cfg", "-c", "-p", "--package", "--resolve", "--info", "-i")
# the Hydra plugin each shipped launcher/sweeper config needs (``pip install -e ".[sweep]"``)
PLUGIN_MODULES = {"cl_moo_joblib": "hydra_plugins.hydra_joblib_launcher",
                  "cl_moo_ray": "hydra_plugins.hydra_ray_launcher",
                  "cl_moo_submitit_local": "hydra_plugins.hydra_submitit_launcher",
                  "cl_moo_slurm": "hydra_plugins.hydra_submitit_launcher",
                  "cl_moo_optuna": "hydra_plugins.hydra_optuna_sweeper"}


@dataclass
class Flags:
    """The flags of one command line, and the overrides (``key=value``) left after them."""
    help: bool = False
    multirun: bool = False
    cfg: Optional[str] = None
    package: Optional[str] = None
    resolve: bool = False
    info: Optional[str] = None
    overrides: List[str] = field(default_factory=list)


def parse_flags(argv: Sequence[str]) -> Flags:
    """Splits the flags from the overrides; an unknown flag or a bad flag value is a :class:`ConfigError`."""
    flags, args = Flags(), []
    for arg in argv:  # Hydra also takes --cfg=job, --info=defaults, --package=hnet
        name, eq, value = arg.partition("=")
        args += [name, value] if eq and name in ("--cfg", "--info", "--package") else [arg]
    i = 0
    while i < len(args):
        arg = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg in ("-h", "--help"):
            flags.help = True
        elif arg in ("-m", "--multirun"):
            flags.multirun = True
        elif arg in ("--cfg", "-c"):
            if nxt not in CFG_CHOICES:
                raise ConfigError(f"{arg} needs one of {'|'.join(CFG_CHOICES)}{did_you_mean(nxt, CFG_CHOICES)}, "
                                  f"e.g. {arg} job (got {nxt!r})")
            flags.cfg, i = nxt, i + 1
        elif arg in ("-p", "--package"):
            if nxt is None or nxt.startswith("-") or "=" in nxt:
                raise ConfigError(f"{arg} needs a config key, e.g. --cfg job {arg} hnet")
            flags.package, i = nxt, i + 1
        elif arg == "--resolve":
            flags.resolve = True
        elif arg in ("--info", "-i"):
            if nxt in INFO_CHOICES:
                flags.info, i = nxt, i + 1
            else:
                flags.info = "all"
        elif arg.startswith("-"):
            raise ConfigError(f"unknown flag {arg!r}{did_you_mean(arg, FLAGS)}; the flags are "
                              f"{', '.join(FLAGS)} (see --help); settings are key=value")
        else:
            flags.overrides.append(arg)
        i += 1
    if flags.package is not None and flags.cfg is None:
        raise ConfigError(f"-p/--package {flags.package} selects a part of --cfg's output; add --cfg job")
    if flags.resolve and flags.cfg is None:
        raise ConfigError("--resolve resolves the interpolations of --cfg's output; add --cfg job")
    swept = [o for o in flags.overrides if "," in o.partition("=")[2] and o.partition("=")[2][:1] not in "[{'\""]
    if swept and not flags.multirun:
        raise ConfigError(f"{swept[0]} lists several values, which is a sweep: add -m (python -m cl_moo.run -m "
                          f"{' '.join(flags.overrides)}), or give one value")
    if flags.multirun and (flags.cfg or flags.info):
        raise ConfigError("--cfg and --info show one run's configuration; drop -m (each combination of a sweep "
                          "is one run: name its values without commas)")
    return flags


def config_text(cfg: DictConfig, flags: Flags) -> str:
    """``--cfg``: the composed configuration (``job``), Hydra's own settings (``hydra``) or both;
    ``-p KEY`` keeps the part under ``KEY`` (``hydra.`` keys name Hydra's part)."""
    parts = OmegaConf.to_container(cfg) if flags.cfg in ("job", "all") else {}
    if flags.cfg in ("hydra", "all"):
        parts["hydra"] = OmegaConf.to_container(_hydra_config(flags.overrides))
    whole = OmegaConf.create(parts)
    if not flags.package:
        return OmegaConf.to_yaml(whole, resolve=flags.resolve).rstrip()
    part = OmegaConf.select(whole, flags.package, default=_MISSING)
    if part is _MISSING:
        keys = sorted(whole.keys())
        raise ConfigError(f"-p {flags.package}: no such part of the --cfg {flags.cfg} output"
                          f"{did_you_mean(flags.package, keys)}; its parts: {', '.join(map(str, keys))}")
    if not OmegaConf.is_config(part):
        part = OmegaConf.create({flags.package.rsplit(".", 1)[-1]: part})
    return OmegaConf.to_yaml(part, resolve=flags.resolve).rstrip()


_MISSING = object()


def _hydra_config(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        composed = compose(config_name="config", overrides=open_dict_overrides(overrides), return_hydra_config=True)
    return composed.hydra


def info_text(cfg: DictConfig, flags: Flags) -> str:
    """``--info``: the config search path, the defaults this run composed, the sweep plugins, the config."""
    what = flags.info or "all"
    sections = []
    if what in ("all", "searchpath"):
        sections.append(("Config search path", [f"cl_moo configs: file://{config_dir()}",
                                                 "hydra plugins: pkg://hydra_plugins (launchers, sweepers)"]))
    if what in ("all", "defaults"):
        named = {o.split("=", 1)[0] for o in flags.overrides if "=" in o}
        sections.append(("Defaults list", [
            f"strategy: {cfg.strategy.name}  ({'command line' if 'strategy' in named else 'benchmark default'})",
            f"benchmark: {cfg.benchmark.name}  ({'command line' if 'benchmark' in named else 'config.yaml default'})",
            f"preset: {cfg.preset}  (benchmark.presets.{cfg.preset}; keys named on the command line win)",
        ]))
    if what in ("all", "plugins"):
        rows = []
        for group in ("launcher", "sweeper"):
            for name in group_options(f"hydra/{group}"):
                found = importlib.util.find_spec(PLUGIN_MODULES.get(name, "hydra")) is not None
                rows.append(f"hydra/{group}={name}: {'installed' if found else 'needs pip install -e .[sweep]'}")
        sections.append(("Sweep plugins", rows))
    if what in ("all", "config"):
        sections.append(("Config", OmegaConf.to_yaml(cfg).rstrip().splitlines()))
    return "\n\n".join(f"{title}:\n" + "\n".join(f"  {line}" for line in lines) for title, lines in sections)


def help_text(doc: str, overrides: Sequence[str]) -> str:
    """``--help``: usage, flags, benchmarks, strategies, and every key with this run's value."""
    lines = [
        "usage: python -m cl_moo.run [benchmark=NAME] [strategy=NAME] [key=value ...] [flags]",
        "",
        doc.strip(),
        "",
        "Flags (as in any Hydra app):",
        "  -h, --help            this text; with overrides (benchmark=adult --help) the keys show that run's values",
        "  -m, --multirun        a sweep over every combination, e.g. -m seed=0,1,2 hnet.mip=true,false",
        "  -c, --cfg job|hydra|all   print the composed configuration and exit (-p/--package KEY: one part;"
        " --resolve)",
        "  -i, --info [all|defaults|config|plugins|searchpath]   where the configuration comes from",
        "",
        "Benchmarks (the strategy it runs when none is named; the strategies that apply; presets):",
    ]
    benchmarks = group_options("benchmark")
    width = max(len(b) for b in benchmarks) + 2
    for name in benchmarks:
        applies = next(("|".join(s) for _, b, s in families() if name in b), "?")
        presets = OmegaConf.load(config_dir() / "benchmark" / f"{name}.yaml").get("presets", {}) or {}
        lines.append(f"  benchmark={name:<{width}} strategy={default_strategy(name):<9} applies: {applies:<28} "
                     f"preset={'|'.join(presets)}")
    lines += ["", "Strategies:"]
    for name in group_options("strategy"):
        lines.append(f"  strategy={name:<14} {_headline(config_dir() / 'strategy' / f'{name}.yaml')}")
    lines += ["", *_keys_section(overrides)]
    return "\n".join(lines)


def _headline(path: Path, limit: int = 100) -> str:
    """The opening comment block of a YAML file, cut after ``limit`` characters at a word."""
    text = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text.append(line.lstrip("# ").strip())
    joined = " ".join(text)
    return joined if len(joined) <= limit else joined[:limit].rsplit(" ", 1)[0] + " ..."


def _keys_section(overrides: Sequence[str]) -> List[str]:
    try:
        cfg = load_config(overrides)
    except ConfigError as exc:
        return [f"Keys: not shown, these overrides are not valid: {exc}", "(--help alone lists the default run's keys)"]
    comments = key_comments()
    values = {k: v for k, v in flatten_keys(OmegaConf.to_container(cfg), keep_empty=True).items() if ".presets." not in k}
    width = max(len(f"{k}={show_value(v)}") for k, v in values.items()) + 2
    out = [f"Keys, with the values of benchmark={cfg.benchmark.name} strategy={cfg.strategy.name} "
           f"preset={cfg.preset} (set any with key=value):"]
    for key, value in values.items():
        note = comments.get(key) or comments.get(_group_key(key, cfg), "")
        out.append(f"  {f'{key}={show_value(value)}':<{width}} {note}".rstrip())
    return out


def show_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).replace(" ", "")


def _group_key(key: str, cfg: DictConfig) -> str:
    """``benchmark.n_tasks`` -> ``benchmark/pmnist:n_tasks`` (how :func:`key_comments` names group keys)."""
    group, _, rest = key.partition(".")
    if group in ("benchmark", "strategy"):
        return f"{group}/{cfg[group].name}:{rest}"
    return key


def key_comments() -> Dict[str, str]:
    """The doc string (and allowed values) of every key, from the schema (:mod:`benchmarks.configuration.schema`):
    top-level keys as ``train.lr``, the keys of each shipped group file as ``benchmark/pmnist:n_tasks``."""
    out = {name: doc_of(f) for name, f in declared().items()}
    for group in ("benchmark", "strategy"):
        for option in group_options(group):
            schema = schema_of(group, option)
            if schema is not None:
                out.update({f"{group}/{option}:{name}": doc_of(f) for name, f in schema_fields(schema)})
    return out
