"""The one registry of benchmarks (in the spirit of pymoo's ``get_problem``): name -> what a run needs.

Each :class:`Benchmark` entry says which runner it belongs to (``kind``), how its data are loaded
(``loader``, called with the run configuration), how it is scored (``metric`` for a continual
benchmark, ``objectives`` for a Pareto one), the strategy it runs when the command line names none
and the data files it reads. :mod:`benchmarks.configuration.config` derives its benchmark lists, objectives and
default strategies from here, and the runners dispatch through :func:`get_benchmark`, the one lookup
(``make_benchmark`` and ``load_problem`` pass their ``kind``: a benchmark of another kind is refused).

A new benchmark is one loader file (which also declares the benchmark's keys: a dataclass subclass of
:class:`benchmarks.configuration.schema.BenchmarkBase`, passed as ``schema=``, the class or ``"module:Class"``), one
:func:`register_benchmark` call and its configuration: a file ``configs/benchmark/<name>.yaml`` (extending
``/schema/benchmark/<name>``, the ``schema=`` class, or a shipped schema), or, for a benchmark defined
outside this repository (a test, a user's module), ``config=`` here, which is stored in Hydra's ConfigStore
so that ``benchmark=<name>`` composes it (on top of its ``schema=``, when it has one). This module only
keeps the class: :mod:`benchmarks.configuration` stores it in the ConfigStore and checks against it. Its data files' checksums
go in ``known_files`` (added to :data:`cl_moo.data.KNOWN_FILES`, the library's table that
:func:`cl_moo.require_file` checks against); the library layer is not edited.

Nothing here imports torch (the configuration is checked before torch loads): a loader is either a
callable or a ``"module:function"`` string imported on first use.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, is_dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cl_moo.data import KnownFile

KINDS = ("continual", "pareto", "continual_pareto")  # which runner: cl_runner, pareto_runner, continual_pareto_runner
KIND_NAMES = {"continual": "continual-learning", "pareto": "Pareto", "continual_pareto": "continual Pareto"}
METRICS = ("accuracy", "mse")  # continual: classification (cross-entropy, accuracy) | regression (MSE)
Loader = Union[str, Callable[["DictConfig"], Any]]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: everything the configuration check and the runners need to know of it.

    ``loader(cfg)`` returns, by ``kind``: ``(Avalanche benchmark with task labels, info dict)`` for
    ``"continual"`` (info: ``input_size``, ``num_classes`` or ``output_size``, ``fallback``), a
    :class:`benchmarks.runners.pareto_problems.ParetoProblem` for ``"pareto"`` and ``"continual_pareto"``.
    """

    name: str
    kind: str  # one of KINDS
    loader: Loader  # a callable taking the run config, or "module:function" (imported on first use)
    default_strategy: str  # the strategy benchmark=<name> runs when the command line names none
    metric: Optional[str] = None  # continual: "accuracy" (classification) or "mse" (regression)
    objectives: Tuple[str, ...] = ()  # pareto kinds: the objectives' names, in loss order
    files: Tuple[str, ...] = ()  # data files it may read (names under the data root)
    known_files: Mapping[str, "KnownFile"] = field(default_factory=dict)  # checksums the library does not know yet
    not_read: Tuple[str, ...] = ()  # config keys it does not read (its target is fixed): setting one is refused
    check: Optional[Callable[["DictConfig"], None]] = None  # extra config check; raises ValueError naming the key
    config: Optional[Mapping[str, Any]] = None  # the benchmark group's config when no YAML file ships it
    # the dataclass declaring its keys (a subclass of benchmarks.configuration.schema.BenchmarkBase), or
    # "module:Class" (imported on first use, like a loader: a module of this layer cannot import the schema base),
    # stored by the configuration layer as schema/benchmark/<name>; None: the config= keys are checked by the
    # shipped rule of the same name, and a key no shipped schema declares is not checked (pass schema= to check it)
    schema: Union[None, type, str] = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"benchmark {self.name!r}: kind={self.kind!r} is not one of {list(KINDS)}")
        if self.kind == "continual" and self.metric not in METRICS:
            raise ValueError(f"benchmark {self.name!r}: a continual benchmark needs metric= one of {list(METRICS)} "
                             f"(accuracy: classification, mse: regression), not {self.metric!r}")
        schema = self.schema
        if not (schema is None or (isinstance(schema, type) and is_dataclass(schema))
                or (isinstance(schema, str) and schema.count(":") == 1)):
            raise ValueError(f"benchmark {self.name!r}: schema= must be a dataclass (a subclass of "
                             "benchmarks.configuration.schema.BenchmarkBase declaring its keys) or "
                             f"'module:Class', not {schema!r}")
        if self.kind != "continual" and len(self.objectives) < 2:
            raise ValueError(f"benchmark {self.name!r}: a {self.kind} benchmark needs objectives= (two or more names, "
                             f"in loss order), not {self.objectives!r}")

    @property
    def classification(self) -> bool:
        """Whether a continual benchmark is scored by accuracy (cross-entropy loss) rather than MSE."""
        return self.metric == "accuracy"

    def schema_class(self) -> Optional[type]:
        """The ``schema`` class (a ``"module:Class"`` string imported here); None without one."""
        if isinstance(self.schema, str):
            module, _, name = self.schema.partition(":")
            return getattr(import_module(module), name)
        return self.schema

    def load(self, cfg: "DictConfig") -> Any:
        """The loader's result for the run configuration ``cfg`` (data checked and loaded)."""
        loader = self.loader
        if isinstance(loader, str):
            module, _, function = loader.partition(":")
            loader = getattr(import_module(module), function)
        return loader(cfg)


