"""Loads the run configuration: Hydra composition of ``configs/``, presets, validation.

``load_config(["benchmark=pmnist", "hnet.mip=true"])`` composes ``configs/config.yaml`` with the
overrides (Hydra syntax), then fills every key that the command line did not set from
``benchmark.presets[preset]`` (choosing a group, ``strategy=phn_ls``, does not set the keys inside
it; :data:`STRATEGY_DEFINING_KEYS` are never taken from a preset), then checks every choice. Bad keys or values raise
:class:`ConfigError` with the valid choices.
"""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from benchmarks.data.registry import BENCHMARKS, benchmark_names, did_you_mean, get_benchmark

# Nothing here imports torch: a bad command line is refused in well under a second.
CHOICES: Dict[str, Sequence] = {
    "device": ("auto", "cpu", "cuda"),
    "strategy.reg_targets": ("stored", "online"),
    "strategy.task_inference": ("given", "entropy"),
    "benchmark.builder": ("tensors", "avalanche"),
    "train.eval_tasks": ("all", "current"),
    "benchmark.kind": ("mnist", "fashion", "fashion_mnist"),
}
# choices that come from a registry: (module, name, the built-in entries). The built-ins are checked
# without importing the registry (torch); once the registry module is loaded (a Python user who
# registered a solver or an activation), its live entries count too. tests/test_cli_conventions.py
# checks the built-ins equal the registries.
REGISTRY_CHOICES: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    "hnet.init": ("cl_moo.init", "INIT_SCHEMES", ("hyperfan_in", "hyperfan_out", "kaiming", "xavier")),
    "hnet.activation": ("cl_moo.hypernetwork", "ACTIVATIONS",
                        ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "linear")),
    "target.activation": ("cl_moo.hypernetwork", "ACTIVATIONS", ("relu", "leaky_relu", "elu", "sigmoid", "tanh")),
    "strategy.solver": ("strategies.solvers", "SOLVERS", ("ls", "epo", "tch", "stch", "hvi")),
    "strategy.start": ("strategies.phn_cl", "START", ("phn", "random")),
    "hnet.generator": ("cl_moo.builder", "GENERATORS", ("mlp", "chunked")),
}
NULLABLE_CHOICES = {"hnet.generator": "null: chunked when hnet.chunked, else mlp"}  # choices that may also be null
# dict keys whose sub-keys are free (a registered solver's own options): key.<name>=value adds <name>;
# strategies without the dict refuse them, and the solver refuses names it does not take
OPEN_DICTS = ("strategy.solver_options",)
NOT_A_TARGET_ACTIVATION = ("linear",)  # a target of linear layers only is a linear model


def choices(key: str) -> Tuple[Any, ...]:
    """The valid values of ``key`` (a key of :data:`CHOICES` or :data:`REGISTRY_CHOICES`)."""
    if key in CHOICES:
        return tuple(CHOICES[key])
    module, name, builtin = REGISTRY_CHOICES[key]
    loaded = sys.modules.get(module)
    live = tuple(getattr(loaded, name, ())) if loaded is not None else ()
    extra = tuple(v for v in live if v not in builtin and not (key == "target.activation" and v in NOT_A_TARGET_ACTIVATION))
    return builtin + extra


BOOLEANS = ("resume", "progress", "data.download", "data.verify", "hnet.mip", "hnet.chunked", "hnet.last_activation",
            "strategy.lookahead", "train.compile")
# which strategies apply to each kind of benchmark; the benchmarks themselves (their kind, objectives,
# default strategy, loader) are the entries of benchmarks.data.registry, read live by families() and objectives()
CONTINUAL_STRATEGIES = ("hnet_cl", "finetune")
PARETO_STRATEGIES = ("phn_ls", "phn_epo", "ls_separate")
CONTINUAL_PARETO_STRATEGIES = ("phn_cl",)
STRATEGIES_OF_KIND = {"continual": CONTINUAL_STRATEGIES, "pareto": PARETO_STRATEGIES,
                      "continual_pareto": CONTINUAL_PARETO_STRATEGIES}


