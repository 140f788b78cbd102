"""The benchmark registry (benchmarks/data/registry.py): the lists, objectives and default strategies derive from
it, Split MNIST runs from the command line, and a benchmark defined in this file (a tiny continual regression
with its own loader and config) is registered and run through the same command line."""
import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf

from benchmarks.configuration.schema import BenchmarkBase, Count, key
from benchmarks.data import registry
from benchmarks.runners.cl_runner import make_benchmark
from benchmarks.configuration.config import (ConfigError, config_dir, families, group_options, load_config, objectives,
                                             run_kind, schema_of)
from benchmarks.data.registry import BENCHMARKS, Benchmark, get_benchmark, register_benchmark, unregister_benchmark
from cl_moo import data
from cl_moo.run import main

SMALL_NETS = ["hnet.hidden=[10]", "target.hidden=[20]", "hnet.emb_dim=4", "hnet.chunk_size=500", "train.batch_size=32",
              "progress=false"]


# ---------------------------------------------------------------- the registry is the one list
def test_every_shipped_benchmark_file_has_an_entry_and_agrees_with_it():
    assert set(group_options("benchmark")) == set(registry.benchmark_names())
    for name in group_options("benchmark"):
        spec = get_benchmark(name)
        content = OmegaConf.to_container(OmegaConf.load(config_dir() / "benchmark" / f"{name}.yaml"))
        assert content["name"] == name
        assert {"override /strategy@_global_.strategy": spec.default_strategy} in content["defaults"]
        assert schema_of("benchmark", name) is not None, name  # it extends a schema (its keys' types and rules)
        assert all(f in data.KNOWN_FILES for f in spec.files), name  # every data file it reads is checked
    assert get_benchmark("regression").metric == "mse" and get_benchmark("splitmnist").classification
    assert objectives() == {n: s.objectives for n, s in BENCHMARKS.items() if s.objectives}
    assert objectives()["adult"] == ("BCE", "FP gap", "FN gap") and "pmnist" not in objectives()
    kinds = {kind: names for kind, names, _ in families()}
    assert kinds == {"continual": ("pmnist", "regression", "splitmnist"),
                     "pareto": ("adult", "default", "bank", "multimnist"), "continual_pareto": ("multimnist_seq",)}


def test_bad_entries_and_unknown_names_are_refused_clearly():
    with pytest.raises(ValueError, match=r"needs metric= one of \['accuracy', 'mse'\]"):
        Benchmark("x", "continual", "m:f", "hnet_cl")
    with pytest.raises(ValueError, match="needs objectives="):
        Benchmark("x", "pareto", "m:f", "phn_ls", objectives=("one",))
    with pytest.raises(ValueError, match="kind='cl' is not one of"):
        Benchmark("x", "cl", "m:f", "hnet_cl", metric="mse")
    with pytest.raises(ValueError, match="'pmnist' is already registered"):
        register_benchmark(get_benchmark("pmnist"))
    with pytest.raises(KeyError, match="did you mean 'splitmnist'"):
        get_benchmark("splitmnst")
    with pytest.raises(ConfigError, match="no entry in benchmarks.data.registry"):
        run_kind("cifar")
    with pytest.raises(ValueError, match="not a continual-learning benchmark; registered: pmnist, regression"):
        make_benchmark(load_config(["benchmark=adult"]))
    # the one lookup with the runner's kind check (make_benchmark's, load_problem's)
    assert get_benchmark("adult", "pareto") is BENCHMARKS["adult"]
    with pytest.raises(ValueError, match="'pmnist' is not a Pareto benchmark; registered: adult, default, bank, multimnist"):
        get_benchmark("pmnist", "pareto")
    with pytest.raises(ValueError, match="'cifar' is not a continual Pareto benchmark; registered: multimnist_seq"):
        get_benchmark("cifar", "continual_pareto")


def test_a_yaml_file_and_its_entry_must_agree_on_the_default_strategy(monkeypatch):
    monkeypatch.setitem(BENCHMARKS, "regression", dataclasses.replace(BENCHMARKS["regression"],
                                                                       default_strategy="finetune"))
    with pytest.raises(ConfigError, match="chooses strategy=hnet_cl but benchmarks.data.registry says finetune"):
        load_config(["benchmark=regression"])
    assert load_config(["benchmark=regression", "strategy=finetune"]).strategy.name == "finetune"