BENCHMARKS: Dict[str, Benchmark] = {}


def register_benchmark(spec: Benchmark, *, replace: bool = False) -> Benchmark:
    """Adds ``spec`` to :data:`BENCHMARKS` (a name already taken is refused unless ``replace``); its
    ``known_files`` go to :data:`cl_moo.data.KNOWN_FILES` and its ``config`` to Hydra's ConfigStore
    (group ``benchmark``, with ``default_strategy`` as its defaults entry, extending ``/schema/benchmark/<name>``
    when it has a ``schema``, which :mod:`benchmarks.configuration` stores there)."""
    if spec.name in BENCHMARKS and not replace:
        raise ValueError(f"benchmark {spec.name!r} is already registered; pass replace=True to replace it")
    if spec.known_files:
        from cl_moo.data import add_known_files

        add_known_files(spec.known_files)
    if spec.config is not None:
        from hydra.core.config_store import ConfigStore

        defaults: list = [f"/schema/benchmark/{spec.name}@_here_"] if spec.schema is not None else []
        defaults += [{"override /strategy@_global_.strategy": spec.default_strategy}, "_self_"]
        node = {"defaults": defaults, "name": spec.name, **{k: v for k, v in spec.config.items() if k not in ("defaults", "name")}}
        ConfigStore.instance().store(group="benchmark", name=spec.name, node=node)
    BENCHMARKS[spec.name] = spec
    return spec


def unregister_benchmark(name: str) -> None:
    """Removes a registered benchmark (and its ConfigStore entries: its config, its schema, which would otherwise
    travel with the ConfigStore to a sweep's job processes); its known files stay known."""
    spec = BENCHMARKS.pop(name)
    if spec.config is not None or spec.schema is not None:
        from hydra.core.config_store import ConfigStore

        repo = ConfigStore.instance().repo
        if spec.config is not None:
            repo.get("benchmark", {}).pop(f"{name}.yaml", None)
        if spec.schema is not None:  # benchmarks.configuration stores a shipped schema of this name again
            repo.get("schema", {}).get("benchmark", {}).pop(f"{name}.yaml", None)