def families() -> Tuple[Tuple[str, Tuple[str, ...], Tuple[str, ...]], ...]:
    """``(kind, benchmarks, strategies)`` for each kind: which strategies apply to which registered benchmarks."""
    return tuple((kind, benchmark_names(kind), strategies) for kind, strategies in STRATEGIES_OF_KIND.items())


def objectives() -> Dict[str, Tuple[str, ...]]:
    """Benchmark name -> its objectives' names (Pareto kinds), read from the registry (Benchmark.objectives)."""
    return {n: spec.objectives for n, spec in BENCHMARKS.items() if spec.objectives}


# counts: integers >= 1 (bool is not an integer here); the OPTIONAL ones may also be null
POSITIVE_INTS = ("train.iterations", "train.epochs", "train.batch_size", "train.eval_batch_size", "hnet.chunk_size",
                 "hnet.chunk_emb_dim", "hnet.emb_dim", "benchmark.n_tasks",
                 "benchmark.n_train", "benchmark.n_test", "strategy.rays_per_step")
# ray counts that describe a front: one ray is one trade-off, not a front (and PHN's quarter circle
# with one point is its lopsided first ray)
AT_LEAST_TWO = {"benchmark.n_eval_rays": "the rays a front is evaluated on (PHN uses 25)",
                "strategy.reg_rays": "the rays at which each earlier task's front is kept (default 10)"}
# folders: null means the default; an empty string is a typo (run_dir=) that would silently mean the default
PATH_KEYS = ("run_dir", "data.root")
OPTIONAL_POSITIVE_INTS = ("benchmark.max_rows", "benchmark.train_per_task", "benchmark.test_per_task",
                          "strategy.reg_subset", "benchmark.max_train", "benchmark.max_test")
POSITIVE_NUMBERS = ("train.lr", "strategy.alpha", "strategy.emb_std", "hnet.emb_std")  # finite and > 0
NON_NEGATIVE_NUMBERS = ("strategy.beta", "benchmark.noise_std")  # finite and >= 0
OPTIONAL_POSITIVE_NUMBERS = ("train.budget_s",)  # finite and > 0, or null
WIDTH_LISTS = ("hnet.hidden", "target.hidden")              # lists of integers >= 1 (may be empty)
MNIST_SIDE = 28
MAX_SEED = 2**32 - 1                                        # numpy's legacy seeding accepts 0 .. 2**32 - 1
# The ONE list of keys that ``resume=true`` may change: they decide where and how a run reads and
# shows things, never what it computes (device: a run may move to another machine; data.verify only
# turns the sha256 check of the same files on or off; train.budget_s only says where a process stops). Every other key alters results, so a
# resumed run with any other changed key is refused. Preset definitions are compared through the
# values they set, not as text.
RESUME_SAFE_KEYS = ("resume", "progress", "run_dir", "data.root", "data.download", "data.verify", "device",
                    "train.budget_s")
RESUME_IGNORED_PREFIXES = ("benchmark.presets.",)
# keys added to the config after runs were recorded: absent from an older run's config means the
# behaviour it had then, which is this value (so resume and result tables accept those runs)
ADDED_KEYS = {"train.eval_tasks": "all", "strategy.start": "random", "built.hnet.start": "random", "hnet.emb_std": 1.0,
              "built.hnet.theta0": None, "hnet.generator": None, "train.compile": False}  # theta0: recorded (MIP runs only) since MIP draws theta_0 like a target
