"""The configuration schema (benchmarks/configuration/schema.py): every key is declared once, as a dataclass field
with its type, default, doc and value rule; the YAML files extend the schemas in Hydra's ConfigStore; the generic
check reads the rules and each schema's __post_init__ holds its cross-field rules."""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, List

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from benchmarks.command_line.cli_flags import key_comments
from benchmarks.configuration import schema
from benchmarks.configuration.config import (
    ConfigError,
    config_dir,
    flatten_keys,
    group_options,
    load_config,
    open_dicts,
    schema_of,
)
from benchmarks.configuration.schema import (
    SCHEMAS,
    Count,
    FairnessBenchmark,
    HnetConfig,
    PhnCLStrategy,
    RuleViolation,
    RunConfig,
    Section,
    SolverStrategy,
    declared,
    key,
    rule_of,
    schema_fields,
)
from benchmarks.data.registry import Benchmark, register_benchmark, unregister_benchmark

ALL_SCHEMAS = [RunConfig] + [s for schemas in SCHEMAS.values() for s in schemas.values()]
UNCHECKED = {"name", "presets", "strategy", "benchmark"}  # the file's name; free dicts; the groups


def _file_keys(group: str, option: str) -> List[str]:
    content = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{option}.yaml"))
    return [k for k in flatten_keys(content, keep_empty=True) if not k.startswith(("defaults", "presets"))]


@pytest.mark.parametrize("group", ["benchmark", "strategy"])
def test_every_key_of_every_shipped_file_is_declared_in_the_schema_it_extends(group):
    for option in group_options(group):
        extended = schema_of(group, option)
        assert extended is not None, f"configs/{group}/{option}.yaml extends no schema"
        names = {name for name, _ in schema_fields(extended)}
        undeclared = [k for k in _file_keys(group, option) if k not in names]
        assert undeclared == [], f"{group}/{option}.yaml: {undeclared}"
    # config.yaml only composes: every top-level key is the schema's
    top = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"))
    assert set(top) == {"defaults"} and top["defaults"][0] == "/schema/run@_here_"


def test_every_preset_key_is_a_declared_key():
    keys = set(declared()) | {k for g in ("benchmark", "strategy") for k in declared(g)}
    for option in group_options("benchmark"):
        presets = OmegaConf.to_container(OmegaConf.load(config_dir() / "benchmark" / f"{option}.yaml"))["presets"]
        for name, preset in presets.items():
            unknown = [k for k in flatten_keys(preset) if k not in keys]
            assert unknown == [], f"benchmark/{option}.yaml preset {name}: {unknown}"


def test_every_field_has_a_doc_and_every_checked_field_a_rule():
    for cls in ALL_SCHEMAS:
        for name, f in schema_fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{name} has no doc"
            if name.rsplit(".", 1)[-1] not in UNCHECKED:
                assert rule_of(f) is not None, f"{cls.__name__}.{name} has no rule"


