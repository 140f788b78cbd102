"""The configuration schema: every key of the run configuration, declared once, as dataclass fields.

Each key is one field, written with :func:`key`: its type (the annotation, which OmegaConf enforces),
its default, its doc string (shown by ``--help`` and ``docs/config.md``) and its value rule (a
:class:`Rule`: an integer >= 1, a finite number > 0, a choice, a registry choice, a folder, ...)::

    lr: float = key(1.0e-4, "Adam learning rate", Number(positive=True))

The rules are data, read by the one generic check :func:`check_fields`; a rule that ties several keys
together (``strategy.solver=hvi`` needs ``strategy.rays_per_step >= 2``) is written in the
``__post_init__`` of the dataclass that owns those keys. The checks run when
:func:`benchmarks.configuration.config.load_config` converts the composed configuration with
``OmegaConf.to_object`` (which builds every dataclass, so every ``__post_init__`` runs).

The schemas are stored in Hydra's ConfigStore (group ``schema``, see :func:`register`) and the YAML
files extend them through their defaults list (Hydra's "extending configs with a schema" pattern):
``configs/config.yaml`` starts with ``- /schema/run``, each ``configs/strategy/<name>.yaml`` with
``- /schema/strategy/<schema>@_here_`` and each ``configs/benchmark/<name>.yaml`` with
``- /schema/benchmark/<schema>@_here_``. A file then sets only the values that differ from the
schema's defaults (and its presets); a key it sets that its schema does not declare is refused. A registered
benchmark's own schema (``Benchmark(..., schema=...)`` in :mod:`benchmarks.data.registry`) is stored as
``schema/benchmark/<its name>`` by :func:`register_benchmark_schemas`, before each composition.

Nothing here imports torch: a bad command line is refused in well under a second.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Tuple, Type

from omegaconf import MISSING

from benchmarks.data.registry import BENCHMARKS, did_you_mean

MAX_SEED = 2**32 - 1  # numpy's legacy seeding accepts 0 .. 2**32 - 1
MNIST_SIDE = 28


class ConfigError(ValueError):
    """A configuration key or value is not valid; the message lists the valid ones."""


# ----------------------------------------------------------------------------- value rules
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def quoted_number_error(key: str, value: Any) -> Optional[str]:
    """A number key given a string (a quoted number, ``seed="'3'"``): OmegaConf would convert ``'3'`` to 3
    silently, so the written value is refused, naming the key and the unquoted spelling."""
    if isinstance(value, str) and "${" not in value:  # an interpolation (${oc.env:SEED,3}) resolves to its value
        return (f"{key}={value!r} is a string (quoted, or not written as a plain number), not a number; pass a "
                f"number without quotes: {key}={value.strip().strip(chr(39) + chr(34))}")
    return None


def bad_value(key: str, value: Any, rule: str) -> str:
    """The project's message for a value out of range: the key, the value, the range and the fix."""
    return f"{key}={value!r} is not valid: {rule}; pass {key}=<a value in that range>"


@dataclass(frozen=True)
class Rule:
    """What a key accepts: :meth:`error` says why a value is refused (None: accepted), :attr:`allowed`
    says what is accepted (the ``allowed`` column of ``docs/config.md``, the brackets of ``--help``)."""

    @property
    def allowed(self) -> str:
        return "any"

    def error(self, key: str, value: Any) -> Optional[str]:
        return None

    def written_error(self, key: str, value: Any) -> Optional[str]:
        """A value as the command line wrote it (Hydra's parse, before OmegaConf converts it to the
        field's type): refuses what the conversion would accept silently (``hnet.mip=1``, ``run_dir=123``)."""
        return None


@dataclass(frozen=True)
class Described(Rule):
    """No check here (``checked_by`` says where the value is checked); only the allowed values, for the docs."""

    text: str = "any"
    checked_by: str = ""

    @property
    def allowed(self) -> str:
        return self.text