CONFIG_GROUPS = ("benchmark", "strategy")
# strategy keys whose value IS the strategy: a preset never changes them (fine-tuning is beta = 0)
STRATEGY_DEFINING_KEYS = {"finetune": ("beta",)}
# keys one kind of run does not read: setting them on the command line is an error, not a no-op
NOT_READ = {
    "pareto": ("hnet.emb_dim", "hnet.emb_std", "train.iterations", "train.eval_tasks"),
    "continual": ("train.epochs",),
    "continual_pareto": ("train.epochs", "train.eval_tasks", "hnet.emb_std"),
}
# keys (a trailing "." : every key below it) a strategy does not read: the separate-LS baseline has
# no hypernetwork, no solver and no ray sampling
NOT_READ_BY_STRATEGY = {"ls_separate": ("hnet.", "strategy.solver", "strategy.alpha", "strategy.rays_per_step")}
# keys a benchmark does not read (its target is fixed): Benchmark.not_read in benchmarks.data.registry; setting one
# is an error, not a no-op


class ConfigError(ValueError):
    """A configuration key or value is not valid; the message lists the valid ones."""


def config_dir() -> Path:
    """Folder of the shipped configs (the ``configs`` package installed beside ``cl_moo``)."""
    return Path(__file__).resolve().parents[2] / "configs"