def test_the_schemas_are_in_the_config_store_and_the_composed_config_is_typed():
    repo = ConfigStore.instance().repo["schema"]
    assert "run.yaml" in repo and "phn_cl.yaml" in repo["strategy"] and "pmnist.yaml" in repo["benchmark"]
    cfg = load_config(["benchmark=multimnist_seq"])
    assert OmegaConf.get_type(cfg) is RunConfig and OmegaConf.get_type(cfg.hnet) is HnetConfig
    assert OmegaConf.get_type(cfg.strategy) is PhnCLStrategy
    assert OmegaConf.get_type(load_config(["benchmark=adult"]).benchmark) is FairnessBenchmark
    # a value the file does not set is the schema's default
    assert cfg.strategy.reg_rays == next(f.default for f in dataclasses.fields(PhnCLStrategy) if f.name == "reg_rays")
    assert open_dicts() == ("strategy.solver_options",)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=0", "train.batch_size=0 is not valid: must be an integer >= 1"),
        (
            "hnet.chunk_size=abc",
            "hnet.chunk_size='abc' is not valid: must be an integer >= 1",
        ),  # OmegaConf's type error
        ("train.lr=abc", "train.lr='abc' is not valid: must be a finite number > 0"),
        ("hnet.mip=1", "hnet.mip=1 must be true or false"),  # OmegaConf would read 1 as true
        ("hnet.mip=yes", "hnet.mip='yes' must be true or false"),
        ("data.verify=maybe", "data.verify='maybe' must be true or false"),
        ("device=gpu", "choose one of ['auto', 'cpu', 'cuda']"),
        ("seed=4294967296", "seed=4294967296 is not valid: must be an integer from 0 to 4294967295"),
        (
            "train.budget_s=0",
            "train.budget_s=0 is not valid: must be a finite number of seconds > 0, or null (no budget)",
        ),
        ("benchmark.pad_to=27", "benchmark.pad_to=27 is not valid: must be an integer >= 28 (the MNIST image side)"),
    ],
)
def test_a_value_its_schema_rule_refuses_is_named_with_the_range(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(["benchmark=pmnist", override])
    assert message in str(exc.value)


def test_the_generic_check_reads_the_rule_of_any_section():
    @dataclass
    class Toy(Section):
        PREFIX: ClassVar[str] = "toy."
        width: int = key(3, "a width", Count(minimum=2))

    assert Toy(width=2).width == 2
    with pytest.raises(RuleViolation, match=r"toy.width=1 is not valid: must be an integer >= 2") as exc:
        Toy(width=1)
    assert exc.value.key == "toy.width" and exc.value.render is not None


def test_cross_field_rules_live_in_post_init():
    with pytest.raises(ConfigError, match="strategy.solver=hvi .* needs strategy.rays_per_step >= 2 .now 1."):
        SolverStrategy(name="phn_ls", solver="hvi", rays_per_step=1)
    assert SolverStrategy(name="phn_ls", solver="hvi", rays_per_step=2).rays_per_step == 2
    with pytest.raises(ConfigError, match="hnet.mip=true.*pass strategy.start=random"):
        RunConfig(strategy=PhnCLStrategy(name="phn_cl", start="phn"), hnet=HnetConfig(mip=True))
    with pytest.raises(ConfigError, match=r"benchmark.ref_point=\[1.0, 1.0\] is not valid: must be a list of 3"):
        FairnessBenchmark(name="adult", ref_point=[1.0, 1.0])
    # and through the command line, with the value as written
    with pytest.raises(ConfigError, match=r"benchmark.ref_point=\[1, 0, 1\] is not valid: every coordinate"):
        load_config(["benchmark=adult", "benchmark.ref_point=[1,0,1]"])


def test_help_and_reference_read_docs_and_allowed_values_from_the_schema():
    lr = next(f for f in dataclasses.fields(schema.TrainConfig) if f.name == "lr")
    comments = key_comments()
    assert comments["train.lr"].startswith(lr.metadata["doc"]) and "[finite number > 0]" in comments["train.lr"]
    assert "ls | epo | tch | stch | hvi" in comments["strategy/phn_ls:solver"]
    assert "given (CL1" in comments["strategy/hnet_cl:task_inference"]


def test_a_schema_less_registered_benchmark_gets_the_shipped_rules_by_key_name():
    spec = register_benchmark(
        Benchmark(
            "toy_schema_less",
            "continual",
            "m:f",
            "hnet_cl",
            metric="mse",
            config={"n_train": 8, "presets": {"small": {"train": {"iterations": 2}}, "bad": {"hnet": {"colour": 1}}}},
        )
    )
    try:
        assert load_config(["benchmark=toy_schema_less"]).train.iterations == 2
        with pytest.raises(ConfigError, match="benchmark.n_train=0 is not valid: must be an integer >= 1"):
            load_config(["benchmark=toy_schema_less", "benchmark.n_train=0"])
        with pytest.raises(ConfigError, match="preset=bad of benchmark=toy_schema_less sets hnet.colour, which is not"):
            load_config(["benchmark=toy_schema_less", "preset=bad"])
    finally:
        unregister_benchmark(spec.name)


def test_an_undeclared_key_in_a_file_is_refused(tmp_path, monkeypatch):
    import shutil

    from benchmarks.configuration import config

    shutil.copytree(config_dir(), tmp_path / "configs")
    path = tmp_path / "configs" / "strategy" / "hnet_cl.yaml"
    path.write_text(path.read_text() + "colour: red\n")
    monkeypatch.setattr(config, "config_dir", lambda: tmp_path / "configs")
    with pytest.raises(
        ConfigError,
        match=r"configs/strategy/hnet_cl.yaml sets strategy.colour, which its schema "
        r"HnetStrategy .* does not declare; its keys: strategy.beta, ",
    ):
        load_config(["benchmark=pmnist"])
    path.write_text(path.read_text().replace("colour: red\n", "beta: strong\n"))
    with pytest.raises(
        ConfigError,
        match=r"configs/strategy/hnet_cl.yaml: strategy.beta='strong' is not valid: must "
        r"be a finite number >= 0",
    ):
        load_config(["benchmark=pmnist"])


ADULT_REF_POINT = (
    "is not valid: must be a list of 3 finite numbers, one per objective of benchmark=adult (BCE, FP gap, FN gap)"
)


@pytest.mark.parametrize(
    "override, shown",
    [("benchmark.ref_point=[1,1,abc]", "[1, 1, 'abc']"), ("benchmark.ref_point=1", "1"),
     ("benchmark.ref_point=null", "None")],
)
def test_a_ref_point_its_type_refuses_gets_the_benchmarks_own_message(override, shown):
    """OmegaConf's type errors on benchmark.ref_point are reported as the benchmark's check words them (the
    objectives named), not by the schema's generic description."""
    with pytest.raises(ConfigError) as exc:
        load_config(["benchmark=adult", override])
    assert str(exc.value).startswith(f"benchmark.ref_point={shown} {ADULT_REF_POINT}")


@pytest.mark.parametrize("benchmark, presets", [("pmnist", "['paper', 'small', 'small_target']"),
                                                ("adult", "['paper', 'small']")])
def test_preset_null_lists_the_presets_of_the_benchmark(benchmark, presets):
    with pytest.raises(ConfigError) as exc:
        load_config([f"benchmark={benchmark}", "preset=null"])
    assert str(exc.value) == f"preset=None is not defined for benchmark={benchmark}; valid presets: {presets}"


@pytest.mark.parametrize("override", ["seed='3'", "train.iterations='5'", "train.lr='0.1'", "train.budget_s='60'",
                                      "strategy.beta='0'"])
def test_a_quoted_number_is_refused_naming_the_key(override):
    """OmegaConf converts the string '3' to 3 silently; a number key refuses a string as written."""
    key, value = override.split("=", 1)
    with pytest.raises(ConfigError) as exc:
        load_config(["benchmark=regression", override])
    assert str(exc.value) == (f"{key}={value} is a string (quoted, or not written as a plain number), not a number; "
                              f"pass a number without quotes: {key}={value.strip(chr(39))}")
    assert load_config(["benchmark=regression", f"{key}={value.strip(chr(39))}"])  # unquoted: accepted


@pytest.mark.parametrize(
    "override, message",
    [("+foo=1", "'+foo=1' adds foo, which is not a configuration key; the keys: data.download,"),
     ("+train.foo=2", "'+train.foo=2' adds train.foo, which is not a configuration key (did you mean 'train.lr'?)"),
     ("++train.foo=2", "'++train.foo=2' adds train.foo, which is not a configuration key"),
     ("+strategy.bta=1", "'+strategy.bta=1' adds strategy.bta, which is not a configuration key for strategy=hnet_cl "
                         "(did you mean 'strategy.beta'?); its keys: strategy.beta,"),
     ("+benchmark.n_taks=3", "for benchmark=pmnist (did you mean 'benchmark.n_tasks'?)")],
)
def test_a_plus_override_of_an_undeclared_key_is_refused(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(["benchmark=pmnist", override])
    assert message in str(exc.value) and "A + override cannot add a key the schema does not declare" in str(exc.value)


def test_a_plus_override_of_a_declared_key_or_a_free_option_is_accepted():
    assert load_config(["benchmark=pmnist", "++seed=3"]).seed == 3
    cfg = load_config(["benchmark=adult", "strategy=phn_ls", "strategy.solver=stch", "+strategy.solver_options.mu=0.5"])
    assert cfg.strategy.solver_options.mu == 0.5


def test_a_preset_key_no_strategy_declares_is_refused_and_another_strategys_key_skipped():
    """A preset serves every strategy of its benchmark: a strategy.* key that some strategy declares is skipped when
    the chosen one lacks it (strategy.alpha under hnet_cl), but a key no strategy declares is a typo, refused."""
    spec = register_benchmark(
        Benchmark(
            "toy_preset_keys",
            "continual",
            "m:f",
            "hnet_cl",
            metric="mse",
            config={"n_train": 8, "presets": {"small": {"strategy": {"beta": 0.1, "alpha": 0.5,
                                                                   "solver_options": {"mu": 0.5}}},
                                              "typo": {"strategy": {"bta": 0.1}}}},
        )
    )
    try:
        assert load_config(["benchmark=toy_preset_keys"]).strategy.beta == 0.1  # alpha: phn strategies' key
        with pytest.raises(ConfigError) as exc:
            load_config(["benchmark=toy_preset_keys", "preset=typo"])
        assert str(exc.value).startswith(
            "preset=typo of benchmark=toy_preset_keys sets strategy.bta, which no strategy declares "
            "(did you mean 'strategy.beta'?); fix benchmark.presets")
    finally:
        unregister_benchmark(spec.name)
    # a free option of a dict the chosen strategy has is set (then checked against the solver)
    from benchmarks.configuration.config import _apply_preset

    cfg = load_config(["benchmark=adult", "strategy=phn_ls", "strategy.solver=stch"])
    _apply_preset(cfg, {"strategy": {"solver_options": {"mu": 0.3}}}, ["benchmark", "strategy", "strategy.solver"], [])
    assert cfg.strategy.solver_options == {"mu": 0.3}


def test_an_interpolation_of_a_number_key_is_resolved_not_refused_as_a_string(monkeypatch):
    """${oc.env:...} is written as a string but resolves to a number: not the quoted-number refusal."""
    monkeypatch.setenv("CL_MOO_TEST_SEED", "5")
    cfg = load_config(["benchmark=regression", "seed=${oc.env:CL_MOO_TEST_SEED,3}"])
    assert cfg.seed == 5