@dataclass(frozen=True)
class Count(Rule):
    """An integer from ``minimum`` (to ``maximum``); null too when ``optional``. ``why`` says what it counts."""

    minimum: int = 1
    maximum: Optional[int] = None
    optional: bool = False
    why: str = ""

    @property
    def allowed(self) -> str:
        text = (
            f"integer {self.minimum} .. 2**32-1"
            if self.maximum == MAX_SEED
            else f"integer {self.minimum} .. {self.maximum}"
            if self.maximum is not None
            else f"integer >= {self.minimum}"
        )
        return text + (f" ({self.why})" if self.why and self.optional else "") + (", or null" if self.optional else "")

    def error(self, key: str, value: Any) -> Optional[str]:
        if (value is None and self.optional) or (
            _is_int(value) and value >= self.minimum and (self.maximum is None or value <= self.maximum)
        ):
            return None
        if self.maximum is not None:
            rule = f"must be an integer from {self.minimum} to {self.maximum}"
        elif self.why and self.optional:  # benchmark.pad_to
            rule = f"must be an integer >= {self.minimum} ({self.why})"
        else:
            rule = f"must be an integer >= {self.minimum}" + (" (or null)" if self.optional else "")
            rule += f": {self.why}" if self.why else ""
        return bad_value(key, value, rule)

    def written_error(self, key: str, value: Any) -> Optional[str]:
        return quoted_number_error(key, value)


@dataclass(frozen=True)
class Number(Rule):
    """A finite number, > 0 (``positive``) or >= 0; null too when ``optional``; ``unit``: ``seconds``."""

    positive: bool = True
    optional: bool = False
    unit: str = ""
    null_means: str = ""

    @property
    def allowed(self) -> str:
        return f"finite number {'> 0' if self.positive else '>= 0'}" + (", or null" if self.optional else "")

    def error(self, key: str, value: Any) -> Optional[str]:
        if value is None and self.optional:
            return None
        if _is_number(value) and math.isfinite(value) and (value > 0 if self.positive else value >= 0):
            return None
        unit = f" of {self.unit}" if self.unit else ""
        null = f", or null ({self.null_means})" if self.optional else ""
        return bad_value(key, value, f"must be a finite number{unit} {'> 0' if self.positive else '>= 0'}{null}")

    def written_error(self, key: str, value: Any) -> Optional[str]:
        return quoted_number_error(key, value)


@dataclass(frozen=True)
class Choice(Rule):
    """One of ``values``; null too when ``null_means`` says what null means."""

    values: Tuple[str, ...] = ()
    null_means: str = ""

    def valid(self) -> Tuple[str, ...]:
        return self.values

    @property
    def allowed(self) -> str:
        return " \\| ".join(self.values) + (f", or null: {self.null_means}" if self.null_means else "")

    def error(self, key: str, value: Any) -> Optional[str]:
        valid = self.valid()
        if (value is None and self.null_means) or (value is not None and value in valid):
            return None
        null = f" or null ({self.null_means})" if self.null_means else ""
        return f"{key}={value!r} is not valid{did_you_mean(value, valid)}; choose one of {list(valid)}{null}"


@dataclass(frozen=True)
class RegistryChoice(Choice):
    """A name of a registry (``module.name``, a dict): the built-in ``values`` are checked without importing
    the registry module (torch); once that module is loaded (a user registered a solver, an activation)
    its live entries count too, except ``exclude``. tests/test_cli_conventions.py checks the built-ins."""

    module: str = ""
    name: str = ""
    exclude: Tuple[str, ...] = ()

    def valid(self) -> Tuple[str, ...]:
        loaded = sys.modules.get(self.module)
        live = tuple(getattr(loaded, self.name, ())) if loaded is not None else ()
        return self.values + tuple(v for v in live if v not in self.values and v not in self.exclude)

    @property
    def allowed(self) -> str:
        null = f", or null: {self.null_means}" if self.null_means else ""
        return " \\| ".join(self.values) + f" (and any registered one){null}"


@dataclass(frozen=True)
class Flag(Rule):
    """true or false, written so: OmegaConf would also read 1, yes, on as true."""

    @property
    def allowed(self) -> str:
        return "true \\| false"

    def error(self, key: str, value: Any) -> Optional[str]:
        return None if isinstance(value, bool) else f"{key}={value!r} must be true or false"

    written_error = error


