"""Registries with options: a solver and a generator defined here, registered, and chosen and configured
through the Python API and the command line (``strategy.solver_options.<option>=``, ``hnet.generator=``)."""
import json

import pytest
import torch
from torch import nn

from benchmarks.runners.composition import build_phn_from_config, hypernetwork_options, make_target
from benchmarks.configuration.config import ConfigError, load_config, resume_changes
from benchmarks.data.fairness import FAIRNESS_LOSSES
from cl_moo import HypernetworkOptions, builder
from cl_moo.mlp_hypernetwork import MLPHypernetwork
from cl_moo.run import main
from strategies import solvers
from strategies.phn import ParetoHypernetworkStrategy
from strategies.solvers import SmoothChebyshev, Solver, make_solver, solver_options

# tiny adult runs (a few hundred rows, one epoch, small networks)
TINY = ["benchmark=adult", "strategy=phn_ls", "hnet.hidden=[6,5]", "target.hidden=[7]", "benchmark.max_rows=600",
        "train.epochs=1", "benchmark.n_eval_rays=3", "progress=false"]


class ScaledLS(Solver):
    """Linear scalarization times a constant ``scale`` (an option); counts its steps."""

    made: list = []

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = float(scale)
        self.steps = 0
        ScaledLS.made.append(self)

    def get_weighted_loss(self, losses, rays, weights):
        self.steps += 1
        return self.scale * (rays.to(losses.dtype) * losses).sum(dim=1).mean()


class CountingMLP(MLPHypernetwork):
    """The MLP generator under another name; counts how often it is built."""

    built = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        CountingMLP.built += 1


@pytest.fixture
def scaled_ls(monkeypatch):
    monkeypatch.setitem(solvers.SOLVERS, "scaled_ls", ScaledLS)
    monkeypatch.setattr(ScaledLS, "made", [])
    return ScaledLS


@pytest.fixture
def counting_mlp(monkeypatch):
    monkeypatch.setitem(builder.GENERATORS, "counting_mlp", CountingMLP)
    monkeypatch.setattr(CountingMLP, "built", 0)
    return CountingMLP


# ---------------------------------------------------------------- solvers: Python API
def test_make_solver_passes_options_and_refuses_unknown_ones_naming_the_accepted(scaled_ls):
    assert solver_options("scaled_ls") == ("scale",)
    assert make_solver("scaled_ls", scale=2.5).scale == 2.5
    assert make_solver("scaled_ls").scale == 1.0
    with pytest.raises(TypeError, match=r"solver 'scaled_ls' \(ScaledLS\) has no option 'scael' "
                                        r"\(did you mean 'scale'\?\); its options: scale"):
        make_solver("scaled_ls", scael=2.0)
    with pytest.raises(TypeError, match="its options: none"):
        make_solver("ls", mu=0.5)
    built = make_solver("stch", mu=0.5, ideal=[-1.0, -1.0])
    assert isinstance(built, SmoothChebyshev) and built.mu == 0.5 and built.ideal == (-1.0, -1.0)
    assert solver_options("hvi") == ("ref", "lam", "normalize")
    with pytest.raises(TypeError, match="apply to a solver chosen by name"):
        make_solver(ScaledLS(), scale=2.0)


def test_the_strategy_takes_solver_options_and_keeps_solver_instances(scaled_ls):
    def strategy(**kwargs):
        return ParetoHypernetworkStrategy(target=nn.Linear(2, 1), losses=[lambda o, y: o.mean()] * 2,
                                          hnet_options=HypernetworkOptions(hidden=(4,)), seed=0, **kwargs)

    assert strategy(solver="scaled_ls", solver_options={"scale": 3.0}).solver.scale == 3.0
    assert strategy(solver="stch", solver_options={"mu": 0.25}).solver.mu == 0.25
    mine = ScaledLS(scale=4.0)
    assert strategy(solver=mine).solver is mine
    with pytest.raises(TypeError, match="no option 'mu'"):
        strategy(solver="scaled_ls", solver_options={"mu": 0.5})


# ---------------------------------------------------------------- solvers: configuration and command line
def test_solver_options_on_the_command_line_reach_the_registered_solver(scaled_ls, tmp_path, data_root,
                                                                       monkeypatch, one_thread):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    out = tmp_path / "run"
    assert main(TINY + ["strategy.solver=scaled_ls", "strategy.solver_options.scale=3.0", f"run_dir={out}"]) == 0
    trained = [s for s in ScaledLS.made if s.steps > 0]
    assert len(trained) == 1 and trained[0].scale == 3.0
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["strategy"]["solver"] == "scaled_ls"
    assert config["strategy"]["solver_options"] == {"scale": 3.0}


