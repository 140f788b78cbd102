"""The command line behaves as a Hydra app: --help, --cfg, --info, did-you-mean, exit code 2 for
every usage error, each benchmark's own default strategy, and config errors before torch loads."""
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.command_line.cli import main
from benchmarks.configuration.config import ConfigError, choices, load_config
from benchmarks.configuration.schema import RegistryChoice, declared, rule_of

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cl_moo.run", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_help_lists_benchmarks_strategies_and_keys_with_this_runs_values(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("benchmark=pmnist", "benchmark=multimnist_seq", "strategy=phn_epo", "strategy=finetune", "--cfg",
                 "--info", "-m, --multirun"):
        assert name in out
    assert "train.lr=0.0003" in out  # the pmnist small preset's value, not config.yaml's 1e-4
    assert "hnet.init=hyperfan_in" in out and "hyperfan_in | hyperfan_out" in out  # value and its comment
    assert main(["benchmark=adult", "--help"]) == 0
    out = capsys.readouterr().out
    assert "strategy.name=phn_ls" in out and "benchmark.ref_point=[1.0,1.0,1.0]" in out and "train.lr=0.001" in out


def test_cfg_job_prints_the_composed_config_and_runs_nothing(capsys, tmp_path):
    assert main(["benchmark=regression", "seed=3", f"run_dir={tmp_path / 'r'}", "--cfg", "job"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 3 and printed["benchmark"]["name"] == "regression"
    assert printed["strategy"]["beta"] == 0.05  # the regression small preset's value
    assert not (tmp_path / "r").exists()
    assert main(["--cfg", "job", "-p", "hnet"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["init"] == "hyperfan_in"
    assert main(["--cfg", "hydra", "-p", "hydra.job.chdir"]) == 0
    assert "chdir" in capsys.readouterr().out
    assert main(["--cfg", "all"]) == 0
    both = yaml.safe_load(capsys.readouterr().out)
    assert "hydra" in both and both["seed"] == 0
    assert main(["--cfg", "job", "-p", "hnt"]) == 2
    assert "did you mean 'hnet'?" in capsys.readouterr().err
    assert main(["--cfg", "jbo"]) == 2
    assert "did you mean 'job'?" in capsys.readouterr().err


def test_info_names_the_defaults_and_where_the_strategy_came_from(capsys):
    assert main(["benchmark=multimnist_seq", "--info", "defaults"]) == 0
    out = capsys.readouterr().out
    assert "strategy: phn_cl  (benchmark default)" in out and "benchmark: multimnist_seq  (command line)" in out
    assert main(["--info"]) == 0
    out = capsys.readouterr().out
    assert "Config search path" in out and "hydra/launcher=cl_moo_joblib" in out and "Config:" in out


@pytest.mark.parametrize("benchmark,strategy", [("adult", "phn_ls"), ("bank", "phn_ls"), ("default", "phn_ls"),
                                                ("multimnist", "phn_ls"), ("multimnist_seq", "phn_cl"),
                                                ("pmnist", "hnet_cl"), ("regression", "hnet_cl")])
def test_each_benchmark_chooses_its_default_strategy(benchmark, strategy):
    assert load_config([f"benchmark={benchmark}"]).strategy.name == strategy
    if strategy == "phn_ls":  # a named strategy still wins
        assert load_config([f"benchmark={benchmark}", "strategy=phn_epo"]).strategy.name == "phn_epo"


@pytest.mark.parametrize("override,hint", [
    ("train.lrr=0.1", "did you mean 'train.lr'?"),
    ("hnett.mip=true", "did you mean 'hnet.mip'?"),
    ("benchmark.n_taks=3", "did you mean 'benchmark.n_tasks'?"),
    ("benchmark=pmist", "did you mean 'pmnist'?"),
    ("strategy=phn_lss", "did you mean 'phn_ls'?"),
    ("hnet.init=hyperfan", "did you mean 'hyperfan_in'?"),
    ("preset=smal", "did you mean 'small'?"),
])
def test_a_misspelled_key_or_choice_gets_a_did_you_mean(override, hint, capsys):
    assert main([override]) == 2
    assert hint in capsys.readouterr().err


def test_a_misspelled_group_key_is_matched_against_the_benchmarks_own_strategy(capsys):
    assert main(["benchmark=adult", "strategy.solvr=ls"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'strategy.solver'?" in err and "strategy=phn_ls" in err


def test_unknown_flags_are_usage_errors(capsys):
    assert main(["--fo"]) == 2
    assert "unknown flag '--fo'" in capsys.readouterr().err
    assert main(["-p", "hnet"]) == 2
    assert "add --cfg job" in capsys.readouterr().err


def test_device_cuda_without_a_gpu_is_a_usage_error_before_any_folder(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: device=cuda is valid here")
    assert main(["benchmark=regression", f"run_dir={tmp_path / 'r'}", "device=cuda"]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_registry_choices_list_exactly_the_built_in_registries():
    import importlib

    keys = {**declared(), **declared("strategy"), **declared("benchmark")}
    rules = {k: rule_of(f) for k, f in keys.items() if isinstance(rule_of(f), RegistryChoice)}
    assert {"hnet.init", "hnet.activation", "target.activation", "hnet.generator", "strategy.solver",
            "strategy.start"} <= set(rules)
    for key, rule in rules.items():
        live = tuple(a for a in getattr(importlib.import_module(rule.module), rule.name) if a not in rule.exclude)
        assert rule.values == live, key


def test_a_registered_solver_is_a_valid_choice_once_the_registry_is_loaded(monkeypatch):
    from strategies import solvers

    monkeypatch.setitem(solvers.SOLVERS, "my_solver", solvers.SOLVERS["ls"])
    assert "my_solver" in choices("strategy.solver")
    assert load_config(["benchmark=adult", "strategy.solver=my_solver"]).strategy.solver == "my_solver"
    with pytest.raises(ConfigError, match="did you mean 'my_solver'"):
        load_config(["benchmark=adult", "strategy.solver=my_solvr"])


def test_config_errors_come_before_torch_is_imported():
    probe = ("import sys, time; t = time.perf_counter(); from cl_moo.run import main; code = main(['train.lrr=1']); "
             "print(code, 'torch' in sys.modules, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    code, torch_loaded, seconds = out.stdout.split()
    assert code == "2" and torch_loaded == "False", out
    assert float(seconds) < 3.0  # about 0.5 s here; generous for a loaded CI machine


def test_the_command_line_exits_2_with_one_line_for_a_bad_key():
    start = time.perf_counter()
    done = cli("benchmark=adult", "train.lrr=1")
    assert done.returncode == 2 and "did you mean 'train.lr'?" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - start < 10.0


def test_a_value_the_shell_split_at_a_space_gets_the_quoted_spelling(capsys):
    assert main(["run_dir=/tmp/my", "runs"]) == 2
    assert "quote the whole value: \"run_dir='/tmp/my runs'\"" in capsys.readouterr().err


def test_lazy_packages_declare_every_export_for_type_checkers():
    import ast

    for package in ("cl_moo", "strategies"):
        tree = ast.parse((ROOT / package / "__init__.py").read_text())
        exports = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign | ast.Assign)
                       and "_EXPORTS" in ast.unparse(n.targets[0] if isinstance(n, ast.Assign) else n.target))
        lazy = {k.value: v.value for k, v in zip(exports.keys, exports.values)}
        block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
        static = {a.name: imp.module for imp in block.body for a in imp.names}
        assert static == lazy, package


def test_flag_forms_and_sweep_values_without_multirun(capsys, tmp_path):
    assert main(["--cfg=job", "--package=seed"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"seed": 0}
    assert main(["--resolve"]) == 2  # not a training run
    assert "add --cfg job" in capsys.readouterr().err
    assert main(["seed=0,1", f"run_dir={tmp_path / 'r'}"]) == 2
    assert "add -m" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_sweep_with_device_cuda_without_a_gpu_is_refused_before_any_folder(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    sweep_dir = tmp_path / "sweep"
    assert main(["-m", "benchmark=regression", "seed=0,1", "device=cuda", f"hydra.sweep.dir={sweep_dir}"]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err and not sweep_dir.exists()