@dataclass(frozen=True)
class Widths(Rule):
    """A list of layer widths, integers >= 1 (may be empty)."""

    @property
    def allowed(self) -> str:
        return "list of integers >= 1"

    def error(self, key: str, value: Any) -> Optional[str]:
        if isinstance(value, (list, tuple)) and all(_is_int(v) and v >= 1 for v in value):
            return None
        return bad_value(
            key, list(value) if isinstance(value, tuple) else value, "must be a list of integers >= 1, e.g. [100, 100]"
        )


@dataclass(frozen=True)
class Folder(Rule):
    """A folder, or null for ``default``; an empty string is a typo (``run_dir=``) that would silently mean
    the default, and a number is a folder name the command line did not quote."""

    default: str = ""

    @property
    def allowed(self) -> str:
        return "a folder, or null"

    def error(self, key: str, value: Any) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, str):
            return self.written_error(key, value)
        if not value.strip():
            return (
                f"{key}={value!r} is not a folder; leave {key} out for its default ({self.default}) "
                f"or pass {key}=<folder>"
            )
        return None

    def written_error(self, key: str, value: Any) -> Optional[str]:
        if value is not None and not isinstance(value, str):
            return (
                f"{key}={value!r} was read as {type(value).__name__}, not as a folder name; quote it: {key}='{value}'"
            )
        return None


@dataclass(frozen=True)
class OpenDict(Rule):
    """A dict whose sub-keys are free (a registered solver's own options): ``<key>.<name>=value`` adds
    ``<name>``; a file whose schema lacks the dict refuses them, and the solver refuses names it does not take."""

    @property
    def allowed(self) -> str:
        return (
            "the chosen solver's options (its constructor's keywords), each as `strategy.solver_options.<option>=value`"
        )


def key(default: Any, doc: str, rule: Optional[Rule] = None) -> Any:
    """A schema field: ``default`` (a list or dict is copied for each instance; ``MISSING``: the file sets
    it), ``doc`` (its meaning, for ``--help`` and ``docs/config.md``) and ``rule`` (what it accepts)."""
    metadata = {"doc": doc, "rule": rule}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def rule_of(f: dataclasses.Field) -> Optional[Rule]:
    return f.metadata.get("rule")


def check_fields(obj: Any) -> None:
    """The one generic check: every field of the dataclass ``obj`` against its rule, in declaration order;
    raises :class:`RuleViolation` (a :class:`ConfigError`) for the first value refused."""
    for f in fields(obj):
        rule = rule_of(f)
        if rule is None:
            continue
        full = f"{obj.PREFIX}{f.name}"
        value = getattr(obj, f.name)
        message = rule.error(full, value)
        if message:
            raise RuleViolation(full, value, message, functools.partial(rule.error, full))


class RuleViolation(ConfigError):
    """A value its rule refuses. ``render(value)`` gives the message for another spelling of the same value:
    :func:`~benchmarks.configuration.config.load_config` shows the value as the command line wrote it
    (``train.lr=0``, not the converted ``0.0``)."""

    def __init__(
        self, key: str, value: Any, message: str, render: Optional[Callable[[Any], Optional[str]]] = None
    ) -> None:
        super().__init__(message)
        self.key, self.value, self.render = key, value, render


@dataclass
class Section:
    """A part of the configuration: ``PREFIX`` is where it sits (``train.``); its fields are checked
    by :func:`check_fields` when it is built, then by the subclass's own cross-field rules."""

    PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_fields(self)


# ----------------------------------------------------------------------------- top level
RUN_DIR_DEFAULT = "runs/<benchmark>-<strategy>-<preset>-seed<seed>"
DATA_ROOT_DEFAULT = "$CL_MOO_DATA, else ~/.cache/cl_moo/data"
ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh")
NOT_A_TARGET_ACTIVATION = ("linear",)  # a target of linear layers only is a linear model


@dataclass
class DataConfig(Section):
    PREFIX: ClassVar[str] = "data."
    root: Optional[str] = key(None, f"the data folder (null: {DATA_ROOT_DEFAULT})", Folder(DATA_ROOT_DEFAULT))
    download: bool = key(False, "fetch missing files from their canonical source (needs a network)", Flag())
    verify: bool = key(True, "check files against their published sha256", Flag())