def group_options(group: str) -> List[str]:
    """The shipped options of a config group (``benchmark``, ``strategy``, ``hydra/launcher``)."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _explicit_keys(overrides: Iterable[str]) -> List[str]:
    keys = []
    for i, o in enumerate(overrides):
        if "=" not in o:
            before = overrides[i - 1] if i > 0 and "=" in overrides[i - 1] else None
            hint = ""
            if before is not None:  # the shell split a value with a space: run_dir=/tmp/a b
                key, value = before.split("=", 1)
                hint = (f"; if it belongs to the value before it (a path with a space), quote the whole value: "
                        f"\"{key}='{value} {o}'\"")
            raise ConfigError(f"override {o!r} is not of the form key=value{hint}")
        keys.append(o.split("=", 1)[0].lstrip("+~"))
    return keys


def flatten_keys(d: dict, prefix: str = "", keep_empty: bool = False) -> Dict[str, object]:
    """A nested dict as ``{"a.b.c": value}``; an empty dict is dropped, or kept as a value with ``keep_empty``
    (the listings of keys: ``strategy.solver_options: {}`` is a key)."""
    out: Dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and (v or not keep_empty):
            out.update(flatten_keys(v, key + ".", keep_empty))
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
            cfg = compose(config_name="config", overrides=open_dict_overrides(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain(f"{exc}\n{exc.__cause__ or ''}", overrides)) from None
    presets = OmegaConf.to_container(cfg.benchmark.get("presets", {}) or {}, resolve=True)
    if cfg.preset not in presets:
        raise ConfigError(
            f"preset={cfg.preset!r} is not defined for benchmark={cfg.benchmark.name}{did_you_mean(cfg.preset, presets)}; "
            f"valid presets: {sorted(presets)}"
        )
    OmegaConf.set_struct(cfg, False)
    # choosing a group (benchmark=..., strategy=...) is not an override of the keys inside it: the
    # preset still sets them, except the keys that define the chosen strategy (finetune's beta = 0)
    keys = [k for k in explicit if k not in CONFIG_GROUPS]
    fixed = [f"strategy.{k}" for k in STRATEGY_DEFINING_KEYS.get(cfg.strategy.name, ())]
    for key, value in flatten_keys(presets[cfg.preset]).items():
        if key not in keys + fixed and not any(key.startswith(e + ".") for e in keys):
            OmegaConf.update(cfg, key, value, merge=False)
    OmegaConf.set_struct(cfg, True)
    _check_open_dicts(cfg, explicit)
    validate(cfg)
    _check_generator(cfg, explicit)
    kind = run_kind(cfg.benchmark.name)
    spec = get_benchmark(cfg.benchmark.name)
    if "strategy" not in explicit and cfg.strategy.name != spec.default_strategy:
        raise ConfigError(f"benchmark={spec.name}: its config file chooses strategy={cfg.strategy.name} but "
                          f"benchmarks.data.registry says {spec.default_strategy}; make the two agree")
    if spec.check is not None:
        try:
            spec.check(cfg)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if "train.compile" in explicit and kind != "continual":
        raise ConfigError(f"train.compile is not supported by benchmark={cfg.benchmark.name} "
                          f"strategy={cfg.strategy.name} ({kind.replace('_', ' ')} runs): only the continual "
                          "runs' HypernetworkStrategy compiles its step (torch.compile); drop the override")
    unread = NOT_READ[kind] + spec.not_read
    ignored = [k for k in explicit if k in unread]
    ignored += [k for k in explicit if any(k.startswith(p) if p.endswith(".") else k == p
                                           for p in NOT_READ_BY_STRATEGY.get(cfg.strategy.name, ()))]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} not used by "
                          f"benchmark={cfg.benchmark.name} strategy={cfg.strategy.name} ({kind.replace('_', ' ')} "
                          "runs); drop the override")
    check_solver_options(cfg)
    return cfg


def open_dict_overrides(overrides: Sequence[str]) -> List[str]:
    """The overrides as Hydra gets them: ``strategy.solver_options.mu=0.5`` (a key below an
    :data:`OPEN_DICTS` entry, which the file leaves empty) becomes ``++strategy.solver_options.mu=0.5``
    (add or override); a key that already carries ``+``, ``++`` or ``~`` is left as written."""
    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        if "=" in o and not key.startswith(("+", "~")) and any(key == d or key.startswith(d + ".") for d in OPEN_DICTS):
            o = "++" + o
        out.append(o)
    return out


def _check_open_dicts(cfg: DictConfig, explicit: Sequence[str]) -> None:
    """A key below an :data:`OPEN_DICTS` entry is refused when the chosen file has no such dict (the
    ``++`` of :func:`open_dict_overrides` would add it silently)."""
    for key in explicit:
        for d in OPEN_DICTS:
            if key == d or key.startswith(d + "."):
                group, sub = d.split(".", 1)
                name = cfg[group].name
                path = config_dir() / group / f"{name}.yaml"
                content = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
                if sub not in content:
                    raise ConfigError(f"{key}: {group}={name} has no {d} (it takes no solver options); its keys: "
                                      f"{', '.join(f'{group}.{k}' for k in group_keys(group, name))}")


def _check_generator(cfg: DictConfig, explicit: Sequence[str]) -> None:
    """``hnet.generator`` (when not null) chooses the generator; an explicit ``hnet.chunked`` that says
    otherwise is refused rather than silently not read."""
    generator = OmegaConf.select(cfg, "hnet.generator")
    if generator is None or "hnet.chunked" not in explicit or "hnet.generator" not in explicit:
        return
    chunked = OmegaConf.select(cfg, "hnet.chunked")
    if chunked != (generator == "chunked"):
        raise ConfigError(f"hnet.generator={generator} and hnet.chunked={str(chunked).lower()} disagree: "
                          "hnet.generator chooses the generator (hnet.chunked is read only while it is null); "
                          "drop hnet.chunked")


def check_solver_options(cfg: DictConfig) -> None:
    """``strategy.solver_options`` against the chosen solver: each option must be a keyword of its
    constructor and the solver must accept the values (it is built once here, so a bad option is a
    usage error before any run folder is made). Imports the solvers (torch) only when options are given."""
    options = OmegaConf.select(cfg, "strategy.solver_options")
    if not options:
        return
    from strategies.solvers import make_solver

    solver = cfg.strategy.solver
    try:
        make_solver(solver, **OmegaConf.to_container(options, resolve=True))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy.solver_options does not fit strategy.solver={solver}: {exc}; set an option "
                          "as strategy.solver_options.<option>=<value>") from None


def run_kind(benchmark: str) -> str:
    """``"pareto"``, ``"continual_pareto"`` or ``"continual"``: which runner a benchmark belongs to (its
    :mod:`benchmarks.data.registry` entry); a benchmark with a config file but no entry is refused."""
    try:
        return get_benchmark(benchmark).kind
    except KeyError:
        raise ConfigError(f"benchmark={benchmark} has a config file but no entry in benchmarks.data.registry: register it "
                          f"with register_benchmark(Benchmark({benchmark!r}, kind, loader, default_strategy, ...)); "
                          f"registered: {', '.join(BENCHMARKS)}") from None


def hydra_quote(value: str) -> str:
    """A Hydra override value quoted as a literal string (commas, spaces, ``~`` in a path are not syntax)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_hint(overrides: Sequence[str]) -> Optional[str]:
    """For the first override Hydra's grammar cannot read (an unquoted path with a space and ``~``, ``#``,
    ``(``, ...): a message naming it and the quoted spelling; None when every override parses."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        key, eq, value = override.partition("=")
        try:
            parser.parse_override(override)
        except HydraException:
            if not eq or not key.strip():
                return None
            if value == "~" or value.startswith("~/"):  # the shell does not expand ~ inside quotes: done here
                value = str(Path(value).expanduser())
            quoted = f"{key}={hydra_quote(value)}"
            shell = f'"{quoted}"' if not re.search(r'["$`\\!]', quoted) else shlex.quote(quoted)
            return (f"{override!r} cannot be read: its value holds characters that Hydra's override syntax "
                    f"allows only quoted (a path with a space, ~, #, parentheses, ...); quote the value: {quoted} "
                    f"(on the shell command line: {shell})")
    return None


def _explain(message: str, overrides: Sequence[str]) -> str:
    first = message.strip().splitlines()[0].rstrip(".")
    if any(s in message for s in ("LexerNoViableAlt", "mismatched input", "token recognition error",
                                  "no viable alternative", "extraneous input")):
        hint = quote_hint(overrides)
        if hint:
            return hint
    if "Could not find" in message or "Could not load" in message:
        missing = re.search(r"Could not (?:find|load) '([^'/]+)/([^']+)'", message)
        hint = did_you_mean(missing.group(2), group_options(missing.group(1))) if missing else ""
        return (
            f"{first}{hint}. Valid choices: benchmark={'|'.join(group_options('benchmark'))}, "
            f"strategy={'|'.join(group_options('strategy'))}"
        )
    if "not in struct" in message or "Could not override" in message:
        bad = re.search(r"override '([^']+)'", message)
        key = bad.group(1) if bad else ""
        group = key.split(".", 1)[0]
        choice = _chosen(group, overrides) if group in CONFIG_GROUPS else None
        if choice is not None:
            keys = [f"{group}.{k}" for k in group_keys(group, choice)]
            return (f"{first}. Unknown configuration key{did_you_mean(key, keys)} for {group}={choice}. "
                    f"Its keys: {', '.join(keys)}")
        keys = top_level_keys()
        return (
            f"{first}. Unknown configuration key{did_you_mean(key, keys)}. Valid keys: {', '.join(keys)}, plus "
            "benchmark.* and strategy.* from the chosen benchmark/strategy files (all listed by --help)"
        )
    return f"invalid configuration ({first}); overrides were {list(overrides)}"


def top_level_keys() -> List[str]:
    """The dotted keys of ``configs/config.yaml`` (not those of the benchmark and strategy groups)."""
    base = OmegaConf.load(config_dir() / "config.yaml")
    return sorted(k for k in flatten_keys(OmegaConf.to_container(base), keep_empty=True) if not k.startswith("defaults"))


def group_keys(group: str, option: str) -> List[str]:
    """The keys (below ``group.``) of one shipped option file, without its defaults list and presets."""
    content = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{option}.yaml"))
    return sorted(k for k in flatten_keys(content, keep_empty=True) if not k.startswith(("presets.", "defaults")))


def default_strategy(benchmark: str) -> str:
    """The strategy ``benchmark=<benchmark>`` runs when the command line names none: its
    :mod:`benchmarks.data.registry` entry's (which :func:`load_config` checks the file agrees with); for a file
    without an entry, the ``override /strategy...`` entry of its defaults list, else the top-level default."""
    if benchmark in BENCHMARKS:
        return BENCHMARKS[benchmark].default_strategy
    path = config_dir() / "benchmark" / f"{benchmark}.yaml"
    for entry in (OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []) if path.is_file() else []):
        for name, value in (entry.items() if isinstance(entry, dict) else ()):
            if name.startswith("override /strategy"):
                return value
    return _primary_default("strategy")


def _primary_default(group: str) -> str:
    defaults = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"))["defaults"]
    return next(d[group] for d in defaults if isinstance(d, dict) and group in d)


def _chosen(group: str, overrides: Sequence[str]) -> Optional[str]:
    """The option of ``group`` these overrides pick (the last ``group=...``, as Hydra parses it), else
    the default; None when that is not a shipped file (the caller then lists the top-level keys)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = [o for o in OverridesParser.create().parse_overrides(list(overrides)) if o.key_or_group == group]
    except Exception:  # a malformed override: Hydra's own error is the one to show
        return None
    if parsed:
        choice = parsed[-1].value() if not parsed[-1].is_delete() else None
    elif group == "strategy":
        benchmark = _chosen("benchmark", overrides)
        choice = default_strategy(benchmark) if benchmark is not None else None
    else:
        choice = _primary_default(group)
    return choice if isinstance(choice, str) and (config_dir() / group / f"{choice}.yaml").is_file() else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad(key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not valid: {rule}; pass {key}=<a value in that range>")


_ABSENT = object()


def _present(cfg: DictConfig, keys: Sequence[str]) -> Iterable[Tuple[str, Any]]:
    """``(key, value)`` for the keys this config has (a benchmark or strategy may lack some)."""
    for key in keys:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            yield key, value


def _check_counts(cfg: DictConfig) -> None:
    for key, value in _present(cfg, POSITIVE_INTS + OPTIONAL_POSITIVE_INTS):
        optional = key in OPTIONAL_POSITIVE_INTS
        if (value is None and optional) or (_is_int(value) and value >= 1):
            continue
        raise _bad(key, value, "must be an integer >= 1" + (" (or null)" if optional else ""))
    for key, value in _present(cfg, tuple(AT_LEAST_TWO)):
        if not (_is_int(value) and value >= 2):
            raise _bad(key, value, f"must be an integer >= 2: {AT_LEAST_TWO[key]}")


def _check_numbers(cfg: DictConfig) -> None:
    for key, value in _present(cfg, POSITIVE_NUMBERS + NON_NEGATIVE_NUMBERS):
        positive = key in POSITIVE_NUMBERS
        if _is_number(value) and math.isfinite(value) and (value > 0 if positive else value >= 0):
            continue
        raise _bad(key, value, f"must be a finite number {'> 0' if positive else '>= 0'}")
    for key, value in _present(cfg, OPTIONAL_POSITIVE_NUMBERS):
        if value is None or (_is_number(value) and math.isfinite(value) and value > 0):
            continue
        raise _bad(key, value, "must be a finite number of seconds > 0, or null (no budget)")


def _check_widths(cfg: DictConfig) -> None:
    for key in WIDTH_LISTS:
        value = OmegaConf.select(cfg, key)
        items = OmegaConf.to_container(value) if OmegaConf.is_list(value) else None
        if items is None or not all(_is_int(v) and v >= 1 for v in items):
            shown = items if items is not None else value
            raise _bad(key, shown, "must be a list of integers >= 1, e.g. [100, 100]")


def _check_seed_and_shapes(cfg: DictConfig) -> None:
    seed = OmegaConf.select(cfg, "seed")
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise _bad("seed", seed, f"must be an integer from 0 to {MAX_SEED}")
    pad_to = OmegaConf.select(cfg, "benchmark.pad_to")
    if pad_to is not None and (not _is_int(pad_to) or pad_to < MNIST_SIDE):
        raise _bad("benchmark.pad_to", pad_to, f"must be an integer >= {MNIST_SIDE} (the MNIST image side)")
    if OmegaConf.select(cfg, "strategy.start") == "phn" and OmegaConf.select(cfg, "hnet.mip") is True:
        raise ConfigError("strategy.start=phn (task 0 starts as a stand-alone PHN) does not apply with hnet.mip=true: "
                          "the MIP encoding of [task embedding, ray] differs from a PHN's encoding of the ray; "
                          "pass strategy.start=random")
    if OmegaConf.select(cfg, "strategy.solver") == "hvi" and (OmegaConf.select(cfg, "strategy.rays_per_step") or 0) < 2:
        raise ConfigError("strategy.solver=hvi maximises the hypervolume of the rays of each step, so it needs "
                          f"strategy.rays_per_step >= 2 (now {OmegaConf.select(cfg, 'strategy.rays_per_step')}); "
                          "pass e.g. strategy.rays_per_step=4")
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} was read as {type(value).__name__}, not as a folder name; quote it: "
                              f"{key}='{value}'")
        if value is not None and not value.strip():
            raise ConfigError(f"{key}={value!r} is not a folder; leave {key} out for its default "
                              f"({'runs/<benchmark>-<strategy>-<preset>-seed<seed>' if key == 'run_dir' else '$CL_MOO_DATA, else ~/.cache/cl_moo/data'}) "
                              f"or pass {key}=<folder>")
    name = OmegaConf.select(cfg, "benchmark.name")
    names = objectives().get(name)
    if names:
        _check_ref_point(OmegaConf.select(cfg, "benchmark.ref_point"), names, name)