def test_known_files_of_a_registered_benchmark_are_checked_by_the_library(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "KNOWN_FILES", dict(data.KNOWN_FILES))
    (tmp_path / "toy.csv").write_text("a,b\n1,2\n")
    entry = {"sha256": data.sha256(tmp_path / "toy.csv"), "source": "a toy file"}
    spec = register_benchmark(Benchmark("toy_files", "continual", "m:f", "hnet_cl", metric="mse",
                                        files=("toy.csv",), known_files={"toy.csv": entry}))
    monkeypatch.delitem(BENCHMARKS, spec.name)
    assert data.require_file("toy.csv", tmp_path) == tmp_path / "toy.csv"
    (tmp_path / "toy.csv").write_text("a,b\n1,3\n")
    with pytest.raises(data.DataFileError, match="differs from the published one"):
        data.require_file("toy.csv", tmp_path)
    with pytest.raises(ValueError, match="'toy.csv' is already known with other checksums"):
        data.add_known_files({"toy.csv": {"sha256": "0" * 64}})
    data.add_known_files({"toy.csv": entry})  # the same entry again is fine


# ---------------------------------------------------------------- Split MNIST from the command line
def test_splitmnist_runs_from_the_command_line(tmp_path, data_root, monkeypatch, one_thread):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    cfg = load_config(["benchmark=splitmnist"])
    assert cfg.strategy.name == "hnet_cl" and cfg.benchmark.n_tasks == 5
    with pytest.raises(ConfigError, match=r"benchmark.n_tasks=6 is not valid: Split MNIST has 5 tasks"):
        load_config(["benchmark=splitmnist", "benchmark.n_tasks=6"])
    run_dir = tmp_path / "run"
    args = ["benchmark=splitmnist", "benchmark.n_tasks=2", "benchmark.train_per_task=64", "benchmark.test_per_task=40",
            "train.iterations=4", *SMALL_NETS, f"run_dir={run_dir}"]
    assert main(args) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["score"] == "accuracy" and len(m["matrix"]) == 2 and all(len(r) == 2 for r in m["matrix"])
    assert all(0.0 <= v <= 1.0 for v in m["matrix"][-1])
    assert m["params"]["target_weights"] == 784 * 20 + 20 + 20 * 2 + 2  # one 2-way head per task
    assert m["data_note"] is None


# ---------------------------------------------------------------- a benchmark defined here
TOY_CALLS: list = []


def toy_regression(cfg):
    """Two tasks, y = a * x on [-1, 1] with a = 1, -1: a continual regression with its own loader."""
    from benchmarks.data.avalanche_streams import task_benchmark

    TOY_CALLS.append(cfg.benchmark.n_train)
    gen = torch.Generator().manual_seed(cfg.seed)
    train, test = [], []
    for a in (1.0, -1.0):
        x = 2 * torch.rand(cfg.benchmark.n_train, 1, generator=gen) - 1
        xt = torch.linspace(-1, 1, 16).unsqueeze(1)
        train.append((x, a * x))
        test.append((xt, a * xt))
    return task_benchmark(train, test), {"input_size": 1, "output_size": 1, "n_tasks": 2, "fallback": None}


@pytest.fixture
def toy_benchmark():
    spec = register_benchmark(Benchmark(
        "toy_regression", "continual", toy_regression, "hnet_cl", metric="mse",
        config={"n_train": 32,  # training points per task
                "presets": {"small": {"target": {"hidden": [8]}, "hnet": {"chunked": False, "hidden": [8]},
                                      "train": {"iterations": 5, "lr": 1.0e-2}}}}))
    TOY_CALLS.clear()
    yield spec
    unregister_benchmark(spec.name)