@dataclass
class TargetConfig(Section):
    PREFIX: ClassVar[str] = "target."
    hidden: List[int] = key([100, 100], "hidden widths of the target MLP (the generated network)", Widths())
    activation: str = key(
        "relu",
        "activation of the target's hidden layers",
        RegistryChoice(ACTIVATIONS, module="cl_moo.hypernetwork", name="ACTIVATIONS", exclude=NOT_A_TARGET_ACTIVATION),
    )


@dataclass
class HnetConfig(Section):
    PREFIX: ClassVar[str] = "hnet."
    chunked: bool = key(
        True,
        "one chunk embedding per chunk_size outputs (von Oswald et al.) vs one head per tensor "
        "(read only while hnet.generator is null)",
        Flag(),
    )
    generator: Optional[str] = key(
        None,
        "a registered generator (cl_moo.builder.GENERATORS); null: chosen by hnet.chunked",
        RegistryChoice(
            ("mlp", "chunked"),
            null_means="chunked when hnet.chunked, else mlp",
            module="cl_moo.builder",
            name="GENERATORS",
        ),
    )
    chunk_size: int = key(2000, "generated weights per chunk (chunked only)", Count())
    chunk_emb_dim: int = key(12, "width of each learned chunk embedding (chunked only)", Count())
    hidden: List[int] = key([100, 75, 50], "hidden widths of the hypernetwork", Widths())
    activation: str = key(
        "elu",
        "activation of the hypernetwork's hidden layers",
        RegistryChoice((*ACTIVATIONS, "linear"), module="cl_moo.hypernetwork", name="ACTIVATIONS"),
    )
    emb_dim: int = key(64, "task embedding width (continual runs only: for PHN the ray is the input)", Count())
    emb_std: float = key(
        1.0, "std of a new task embedding's N(0, std^2) draw (hnet_cl runs; phn_cl: strategy.emb_std)", Number()
    )
    last_activation: bool = key(True, "activation after the last hidden layer", Flag())
    mip: bool = key(False, "MIP encoding + residual theta = theta0 + dtheta", Flag())
    init: str = key(
        "hyperfan_in",
        "initialisation of the hypernetwork's weights",
        RegistryChoice(("hyperfan_in", "hyperfan_out", "kaiming", "xavier"), module="cl_moo.init", name="INIT_SCHEMES"),
    )


@dataclass
class TrainConfig(Section):
    PREFIX: ClassVar[str] = "train."
    iterations: int = key(1000, "optimizer steps per task (continual learning)", Count())
    epochs: int = key(3, "passes over the training split (Pareto benchmarks)", Count())
    batch_size: int = key(128, "training mini-batch size", Count())
    lr: float = key(1.0e-4, "Adam learning rate (presets set their own; see --help for a run's value)", Number())
    eval_batch_size: int = key(1000, "evaluation mini-batch size (no effect on results)", Count())
    eval_tasks: str = key(
        "all",
        "all: every test task after each task | current: the task just trained (all after the last)",
        Choice(("all", "current")),
    )
    compile: bool = key(
        False,
        "continual runs: torch.compile the model forward of each mini-batch (CUDA graphs on a "
        "GPU); equals eager within rounding, falls back to eager with a warning if compiling fails",
        Flag(),
    )
    budget_s: Optional[float] = key(
        None,
        "seconds this process may run: it stops at the last checkpoint that fits "
        "(exit status 75) and the same command with resume=true continues (null: no "
        "budget)",
        Number(optional=True, unit="seconds", null_means="no budget"),
    )