def did_you_mean(word: str, options: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_benchmark(name: str, kind: Optional[str] = None) -> Benchmark:
    """The registered benchmark ``name``; an unknown name raises ``KeyError`` listing the registered ones.
    With ``kind`` (one of :data:`KINDS`: the runner asking), a name that is not a registered benchmark of
    that kind raises ``ValueError`` listing those that are."""
    spec = BENCHMARKS.get(name)
    if kind is not None and (spec is None or spec.kind != kind):
        raise ValueError(f"benchmark {name!r} is not a {KIND_NAMES[kind]} benchmark; registered: "
                         f"{', '.join(benchmark_names(kind))}")
    if spec is None:
        raise KeyError(f"benchmark={name} is not registered in benchmarks.data.registry{did_you_mean(name, BENCHMARKS)}; "
                       f"registered: {', '.join(BENCHMARKS)}")
    return spec


def benchmark_names(kind: Optional[str] = None) -> Tuple[str, ...]:
    """The registered names (of one ``kind``), in registration order."""
    return tuple(n for n, b in BENCHMARKS.items() if kind is None or b.kind == kind)


# ----------------------------------------------------------------------------- the built-in benchmarks' loaders

def _pmnist(cfg: "DictConfig") -> Any:
    from benchmarks.data.pmnist import avalanche_permuted_mnist, permuted_mnist

    b = cfg.benchmark
    if b.get("builder", "tensors") == "avalanche":
        return avalanche_permuted_mnist(b.n_tasks, root=cfg.data.root, seed=cfg.seed, verify=cfg.data.verify)
    return permuted_mnist(
        b.n_tasks, root=cfg.data.root, seed=cfg.seed, pad_to=b.pad_to,
        train_per_task=b.train_per_task, test_per_task=b.test_per_task, download=cfg.data.download,
        verify=cfg.data.verify,
    )


def _regression(cfg: "DictConfig") -> Any:
    from benchmarks.data.regression import regression_1d

    b = cfg.benchmark
    return regression_1d(n_train=b.n_train, n_test=b.n_test, noise_std=b.noise_std, seed=cfg.seed)


def _splitmnist(cfg: "DictConfig") -> Any:
    from benchmarks.data.splitmnist import split_mnist

    b = cfg.benchmark
    return split_mnist(root=cfg.data.root, verify=cfg.data.verify, download=cfg.data.download, n_tasks=b.n_tasks,
                       train_per_task=b.train_per_task, test_per_task=b.test_per_task, seed=cfg.seed)


def _check_splitmnist(cfg: "DictConfig") -> None:
    n = cfg.benchmark.n_tasks
    if n > 5:  # an integer >= 1 already (benchmark.n_tasks is checked as a count)
        raise ValueError(f"benchmark.n_tasks={n} is not valid: Split MNIST has 5 tasks (digit pairs 0/1 .. 8/9); "
                         "pass benchmark.n_tasks=<1 to 5>")


MNIST_FILES = tuple(f"MNIST/raw/{s}-{k}" for s in ("train", "t10k") for k in ("images-idx3-ubyte.gz",
                                                                             "labels-idx1-ubyte.gz"))
FASHION_FILES = tuple(f"Fashion{f}" for f in MNIST_FILES)
FAIRNESS_OBJECTIVES = ("BCE", "FP gap", "FN gap")
MULTIMNIST_OBJECTIVES = ("CE top-left", "CE bottom-right")

for _spec in (
    Benchmark("pmnist", "continual", _pmnist, "hnet_cl", metric="accuracy", files=MNIST_FILES,
              description="Permuted MNIST (von Oswald et al. 2020, Sec. 4.2)"),
    Benchmark("regression", "continual", _regression, "hnet_cl", metric="mse",
              description="1D regression sequence (von Oswald et al. 2020, Sec. 4.1)"),
    Benchmark("splitmnist", "continual", _splitmnist, "hnet_cl", metric="accuracy", files=MNIST_FILES,
              check=_check_splitmnist, description="Split MNIST, task-incremental (von Oswald et al. 2020, Sec. 4.3)"),
    *(Benchmark(name, "pareto", "benchmarks.runners.pareto_problems:fairness_problem", "phn_ls",
                objectives=FAIRNESS_OBJECTIVES, files=(file,), description=f"fairness: {file}")
      for name, file in (("adult", "adult.csv"), ("default", "default_credit.csv"), ("bank", "bank-full.csv"))),
    Benchmark("multimnist", "pareto", "benchmarks.runners.pareto_problems:multimnist_problem", "phn_ls",
              objectives=MULTIMNIST_OBJECTIVES, files=MNIST_FILES + FASHION_FILES,
              not_read=("target.hidden", "target.activation"), description="Multi-MNIST family, PHN's LeNet target"),
    Benchmark("multimnist_seq", "continual_pareto", "benchmarks.runners.pareto_problems:multimnist_problem", "phn_cl",
              objectives=MULTIMNIST_OBJECTIVES, files=MNIST_FILES + FASHION_FILES, not_read=("target.activation",),
              description="a sequence of permuted Multi-MNIST tasks, a front each"),
):
    register_benchmark(_spec)