def test_a_benchmark_defined_in_a_test_runs_from_the_command_line(toy_benchmark, tmp_path, one_thread):
    cfg = load_config(["benchmark=toy_regression"])
    assert cfg.strategy.name == "hnet_cl" and cfg.train.iterations == 5 and list(cfg.target.hidden) == [8]
    assert "toy_regression" in dict((k, b) for k, b, _ in families())["continual"]
    run_dir = tmp_path / "run"
    assert main(["benchmark=toy_regression", "benchmark.n_train=24", "hnet.emb_dim=2", "progress=false",
                 f"run_dir={run_dir}"]) == 0
    assert TOY_CALLS == [24]  # its loader, with the command line's value
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["score"] == "mse" and len(m["matrix"]) == 2  # a regression: MSE, not accuracy (not by its name)
    assert all(v >= 0 for v in m["matrix"][-1])
    with pytest.raises(ConfigError, match="Unknown configuration key"):
        load_config(["benchmark=toy_regression", "benchmark.n_trian=3"])
    assert main(["benchmark=toy_regression", "strategy=phn_ls"]) == 2  # a Pareto strategy does not apply


def test_an_unregistered_benchmark_is_gone_from_the_command_line(toy_benchmark):
    unregister_benchmark("toy_regression")
    with pytest.raises(ConfigError, match="Could not find 'benchmark/toy_regression'"):
        load_config(["benchmark=toy_regression"])
    register_benchmark(toy_benchmark)  # the fixture unregisters it again


# ---------------------------------------------------------------- a benchmark with its own schema, defined here
@dataclass
class ToyKnobBenchmark(BenchmarkBase):
    """The keys of toy_knob: one shared with the shipped schemas by name, one of its own."""

    n_train: int = key(32, "training points per task", Count())
    my_knob: int = key(3, "a setting only this benchmark has", Count())


def toy_knob_regression(cfg):
    TOY_CALLS.append(("my_knob", cfg.benchmark.my_knob))
    return toy_regression(cfg)


TOY_PRESETS = {"small": {"target": {"hidden": [8]}, "hnet": {"chunked": False, "hidden": [8]},
                         "train": {"iterations": 3, "lr": 1.0e-2}}}


@pytest.fixture
def toy_knob():
    spec = register_benchmark(Benchmark("toy_knob", "continual", toy_knob_regression, "hnet_cl", metric="mse",
                                        schema=ToyKnobBenchmark, config={"presets": TOY_PRESETS}))
    TOY_CALLS.clear()
    yield spec
    unregister_benchmark(spec.name)


def test_a_benchmark_registered_again_after_unregistering_composes_and_shipped_schemas_stay():
    """unregister_benchmark removes the stored schema; registering the same class again stores it again, and a
    benchmark named like a shipped schema (fairness) gives that schema back when it goes."""
    for _ in range(2):
        spec = register_benchmark(Benchmark("toy_knob", "continual", toy_knob_regression, "hnet_cl", metric="mse",
                                            schema=ToyKnobBenchmark, config={"presets": TOY_PRESETS}))
        try:
            assert load_config(["benchmark=toy_knob", "benchmark.my_knob=4"]).benchmark.my_knob == 4
        finally:
            unregister_benchmark(spec.name)
    spec = register_benchmark(Benchmark("fairness", "continual", toy_knob_regression, "hnet_cl", metric="mse",
                                        schema=ToyKnobBenchmark, config={"presets": TOY_PRESETS}))
    unregister_benchmark(spec.name)  # before any load_config: the shipped schema of adult/bank must come back
    assert load_config(["benchmark=adult"]).benchmark.ref_point is not None