@dataclass
class RunConfig(Section):
    """The whole run configuration (``configs/config.yaml``); ``strategy`` and ``benchmark`` hold the
    chosen files of those groups, each with its own schema."""

    strategy: Any = key(None, "the strategy's keys: configs/strategy/<name>.yaml (strategy=<name>)")
    benchmark: Any = key(None, "the benchmark's keys: configs/benchmark/<name>.yaml (benchmark=<name>)")
    preset: str = key(
        "small",
        "named settings from benchmark.presets (small, paper, ...); explicit overrides win",
        Described("a preset of the benchmark (--help lists them)", checked_by="load_config"),
    )
    seed: int = key(0, "seeds every generator of the run (data order, init, rays)", Count(minimum=0, maximum=MAX_SEED))
    device: str = key(
        "auto", "where the run computes (auto: cuda when a GPU is visible)", Choice(("auto", "cpu", "cuda"))
    )
    resume: bool = key(False, "continue the run in run_dir from its last finished experience", Flag())
    run_dir: Optional[str] = key(None, f"the run's folder (null: {RUN_DIR_DEFAULT})", Folder(RUN_DIR_DEFAULT))
    progress: bool = key(True, "progress with an overall ETA (a bar on a terminal, else a line every 30 s)", Flag())
    data: DataConfig = field(default_factory=DataConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    hnet: HnetConfig = field(default_factory=HnetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.benchmark, dict):  # a benchmark registered with config= (no schema): rules by key name
            for name, value in self.benchmark.items():
                rule = shared_rule("benchmark", name)
                message = rule.error(f"benchmark.{name}", value) if rule else None
                if message and rule:
                    raise RuleViolation(
                        f"benchmark.{name}", value, message, functools.partial(rule.error, f"benchmark.{name}")
                    )
        start = getattr(self.strategy, "start", None)
        if start == "phn" and self.hnet.mip is True:
            raise ConfigError(
                "strategy.start=phn (task 0 starts as a stand-alone PHN) does not apply with "
                "hnet.mip=true: the MIP encoding of [task embedding, ray] differs from a PHN's encoding "
                "of the ray; pass strategy.start=random"
            )


# ----------------------------------------------------------------------------- strategies (configs/strategy/)
@dataclass
class StrategyBase(Section):
    PREFIX: ClassVar[str] = "strategy."
    name: str = key(
        MISSING, "the strategy (the file's name; set it with strategy=<name>)", Described("the file's name")
    )


@dataclass
class HnetStrategy(StrategyBase):
    """von Oswald et al. 2020's task-conditioned hypernetwork (hnet_cl; finetune is beta = 0)."""

    beta: float = key(0.05, "regularizer strength (0 = fine-tuning baseline)", Number(positive=False))
    reg_targets: str = key(
        "stored", "stored | online (frozen copy, for long task sequences)", Choice(("stored", "online"))
    )
    reg_subset: Optional[int] = key(
        None, "regularize a random subset of this many earlier tasks per step (null: all)", Count(optional=True)
    )
    lookahead: bool = key(False, "regularize at the look-ahead weights theta + Delta theta (paper Eq. 2)", Flag())
    task_inference: str = key(
        "given", "given (CL1, task id known) | entropy (CL3, HNET+ENT)", Choice(("given", "entropy"))
    )


SOLVERS = ("ls", "epo", "tch", "stch", "hvi")


@dataclass
class SolverStrategy(StrategyBase):
    """Training with sampled preference rays and a solver (ls_separate; the base of the PHN strategies)."""

    solver: str = key(
        "ls",
        "how each ray's losses become one loss",
        RegistryChoice(SOLVERS, module="strategies.solvers", name="SOLVERS"),
    )
    alpha: float = key(0.2, "Dirichlet concentration of the training rays", Number())
    rays_per_step: int = key(8, "rays sampled per optimizer step (their losses averaged)", Count())

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.solver == "hvi" and self.rays_per_step < 2:
            raise ConfigError(
                "strategy.solver=hvi maximises the hypervolume of the rays of each step, so it needs "
                f"strategy.rays_per_step >= 2 (now {self.rays_per_step}); "
                "pass e.g. strategy.rays_per_step=4"
            )


@dataclass
class PhnStrategy(SolverStrategy):
    """Pareto HyperNetwork (Navon et al. 2021): phn_ls, phn_epo."""

    solver_options: Dict[str, Any] = key(
        {},
        "the solver's own options (its constructor's keywords), e.g. "
        "strategy.solver_options.mu=0.5 for stch; {}: its defaults",
        OpenDict(),
    )


@dataclass
class PhnCLStrategy(PhnStrategy):
    """Continual Pareto fronts: one hypernetwork h([task embedding, ray]) with an output regularizer (phn_cl)."""

    beta: float = key(
        2.0,
        "regularizer strength (0: earlier fronts unprotected; docs/reproduction.md: beta 2 vs 0.5)",
        Number(positive=False),
    )
    reg_rays: int = key(
        10,
        "rays per earlier task at which outputs are kept",
        Count(minimum=2, why="the rays at which each earlier task's front is kept (default 10)"),
    )
    emb_std: float = key(0.1, "std of each new task embedding's N(0, std^2) draw", Number())
    start: str = key(
        "random",
        "random: a fresh draw; phn: start as the stand-alone PHN of the same seed (not with hnet.mip=true)",
        RegistryChoice(("phn", "random"), module="strategies.phn_cl", name="START"),
    )


# ----------------------------------------------------------------------------- benchmarks (configs/benchmark/)
@dataclass
class BenchmarkBase(Section):
    PREFIX: ClassVar[str] = "benchmark."
    name: str = key(
        MISSING, "the benchmark (the file's name; set it with benchmark=<name>)", Described("the file's name")
    )
    presets: Dict[str, Any] = key({}, "named settings (preset=<name>): the keys each preset sets")


@dataclass
class PmnistBenchmark(BenchmarkBase):
    """Permuted MNIST (von Oswald et al. 2020, Sec. 4.2)."""

    builder: str = key(
        "tensors",
        "tensors (fast, pre-permuted tensors) | avalanche (Avalanche's PermutedMNIST; needs the full MNIST)",
        Choice(("tensors", "avalanche")),
    )
    n_tasks: int = key(10, "number of tasks (task 0 unpermuted, then one fixed permutation each)", Count())
    pad_to: Optional[int] = key(
        32,
        "images zero-padded to pad_to x pad_to (32: the paper's 1024 inputs; null: 28)",
        Count(minimum=MNIST_SIDE, optional=True, why="the MNIST image side"),
    )
    train_per_task: Optional[int] = key(
        None, "training images per task (null: all; 8,000 with the test-split fallback)", Count(optional=True)
    )
    test_per_task: Optional[int] = key(None, "test images per task (null: all)", Count(optional=True))


@dataclass
class RegressionBenchmark(BenchmarkBase):
    """The 1D regression sequence (von Oswald et al. 2020, Sec. 4.1)."""

    n_train: int = key(100, "training points per task", Count())
    n_test: int = key(50, "test points per task", Count())
    noise_std: float = key(0.05, "std of the Gaussian noise on the training targets", Number(positive=False))


@dataclass
class SplitMnistBenchmark(BenchmarkBase):
    """Split MNIST, task-incremental (digit pairs)."""

    n_tasks: int = key(5, "the first n_tasks digit pairs (0/1, 2/3, 4/5, 6/7, 8/9): 1 to 5", Count())
    train_per_task: Optional[int] = key(
        None,
        "training images per task, a seeded random subset (null: all, about "
        "12,000; about 1,600 with the test-split fallback)",
        Count(optional=True),
    )
    test_per_task: Optional[int] = key(None, "test images per task (null: all, about 2,000)", Count(optional=True))


@dataclass
class ParetoBenchmark(BenchmarkBase):
    """A benchmark with several objectives (a front per task): its reference point and evaluation rays."""

    ref_point: List[float] = key(
        MISSING,
        "the fixed hypervolume reference point, one coordinate per objective (all minimised)",
        Described("one finite number > 0 per objective", checked_by="ParetoBenchmark.__post_init__"),
    )
    n_eval_rays: int = key(
        25,
        "rays the front is evaluated on (PHN uses 25; Das-Dennis directions for 3 objectives)",
        Count(minimum=2, why="the rays a front is evaluated on (PHN uses 25)"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        spec = BENCHMARKS.get(self.name)
        names = spec.objectives if spec is not None else ()
        message = ref_point_error(self.ref_point, names, self.name) if names else None
        if message:
            raise RuleViolation(
                "benchmark.ref_point", self.ref_point, message, lambda value: ref_point_error(value, names, self.name)
            )


def ref_point_error(value: Any, names: Tuple[str, ...], benchmark: str) -> Optional[str]:
    """Why ``benchmark.ref_point=value`` is refused (None: accepted): one finite number > 0 per objective."""
    items = list(value) if isinstance(value, (list, tuple)) else value
    m = len(names)
    rule = f"must be a list of {m} finite numbers, one per objective of benchmark={benchmark} ({', '.join(names)})"
    if not (isinstance(items, list) and len(items) == m and all(_is_number(v) and math.isfinite(v) for v in items)):
        return bad_value("benchmark.ref_point", items, rule)
    if min(items) <= 0:
        return bad_value(
            "benchmark.ref_point",
            items,
            f"every coordinate must be > 0: the objectives "
            f"({', '.join(names)}) are non-negative, so a model never dominates a point with a coordinate "
            "<= 0 and every hypervolume would be 0",
        )
    return None


@dataclass
class FairnessBenchmark(ParetoBenchmark):
    """The fairness benchmarks (Navon et al. 2021, Sec. 5.3): adult, bank, default."""

    max_rows: Optional[int] = key(None, "use only the first rows of the CSV (null: all)", Count(optional=True))


@dataclass
class MultiMnistBenchmark(ParetoBenchmark):
    """The Multi-MNIST family (Lin et al. 2019; PHN, Navon et al. 2021, Table 1)."""

    kind: str = key(
        "mnist",
        "mnist | fashion | fashion_mnist (Multi-MNIST, Multi-Fashion, Multi-(Fashion+MNIST))",
        Choice(("mnist", "fashion", "fashion_mnist")),
    )
    max_train: Optional[int] = key(
        None,
        "training images (per task for multimnist_seq; null: all 108,000 left after PHN's 10% validation hold-out)",
        Count(optional=True),
    )
    max_test: Optional[int] = key(
        None, "test images (per task for multimnist_seq; null: all 20,000)", Count(optional=True)
    )


@dataclass
class MultiMnistSeqBenchmark(MultiMnistBenchmark):
    """A sequence of permuted Multi-MNIST tasks, a front each."""

    n_tasks: int = key(5, "number of tasks (task 0 unpermuted, then one fixed pixel permutation each)", Count())


# ----------------------------------------------------------------------------- the ConfigStore
SCHEMA_GROUP = "schema"
RUN_SCHEMA = "run"
# group -> schema name (as the YAML files name it: - /schema/<group>/<name>@_here_) -> dataclass
SCHEMAS: Dict[str, Dict[str, Type[Section]]] = {
    "strategy": {"hnet": HnetStrategy, "solver": SolverStrategy, "phn": PhnStrategy, "phn_cl": PhnCLStrategy},
    "benchmark": {
        "pmnist": PmnistBenchmark,
        "regression": RegressionBenchmark,
        "splitmnist": SplitMnistBenchmark,
        "fairness": FairnessBenchmark,
        "multimnist": MultiMnistBenchmark,
        "multimnist_seq": MultiMnistSeqBenchmark,
    },
}


def register() -> None:
    """Stores every schema in Hydra's ConfigStore (idempotent): ``schema/run`` and ``schema/<group>/<name>``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group=SCHEMA_GROUP, name=RUN_SCHEMA, node=RunConfig)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"{SCHEMA_GROUP}/{group}", name=name, node=schema)


def benchmark_schemas() -> Dict[str, Type[Section]]:
    """The benchmark schemas a file or a ``config=`` benchmark may extend: the shipped ones (:data:`SCHEMAS`) and
    the ``schema=`` of every registered benchmark (:mod:`benchmarks.data.registry`), under the benchmark's name
    (``- /schema/benchmark/<name>@_here_``; a registered one wins over a shipped one of the same name)."""
    out: Dict[str, Type[Section]] = dict(SCHEMAS["benchmark"])
    for name, spec in BENCHMARKS.items():
        schema = spec.schema_class() if spec.schema is not None else None
        if isinstance(schema, type) and issubclass(schema, BenchmarkBase):
            out[name] = schema
    return out


_STORED_BENCHMARK_SCHEMAS: Dict[str, type] = {}


def register_benchmark_schemas() -> None:
    """Stores the ``schema=`` of every registered benchmark in Hydra's ConfigStore as ``schema/benchmark/<name>``
    (run before each composition: a benchmark may be registered after this module loads); a class that is not a
    :class:`BenchmarkBase` subclass is refused, naming the benchmark."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    stored = store.repo.setdefault(SCHEMA_GROUP, {}).setdefault("benchmark", {})
    for name, shipped in SCHEMAS["benchmark"].items():  # a shipped schema an unregistered benchmark took away
        if f"{name}.yaml" not in stored and (name not in BENCHMARKS or BENCHMARKS[name].schema is None):
            store.store(group=f"{SCHEMA_GROUP}/benchmark", name=name, node=shipped)
    for name in [n for n in _STORED_BENCHMARK_SCHEMAS if n not in BENCHMARKS or BENCHMARKS[n].schema is None]:
        del _STORED_BENCHMARK_SCHEMAS[name]  # unregistered: the shipped schema of that name (if any) again
        store.repo.get(SCHEMA_GROUP, {}).get("benchmark", {}).pop(f"{name}.yaml", None)
        if name in SCHEMAS["benchmark"]:
            store.store(group=f"{SCHEMA_GROUP}/benchmark", name=name, node=SCHEMAS["benchmark"][name])
    for name, spec in BENCHMARKS.items():
        try:
            schema = spec.schema_class()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"benchmark={name}: its schema={spec.schema!r} cannot be imported ({exc})") from None
        if schema is None or (_STORED_BENCHMARK_SCHEMAS.get(name) is schema and f"{name}.yaml" in stored):
            continue  # stored already (unregister_benchmark removes the entry: registered again, it is stored again)
        if not (isinstance(schema, type) and issubclass(schema, BenchmarkBase)):
            raise ConfigError(
                f"benchmark={name}: its schema= {schema!r} is not a subclass of "
                "benchmarks.configuration.schema.BenchmarkBase; declare its keys as "
                "`@dataclass class MyBenchmark(BenchmarkBase): my_key: int = key(3, 'doc', Count())`"
            )
        store.store(group=f"{SCHEMA_GROUP}/benchmark", name=name, node=schema)
        _STORED_BENCHMARK_SCHEMAS[name] = schema


def schema_fields(schema: Type[Any], prefix: str = "") -> Iterator[Tuple[str, dataclasses.Field]]:
    """``(dotted key, field)`` for every key of ``schema``, nested sections flattened (``train.lr``);
    ``strategy`` and ``benchmark`` of :class:`RunConfig` are left out (their groups have their own schemas)."""
    for f in fields(schema):
        if schema is RunConfig and f.name in ("strategy", "benchmark"):
            continue
        inner: Any = f.default_factory  # a nested section's class (MISSING for other fields)
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            yield from schema_fields(inner, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


@functools.lru_cache(maxsize=None)
def declared(group: Optional[str] = None) -> Dict[str, dataclasses.Field]:
    """Every declared key: of the top level (``group=None``; ``seed``, ``train.lr``, ...) or of every schema of
    ``group`` (``benchmark.n_tasks``: the first schema declaring it)."""
    if group is None:
        return dict(schema_fields(RunConfig))
    out: Dict[str, dataclasses.Field] = {}
    for schema in SCHEMAS[group].values():
        for name, f in schema_fields(schema, f"{group}."):
            out.setdefault(name, f)
    return out


def doc_of(f: dataclasses.Field) -> str:
    """A field's doc string, with the values its rule allows in brackets (``--help``; not for a rule that only
    describes, whose doc says it)."""
    rule = rule_of(f)
    shown = rule is not None and rule.allowed != "any" and not isinstance(rule, (Described, OpenDict))
    allowed = rule.allowed.replace("\\|", "|") if rule is not None and shown else ""
    return f.metadata.get("doc", "") + (f" [{allowed}]" if allowed else "")


def shared_rule(group: str, name: str) -> Optional[Rule]:
    """The rule of ``<group>.<name>`` in the shipped schemas (for a benchmark registered without one)."""
    f = declared(group).get(f"{group}.{name}")
    return rule_of(f) if f is not None else None


register()
