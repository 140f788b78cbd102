"""Loads the run configuration: Hydra composition of ``configs/``, presets, validation.

``load_config(["benchmark=pmnist", "hnet.mip=true"])`` composes ``configs/config.yaml`` with the
overrides (Hydra syntax): the files extend the dataclass schemas of :mod:`.schema` (in Hydra's
ConfigStore), so OmegaConf enforces every key's type and refuses undeclared keys. It then fills every
key that the command line did not set from ``benchmark.presets[preset]`` (choosing a group,
``strategy=phn_ls``, does not set the keys inside it; :data:`STRATEGY_DEFINING_KEYS` are never taken
from a preset), then checks every value against its schema rule and the schemas' cross-field rules
(:func:`validate`), then the rules that depend on the command line itself (keys a run does not read,
solver options). Bad keys or values raise :class:`ConfigError` naming the key, the value, the valid
range or choices and the fix.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Type

from omegaconf import DictConfig, OmegaConf

from benchmarks.configuration.schema import (SCHEMA_GROUP, SCHEMAS, Choice, ConfigError, OpenDict, Rule, RuleViolation,
                                             Section, bad_value, benchmark_schemas, declared, ref_point_error,
                                             register_benchmark_schemas, rule_of, schema_fields)
from benchmarks.data.registry import BENCHMARKS, benchmark_names, did_you_mean, get_benchmark

# Nothing here imports torch: a bad command line is refused in well under a second. Every key, with its type,
# default, meaning and value rule, is declared once in .schema (dataclasses in Hydra's ConfigStore).


def _rule(key: str) -> Optional[Rule]:
    """The rule of a dotted key: declared at the top level, else by a shipped schema of its group."""
    f = declared().get(key)
    if f is None and key.split(".", 1)[0] in CONFIG_GROUPS:
        f = declared(key.split(".", 1)[0]).get(key)
    return rule_of(f) if f is not None else None


def choices(key: str) -> Tuple[Any, ...]:
    """The valid values of ``key``, a key whose schema rule is a choice (a registry's live entries included)."""
    rule = _rule(key)
    if not isinstance(rule, Choice):
        raise KeyError(f"{key} is not a key with a fixed set of choices")
    return rule.valid()


def open_dicts() -> Tuple[str, ...]:
    """The dict keys whose sub-keys are free (schema rule :class:`OpenDict`, e.g. ``strategy.solver_options``)."""
    keys = {**declared(), **{k: f for g in CONFIG_GROUPS for k, f in declared(g).items()}}
    return tuple(k for k, f in keys.items() if isinstance(rule_of(f), OpenDict))


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
    """Composes (the schemas of :mod:`.schema` extended by the YAML files), applies the preset and validates
    (:func:`validate`); raises :class:`ConfigError` on bad input."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    explicit = _explicit_keys(overrides)
    written = _written(overrides)
    register_benchmark_schemas()  # the schema= of benchmarks registered since the last call
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = compose(config_name="config", overrides=open_dict_overrides(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        typed = _type_error(exc.__cause__, overrides, written) if exc.__cause__ is not None else None
        raise ConfigError(typed or _explain(f"{exc}\n{exc.__cause__ or ''}", overrides)) from None
    _check_added_keys(cfg, overrides)
    for key, value in written.items():  # what OmegaConf's conversion would accept silently (hnet.mip=1)
        rule = _rule_at(cfg, key) if key in explicit else None
        message = rule.written_error(key, value) if rule is not None else None
        if message:
            raise ConfigError(message)
    presets = OmegaConf.to_container(cfg.benchmark.get("presets", {}) or {}, resolve=True)
    if cfg.preset not in presets:
        raise ConfigError(preset_error(cfg.preset, cfg.benchmark.name, presets))
    _apply_preset(cfg, presets[cfg.preset], explicit, overrides)
    _check_open_dicts(cfg, explicit)
    validate(cfg, written)
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


def preset_error(preset: Any, benchmark: str, presets: Iterable[str]) -> str:
    """``preset=<preset>`` is not one of the benchmark's presets: the message lists them."""
    return (f"preset={preset!r} is not defined for benchmark={benchmark}{did_you_mean(preset, presets)}; "
            f"valid presets: {sorted(presets)}")


def _check_added_keys(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """A ``+key=value`` / ``++key=value`` override adds a key even where the schema is closed (Hydra lifts the
    struct flag for it): refused unless ``key`` is declared (a schema field, a key of a ``config=`` benchmark) or
    lies below a free dict (an :func:`open_dicts` entry, ``benchmark.presets``) or is Hydra's own (``hydra.*``)."""
    for override in overrides:
        if not override.startswith("+") or "=" not in override:
            continue
        key = override.split("=", 1)[0].lstrip("+")
        free = open_dicts() + ("benchmark.presets",)
        if key.startswith("hydra.") or any(key == d or key.startswith(d + ".") for d in free) or _declared_in(cfg, key):
            continue
        group = key.split(".", 1)[0]
        if group in CONFIG_GROUPS and OmegaConf.select(cfg, f"{group}.name") is not None:
            name = cfg[group].name
            keys = [f"{group}.{k}" for k in group_keys(group, name)]
            where = f" for {group}={name}{did_you_mean(key, keys)}; its keys: {', '.join(keys)}"
        else:
            keys = top_level_keys()
            where = f"{did_you_mean(key, keys)}; the keys: {', '.join(keys)}, plus benchmark.* and strategy.* (--help)"
        raise ConfigError(f"{override!r} adds {key}, which is not a configuration key{where}. A + override cannot add "
                          "a key the schema does not declare (it would be a silent no-op); set a declared key as "
                          "key=value")


def _declared_in(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` is declared in the composed ``cfg``: a field of the dataclass its parent node is typed with,
    or, below an untyped ``benchmark`` (registered with ``config=`` and no ``schema=``), a key of that ``config``."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if not OmegaConf.is_dict(node):
        return False
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        return leaf in {f.name for f in dataclasses.fields(schema)}
    if key.startswith("benchmark."):
        spec = BENCHMARKS.get(str(OmegaConf.select(cfg, "benchmark.name", default="")))
        config = dict(spec.config or {}) if spec is not None else {}
        return key[len("benchmark."):] in flatten_keys(config, keep_empty=True)
    return False


def _apply_preset(cfg: DictConfig, preset: Dict[str, Any], explicit: Sequence[str], overrides: Sequence[str]) -> None:
    """Sets every key of ``preset`` the command line did not set. Choosing a group (benchmark=..., strategy=...)
    is not an override of the keys inside it: the preset still sets them, except the keys that define the chosen
    strategy (finetune's beta = 0). A ``strategy.*`` key that some strategy schema declares but the chosen strategy
    does not is skipped (a preset serves every strategy of its benchmark; a strategy that does not apply is refused
    by the runner's dispatch); any other key no schema declares (a typo: ``strategy.bta``) is refused. Values go
    through the keys' types (OmegaConf)."""
    from omegaconf.errors import OmegaConfBaseException

    keys = [k for k in explicit if k not in CONFIG_GROUPS]
    fixed = [f"strategy.{k}" for k in STRATEGY_DEFINING_KEYS.get(cfg.strategy.name, ())]
    for key, value in flatten_keys(preset).items():
        if key in keys + fixed or any(key.startswith(e + ".") for e in keys):
            continue
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            if key.startswith("strategy.") and _strategy_key(key):
                if not (_below_open_dict(key) and _declared_in(cfg, key.rsplit(".", 1)[0])):
                    continue  # declared by another strategy (a free option of a dict the chosen one has: set)
            elif key.startswith("strategy."):
                raise ConfigError(f"preset={cfg.preset} of benchmark={cfg.benchmark.name} sets {key}, which no "
                                  f"strategy declares{did_you_mean(key, declared('strategy'))}; fix "
                                  "benchmark.presets in its config file (--help lists the keys)")
            else:
                raise ConfigError(f"preset={cfg.preset} of benchmark={cfg.benchmark.name} sets {key}, which is not a "
                                  "configuration key (--help lists them); fix benchmark.presets in its config file")
        try:
            OmegaConf.update(cfg, key, value, merge=False, force_add=_below_open_dict(key))  # a free option: added
        except OmegaConfBaseException as exc:
            message = _type_error(exc, overrides, {})
            raise ConfigError(f"preset={cfg.preset} of benchmark={cfg.benchmark.name}: "
                              f"{message or str(exc).splitlines()[0]}") from None


_ABSENT = object()


def _below_open_dict(key: str) -> bool:
    return any(key.startswith(d + ".") for d in open_dicts())


def _strategy_key(key: str) -> bool:
    """Whether some strategy schema declares ``key`` (``strategy.beta``; a key below ``strategy.solver_options``)."""
    return key in declared("strategy") or _below_open_dict(key)


def open_dict_overrides(overrides: Sequence[str]) -> List[str]:
    """The overrides as Hydra gets them: ``strategy.solver_options.mu=0.5`` (a key below an
    :func:`open_dicts` entry, which the file leaves empty) becomes ``++strategy.solver_options.mu=0.5``
    (add or override); a key that already carries ``+``, ``++`` or ``~`` is left as written."""
    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        free = any(key == d or key.startswith(d + ".") for d in open_dicts())
        if "=" in o and not key.startswith(("+", "~")) and free:
            o = "++" + o
        out.append(o)
    return out


def _check_open_dicts(cfg: DictConfig, explicit: Sequence[str]) -> None:
    """A key below an :func:`open_dicts` entry is refused when the chosen file's schema has no such dict (the
    ``++`` of :func:`open_dict_overrides` would add it silently)."""
    for key in explicit:
        for d in open_dicts():
            if key == d or key.startswith(d + "."):
                group, sub = d.split(".", 1)
                name = cfg[group].name
                schema = OmegaConf.get_type(cfg[group])
                if not (dataclasses.is_dataclass(schema) and sub in {f.name for f in dataclasses.fields(schema)}):
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


def _file_error(message: str) -> Optional[str]:
    """A shipped file that does not fit its schema (a key the schema does not declare, a value of the wrong type),
    as Hydra reports it while composing: the file, the key, what the schema accepts and the fix."""
    found = re.search(r"In '([^'/]+)/([^']+)': (\w+) raised while composing config:\n(.*)\n\s*full_key: (\S+)"
                      r"(?:\n\s*object_type=(\w+))?", message)
    if not found:
        return None
    group, option, kind, reason, full_key, schema = found.groups()
    where = f"configs/{group}/{option}.yaml" if (config_dir() / group / f"{option}.yaml").is_file() else \
        f"the config of {group}={option}"
    if kind == "ConfigKeyError":
        keys = group_keys(group, option) if group in CONFIG_GROUPS and schema_of(group, option) else []
        return (f"{where} sets {full_key}, which its schema {schema} (benchmarks/configuration/schema.py) does not "
                f"declare{did_you_mean(full_key.rsplit('.', 1)[-1], keys)}; its keys: "
                f"{', '.join(f'{group}.{k}' for k in keys)}. Declare the key in the schema (type, default, doc, rule) "
                "or remove it from the file")
    value = re.search(r"Value '(.*)' of type", reason)
    rule = _rule(re.sub(r"\[.*$", "", full_key))
    explained = rule.error(re.sub(r"\[.*$", "", full_key), value.group(1)) if rule is not None and value else None
    return f"{where}: {explained or f'{full_key}: {reason}'}"


def _explain(message: str, overrides: Sequence[str]) -> str:
    first = message.strip().splitlines()[0].rstrip(".")
    from_file = _file_error(message)
    if from_file:
        return from_file
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
    """The dotted keys of the top-level schema (:class:`~.schema.RunConfig`; not those of the groups)."""
    return sorted(declared())


def group_keys(group: str, option: str) -> List[str]:
    """The keys (below ``group.``) of one shipped option: its schema's fields (without presets), or, for a file
    without a schema, the file's keys (without its defaults list and presets)."""
    schema = schema_of(group, option)
    if schema is not None:
        return sorted(k for k, _ in schema_fields(schema) if k != "presets")
    path = config_dir() / group / f"{option}.yaml"
    if not path.is_file() and group == "benchmark" and option in BENCHMARKS:  # registered with config=, no schema=
        content = {"name": option, **dict(BENCHMARKS[option].config or {})}
    else:
        content = OmegaConf.to_container(OmegaConf.load(path))
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
    the default; None when that is neither a shipped file nor a benchmark registered with ``config=`` (the caller
    then lists the top-level keys)."""
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
    if not isinstance(choice, str):
        return None
    registered = group == "benchmark" and choice in BENCHMARKS and BENCHMARKS[choice].config is not None
    return choice if registered or (config_dir() / group / f"{choice}.yaml").is_file() else None


def schema_of(group: str, option: str) -> Optional[Type[Section]]:
    """The schema an option extends: a shipped file's ``- /schema/<group>/<name>@_here_`` defaults entry (a shipped
    schema, or the ``schema=`` of the registered benchmark ``<name>``), or, for a benchmark registered with
    ``config=``, its ``schema=``; None for a file without one or a ``config=`` benchmark without ``schema=``."""
    schemas = benchmark_schemas() if group == "benchmark" else SCHEMAS[group]
    path = config_dir() / group / f"{option}.yaml"
    if not path.is_file():
        spec = BENCHMARKS.get(option) if group == "benchmark" else None
        return benchmark_schemas().get(option) if spec is not None and spec.config is not None else None
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []) or []:
        if isinstance(entry, str) and entry.startswith(f"/{SCHEMA_GROUP}/{group}/"):
            return schemas.get(entry.split("@", 1)[0].rsplit("/", 1)[1])
    return None


def _written(overrides: Sequence[str]) -> Dict[str, Any]:
    """Key -> value as the command line wrote it (Hydra's parse, before OmegaConf converts it to the key's type)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # a malformed override: Hydra's own error is the one to show
        return {}
    out = {}
    for o in parsed:
        if not o.is_delete() and not o.is_sweep_override():
            try:
                out[o.key_or_group] = o.value()
            except Exception:
                continue
    return out


def _rule_at(cfg: DictConfig, key: str) -> Optional[Rule]:
    """The rule of ``key`` in the composed ``cfg``: the field of the dataclass its parent node is typed with."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    schema = OmegaConf.get_type(node) if OmegaConf.is_dict(node) else None
    if schema is None or not dataclasses.is_dataclass(schema):
        return None
    return next((rule_of(f) for f in dataclasses.fields(schema) if f.name == leaf), None)


def _rule_in(key: str, overrides: Sequence[str]) -> Optional[Rule]:
    """The rule of ``key`` in the schema of the option these overrides choose (else any shipped schema's)."""
    group = key.split(".", 1)[0]
    if group in CONFIG_GROUPS:
        schema = schema_of(group, _chosen(group, overrides) or "")
        if schema is not None:
            for name, f in schema_fields(schema, f"{group}."):
                if name == key:
                    return rule_of(f)
    return _rule(key)


def _type_error(exc: Exception, overrides: Sequence[str], written: Dict[str, Any]) -> Optional[str]:
    """OmegaConf's refusal of a value for a key's type ("Value 'abc' could not be converted to Integer") in the
    project's words: the key, the value as written, what the key accepts; None when ``exc`` is no such refusal."""
    from omegaconf.errors import ValidationError

    if not isinstance(exc, ValidationError) or not getattr(exc, "full_key", None):
        return None
    key = re.sub(r"\[.*$", "", str(exc.full_key))
    value = written.get(key, getattr(exc, "value", None))
    special = _ref_point_error(value, overrides) if key == "benchmark.ref_point" else \
        _preset_error(value, overrides) if key == "preset" else None
    if special:
        return special
    rule = _rule_in(key, overrides)
    message = rule.error(key, value) if rule is not None else None
    if message:
        return message
    if rule is not None and not isinstance(rule, OpenDict):
        return bad_value(key, value, f"must be {rule.allowed.replace(chr(92), '')}")
    reason = str(exc).strip().splitlines()[0].rstrip(".")
    return f"{key}={value!r} is not valid: {reason}; pass {key}=<a value of that type>"


def _ref_point_error(value: Any, overrides: Sequence[str]) -> Optional[str]:
    """A ``benchmark.ref_point`` its type refuses (``[1,1,abc]``, ``1``, ``null``) in the words of the benchmark's own
    check: a list of one finite number per objective, the objectives named."""
    name = _written(overrides).get("benchmark") or _primary_default("benchmark")
    spec = BENCHMARKS.get(str(name))
    return ref_point_error(value, spec.objectives, spec.name) if spec is not None and spec.objectives else None


def _preset_error(value: Any, overrides: Sequence[str]) -> Optional[str]:
    """A ``preset`` its type refuses (``preset=null``): the message that lists the chosen benchmark's presets (read
    from the configuration composed without the preset override)."""
    from hydra import compose, initialize_config_dir

    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "preset"]
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = compose(config_name="config", overrides=open_dict_overrides(rest))
        presets = OmegaConf.to_container(cfg.benchmark.get("presets", {}) or {}, resolve=True)
    except Exception:  # another override is bad too: the generic message
        return None
    return preset_error(value, cfg.benchmark.name, presets)


def validate(cfg: DictConfig, written: Optional[Dict[str, Any]] = None) -> None:
    """Runs the schema's checks: ``OmegaConf.to_object`` builds every dataclass of the config, so the generic
    :func:`~benchmarks.configuration.schema.check_fields` and each schema's cross-field rules (``__post_init__``)
    run; raises :class:`ConfigError` naming the key, the value (as ``written`` on the command line, when it was)
    and the valid range. Needs no data and no file system."""
    from omegaconf.errors import OmegaConfBaseException

    written = written or {}
    try:
        OmegaConf.to_object(cfg)
    except RuleViolation as exc:
        shown = exc.render(written[exc.key]) if exc.render is not None and exc.key in written else None
        raise ConfigError(shown or str(exc)) from None
    except OmegaConfBaseException as exc:  # a value missing (???) or a key no schema declares
        raise ConfigError(f"invalid configuration: {str(exc).strip().splitlines()[0]}") from None


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