def test_a_benchmark_with_its_own_schema_checks_its_own_keys(toy_knob, tmp_path, one_thread):
    """schema= (a BenchmarkBase subclass declared beside the loader) is the benchmark's schema: stored as
    schema/benchmark/toy_knob, it types and checks a key no shipped schema has (my_knob)."""
    from hydra.core.config_store import ConfigStore

    cfg = load_config(["benchmark=toy_knob"])
    assert OmegaConf.get_type(cfg.benchmark) is ToyKnobBenchmark and schema_of("benchmark", "toy_knob") is ToyKnobBenchmark
    assert cfg.benchmark.my_knob == 3 and cfg.benchmark.n_train == 32 and cfg.train.iterations == 3
    assert ConfigStore.instance().repo["schema"]["benchmark"]["toy_knob.yaml"].node is not None
    for value, shown in (("abc", "'abc'"), ("0", "0"), ("1.5", "1.5")):
        with pytest.raises(ConfigError) as exc:
            load_config(["benchmark=toy_knob", f"benchmark.my_knob={value}"])
        assert str(exc.value).startswith(f"benchmark.my_knob={shown} is not valid: must be an integer >= 1"), exc.value
    with pytest.raises(ConfigError, match=r"Unknown configuration key \(did you mean 'benchmark.my_knob'\?\) for "
                                          r"benchmark=toy_knob. Its keys: benchmark.my_knob, benchmark.n_train"):
        load_config(["benchmark=toy_knob", "benchmark.my_knb=2"])
    run_dir = tmp_path / "run"
    assert main(["benchmark=toy_knob", "benchmark.my_knob=5", "benchmark.n_train=16", "hnet.emb_dim=2",
                 "progress=false", f"run_dir={run_dir}"]) == 0
    assert TOY_CALLS == [("my_knob", 5), 16]  # its loader, with the command line's values
    assert len(json.loads((run_dir / "metrics.json").read_text())["matrix"]) == 2


def test_a_yaml_file_extends_the_schema_of_its_entry(tmp_path, monkeypatch):
    """A shipped file names the schema= of its registry entry as /schema/benchmark/<name>; an entry in
    benchmarks/data/registry.py names it as "module:Class" (imported on first use, like a loader)."""
    import shutil

    from benchmarks.configuration import config

    shutil.copytree(config_dir(), tmp_path / "configs")
    (tmp_path / "configs" / "benchmark" / "toy_knob_file.yaml").write_text(
        "defaults:\n  - /schema/benchmark/toy_knob_file@_here_\n  - override /strategy@_global_.strategy: hnet_cl\n"
        "  - _self_\nname: toy_knob_file\nmy_knob: 7\npresets:\n  small: {train: {iterations: 2}}\n")
    monkeypatch.setattr(config, "config_dir", lambda: tmp_path / "configs")
    spec = register_benchmark(Benchmark("toy_knob_file", "continual", toy_knob_regression, "hnet_cl", metric="mse",
                                        schema=f"{ToyKnobBenchmark.__module__}:ToyKnobBenchmark"))
    try:
        cfg = load_config(["benchmark=toy_knob_file"])
        assert OmegaConf.get_type(cfg.benchmark) is ToyKnobBenchmark and cfg.benchmark.my_knob == 7
        assert schema_of("benchmark", "toy_knob_file") is ToyKnobBenchmark
        with pytest.raises(ConfigError, match=r"benchmark.my_knob=0 is not valid: must be an integer >= 1"):
            load_config(["benchmark=toy_knob_file", "benchmark.my_knob=0"])
    finally:
        unregister_benchmark(spec.name)
    from hydra.core.config_store import ConfigStore

    # gone with its entry: the ConfigStore travels (pickled) to a sweep's job processes, which cannot import this file
    assert "toy_knob_file.yaml" not in ConfigStore.instance().repo["schema"]["benchmark"]


def test_a_schema_that_is_not_a_benchmark_schema_is_refused():
    with pytest.raises(ValueError, match="schema= must be a dataclass"):
        Benchmark("x", "continual", "m:f", "hnet_cl", metric="mse", schema=dict)
    with pytest.raises(ValueError, match="schema= must be a dataclass"):
        Benchmark("x", "continual", "m:f", "hnet_cl", metric="mse", schema="no colon")

    @dataclass
    class NotABenchmark:
        my_knob: int = 3

    spec = register_benchmark(Benchmark("toy_bad_schema", "continual", "m:f", "hnet_cl", metric="mse",
                                        schema=NotABenchmark, config={"presets": TOY_PRESETS}))
    try:
        with pytest.raises(ConfigError, match="benchmark=toy_bad_schema: its schema= .* is not a subclass of "
                                              "benchmarks.configuration.schema.BenchmarkBase"):
            load_config(["benchmark=regression"])
    finally:
        unregister_benchmark(spec.name)
