"""The layer rule, the composition root and the head contract (issue: one layered core)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks.runners.composition import build_cl_model_from_config, build_phn_from_config, make_target
from benchmarks.configuration.config import ConfigError, load_config
from benchmarks.data.fairness import FAIRNESS_LOSSES
from cl_moo import HeadPiece, Hypernetwork, init_hypernetwork
from cl_moo.hypernetwork import mlp
from cl_moo.run import main
from cl_moo.target import FunctionalTarget
from strategies import OutputRegularizer, lookahead_delta

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_importing_the_library_loads_no_framework():
    code = ("import sys, cl_moo; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('avalanche', 'omegaconf', 'hydra', 'matplotlib', 'benchmarks', 'strategies')]; print(bad); assert not bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_users_own_benchmarks_folder_does_not_shadow_ours(tmp_path):
    for name in ("benchmarks", "strategies", "configs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise RuntimeError('the user\\'s own {name} was imported')\n")
    done = subprocess.run([sys.executable, "-m", "cl_moo.run", "benchmark=pmnist", "hnet.colour=red"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "hnet.colour" in done.stderr and "user's own" not in done.stderr


# ---------------------------------------------------------------- one builder, config = model
CL_BASE = ["benchmark=pmnist", "hnet.hidden=[6,5]", "target.hidden=[7]", "hnet.chunk_size=300", "hnet.emb_dim=4",
           "hnet.chunk_emb_dim=3"]
PARETO_BASE = ["benchmark=adult", "strategy=phn_ls", "hnet.hidden=[6,5]", "target.hidden=[7]", "hnet.chunk_size=300",
               "hnet.chunk_emb_dim=3", "hnet.chunked=true"]
CHANGES = ["hnet.chunked=false", "hnet.chunk_size=250", "hnet.chunk_emb_dim=5", "hnet.hidden=[6,4]",
           "hnet.activation=tanh", "hnet.last_activation=false", "hnet.mip=true", "hnet.init=hyperfan_out",
           "target.hidden=[8]", "target.activation=tanh"]


def _fingerprint(hnet, target_module):
    return (
        type(hnet).__name__,
        [tuple(p.shape) for p in hnet.parameters()],
        [type(m).__name__ for m in hnet.modules()],
        [type(m).__name__ for m in target_module.modules()],
        [tuple(p.shape) for p in target_module.parameters()],
        round(float(hnet.output_head().weight.detach().std()), 6),
    )


def _build(overrides, kind):
    torch.manual_seed(0)
    cfg = load_config(overrides)
    if kind == "cl":
        model = build_cl_model_from_config(cfg, {"input_size": 10, "num_classes": 3})
        return cfg, model.hnet, model.target.module
    phn = build_phn_from_config(cfg, make_target(cfg, 10, 1), FAIRNESS_LOSSES, torch.device("cpu"))
    return cfg, phn.hnet, phn.target.module


@pytest.mark.slow
@pytest.mark.parametrize("kind,base", [("cl", CL_BASE), ("pareto", PARETO_BASE)])
def test_every_hnet_and_target_key_changes_the_built_model(kind, base):
    _, hnet0, target0 = _build(base, kind)
    reference = _fingerprint(hnet0, target0)
    changes = CHANGES + (["hnet.emb_dim=5"] if kind == "cl" else [])
    for change in changes:
        cfg, hnet, target = _build(base + [change], kind)
        assert _fingerprint(hnet, target) != reference, change
        built = hnet.build_options
        h = cfg.hnet
        assert built["hidden"] == list(h.hidden) and built["activation"] == h.activation
        assert built["mip"] == h.mip and built["init"] == h.init and built["last_activation"] == h.last_activation
        assert built["chunk_size"] == (h.chunk_size if h.chunked else None)
        assert built["target_gain"] == (2.0 if cfg.target.activation in ("relu", "leaky_relu") else 1.0)
        acts = {type(m).__name__ for m in hnet.modules()}
        assert {"tanh": "Tanh", "elu": "ELU", "relu": "ReLU"}[h.activation] in acts, change


def test_a_key_a_run_does_not_read_is_refused():
    with pytest.raises(ConfigError, match="hnet.emb_dim.*not used by benchmark=adult strategy=phn_ls .pareto runs"):
        load_config(["benchmark=adult", "strategy=phn_ls", "hnet.emb_dim=8"])
    with pytest.raises(ConfigError, match="train.epochs.*not used by benchmark=pmnist strategy=hnet_cl .continual runs"):
        load_config(["benchmark=pmnist", "train.epochs=2"])
    with pytest.raises(ConfigError, match="target.hidden.*not used by benchmark=multimnist"):  # PHN's LeNet
        load_config(["benchmark=multimnist", "strategy=phn_ls", "target.hidden=[5]"])
    with pytest.raises(ConfigError, match="train.epochs.*not used by benchmark=multimnist_seq strategy=phn_cl .continual pareto"):
        load_config(["benchmark=multimnist_seq", "strategy=phn_cl", "train.epochs=2"])


def test_metrics_json_records_what_was_built(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    out = tmp_path / "phn"
    assert main(["benchmark=adult", "strategy=phn_ls", "hnet.activation=tanh", "hnet.hidden=[12]", "target.hidden=[6]",
                 "target.activation=tanh", "benchmark.max_rows=1200", "train.epochs=1", "benchmark.n_eval_rays=5",
                 "progress=false", f"run_dir={out}"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["hnet"]["activation"] == m["built"]["hnet"]["activation"] == "tanh"
    assert m["built"]["hnet"]["hidden"] == m["config"]["hnet"]["hidden"] == [12]
    assert m["built"]["target"] == {"hidden": [6], "activation": "Tanh"}
    assert m["built"]["hnet"]["target_gain"] == 1.0


# ---------------------------------------------------------------- the head contract
class AdditiveBlockHypernetwork(Hypernetwork):
    """A generator unknown to the library: K blocks share one head; block k's head input is
    body(cond) + u_k (additive block embeddings, not concatenated chunk embeddings)."""

    def __init__(self, target, cond_dim, *, width=64, d_k=16):
        super().__init__(target, cond_dim)
        self.width = width
        self.blocks = -(-self.num_weights // width)
        self.body = mlp(cond_dim, (d_k,), "tanh")
        self.block_embeddings = nn.Parameter(torch.randn(self.blocks, d_k))
        self.head = nn.Linear(d_k, width)

    def head_pieces(self, encoded):
        a = self.body(encoded).unsqueeze(1) + self.block_embeddings
        rem = self.num_weights - (self.blocks - 1) * self.width
        return [HeadPiece(a[:, :-1], slice(0, self.width)), HeadPiece(a[:, -1:], slice(0, rem))]

    @torch.no_grad()
    def scale_applications(self, factors):
        self.block_embeddings.mul_(factors.unsqueeze(1))


def _small_target():
    return FunctionalTarget(nn.Sequential(nn.Linear(32, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5)))


def test_a_third_generator_works_with_hyperfan_init():
    torch.manual_seed(0)
    hnet = AdditiveBlockHypernetwork(_small_target(), 3)
    init_hypernetwork(hnet, "hyperfan_in", probe_conditions=torch.randn(128, 3))
    report = hnet.init_report
    assert set(report) == set(hnet.layout.names)
    assert 0.8 <= report["0.weight"] <= 1.25 and 0.8 <= report["2.weight"] <= 1.25, report  # the large tensors
    assert all(0.5 <= r <= 2.0 for r in report.values()), report
    weights = hnet(torch.randn(2, 3))
    assert [tuple(w.shape[1:]) for w in weights] == [tuple(s) for s in hnet.layout.shapes]


@pytest.mark.parametrize("lookahead", [False, True])
def test_a_third_generator_works_with_the_fast_regularizer(lookahead):
    torch.manual_seed(0)
    hnet = AdditiveBlockHypernetwork(_small_target(), 3)
    embs = torch.randn(4, 3)
    fast, direct = OutputRegularizer(beta=0.5, fast=True), OutputRegularizer(beta=0.5, fast=False)
    for reg in (fast, direct):
        reg.snapshot(hnet, embs, [0, 1, 2, 3])
    assert type(fast.targets).__name__ == "HeadSnapshot" and type(direct.targets).__name__ == "StoredOutputs"
    with torch.no_grad():
        for p in hnet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    delta = None
    if lookahead:
        opt = torch.optim.Adam(hnet.parameters(), lr=1e-2)
        hnet.forward_flat(embs[:1]).pow(2).sum().backward()
        delta = lookahead_delta(opt)
    values, grads = [], []
    for reg in (fast, direct):
        hnet.zero_grad()
        value = reg.penalty(hnet, embs, delta)
        value.backward()
        values.append(value.item())
        grads.append(torch.cat([p.grad.reshape(-1) for p in hnet.parameters()]))
    assert values[0] > 0 and values[0] == pytest.approx(values[1], rel=1e-3)
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5 * float(grads[1].abs().max()))