def _check_ref_point(value: Any, names: Sequence[str], benchmark: str) -> None:
    items = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
    m = len(names)
    rule = f"must be a list of {m} finite numbers, one per objective of benchmark={benchmark} ({', '.join(names)})"
    if not (isinstance(items, list) and len(items) == m and all(_is_number(v) and math.isfinite(v) for v in items)):
        raise _bad("benchmark.ref_point", items, rule)
    if min(items) <= 0:
        raise _bad("benchmark.ref_point", items, f"every coordinate must be > 0: the objectives ({', '.join(names)}) "
                   "are non-negative, so a model never dominates a point with a coordinate <= 0 and every "
                   "hypervolume would be 0")


def validate(cfg: DictConfig) -> None:
    """Checks every value with a fixed set of choices, and numeric ranges; raises :class:`ConfigError`
    naming the key, the value and the valid range. Needs no data and no file system."""
    for key, value in _present(cfg, tuple(CHOICES) + tuple(REGISTRY_CHOICES)):  # null is no choice either
        valid = choices(key)
        if value is None and key in NULLABLE_CHOICES:
            continue
        if value not in valid:
            null = f" or null ({NULLABLE_CHOICES[key]})" if key in NULLABLE_CHOICES else ""
            raise ConfigError(f"{key}={value!r} is not valid{did_you_mean(value, valid)}; choose one of {list(valid)}"
                              f"{null}")
    for key in BOOLEANS:
        value = OmegaConf.select(cfg, key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")
    _check_counts(cfg)
    _check_numbers(cfg)
    _check_widths(cfg)
    _check_seed_and_shapes(cfg)


def resume_changes(old: Dict[str, Any], new: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every result-altering key that differs between two resolved
    configs (nested dicts); keys in :data:`RESUME_SAFE_KEYS` are allowed to differ."""
    a, b = flatten_keys(old), flatten_keys(new)
    changes = []
    for key in sorted(set(a) | set(b)):
        if key in RESUME_SAFE_KEYS or key.startswith(RESUME_IGNORED_PREFIXES):
            continue
        before, after = (d.get(key, ADDED_KEYS.get(key, "<absent>")) for d in (a, b))
        if before != after:
            changes.append((key, before, after))
    return changes