def test_a_wrong_solver_option_is_a_usage_error_before_any_run_folder(scaled_ls, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["strategy.solver=scaled_ls", "strategy.solver_options.scael=3.0", f"run_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "solver 'scaled_ls' (ScaledLS) has no option 'scael' (did you mean 'scale'?); its options: scale" in err
    assert "strategy.solver_options.<option>=<value>" in err
    assert not out.exists()
    assert main(TINY + ["strategy.solver=stch", "strategy.solver_options.mu=-1", f"run_dir={out}"]) == 2
    assert "mu must be a finite number > 0" in capsys.readouterr().err
    assert main(["benchmark=pmnist", "strategy.solver_options.mu=0.5"]) == 2  # hnet_cl has no solver
    assert "strategy=hnet_cl has no strategy.solver_options" in capsys.readouterr().err
    assert not out.exists()


def test_solver_options_config_forms():
    cfg = load_config(["benchmark=adult", "strategy=phn_ls", "strategy.solver=hvi",
                       "strategy.solver_options={ref:[2,2,2],lam:1.0}"])
    assert dict(cfg.strategy.solver_options) == {"ref": [2, 2, 2], "lam": 1.0}
    assert load_config(["benchmark=adult", "strategy=phn_ls"]).strategy.solver_options == {}
    with pytest.raises(ConfigError, match="solver 'epo' .EPO. has no option 'mu'; its options: eps"):
        load_config(["benchmark=adult", "strategy=phn_epo", "strategy.solver_options.mu=0.1"])


# ---------------------------------------------------------------- generators
def _build(overrides):
    torch.manual_seed(0)
    cfg = load_config(overrides)
    return build_phn_from_config(cfg, make_target(cfg, 10, 1), FAIRNESS_LOSSES, torch.device("cpu")).hnet


BASE = ["benchmark=adult", "strategy=phn_ls", "hnet.hidden=[6,5]", "target.hidden=[7]", "hnet.chunk_size=300",
        "hnet.chunk_emb_dim=3"]


def test_hnet_generator_names_give_the_models_of_hnet_chunked():
    for chunked, name in (("true", "chunked"), ("false", "mlp")):
        by_flag = _build(BASE + [f"hnet.chunked={chunked}"])
        by_name = _build(BASE + [f"hnet.generator={name}"])
        assert by_flag.build_options == by_name.build_options and by_name.build_options["generator"] == name
        assert all(torch.equal(a, b) for a, b in zip(by_flag.state_dict().values(), by_name.state_dict().values()))


def test_hnet_generator_null_keeps_the_rule_of_hnet_chunked():
    base = BASE
    for chunked, generator, size in (("true", "chunked", 300), ("false", "mlp", None)):
        options = hypernetwork_options(load_config(base + [f"hnet.chunked={chunked}"]))
        # the rule's generator is named, so no strategy's own default generator applies
        assert isinstance(options, HypernetworkOptions)
        assert options.generator == generator and options.chunk_size == size
    assert hypernetwork_options(load_config(base + ["hnet.generator=chunked"])).chunk_size == 300  # adult: unchunked
    assert hypernetwork_options(load_config(base + ["hnet.generator=mlp"])).chunk_size is None
    with pytest.raises(ConfigError, match="hnet.generator=mlp and hnet.chunked=true disagree"):
        load_config(base + ["hnet.chunked=true", "hnet.generator=mlp"])
    # a run recorded before hnet.generator existed: absent means null (resume and report accept it)
    assert resume_changes({"hnet": {"chunked": True}}, {"hnet": {"chunked": True, "generator": None}}) == []
    assert resume_changes({"hnet": {"chunked": True}}, {"hnet": {"chunked": True, "generator": "mlp"}}) != []


def test_a_registered_generator_is_chosen_with_hnet_generator(counting_mlp, tmp_path, data_root, monkeypatch,
                                                               one_thread):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    out = tmp_path / "run"
    assert main(TINY + ["hnet.generator=counting_mlp", f"run_dir={out}"]) == 0
    assert CountingMLP.built == 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["hnet"]["generator"] == "counting_mlp"
    assert m["built"]["hnet"]["generator"] == "counting_mlp" and m["built"]["hnet"]["chunk_size"] is None


def test_an_unknown_generator_is_refused_with_the_registered_names(counting_mlp, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["benchmark=adult", "hnet.generator=counting_mpl", f"run_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "hnet.generator='counting_mpl' is not valid (did you mean 'counting_mlp'?)" in err
    assert "['mlp', 'chunked', 'counting_mlp']" in err
    assert not out.exists()
