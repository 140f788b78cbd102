"""HypernetworkOptions: one options object for building a hypernetwork (issue 24, item 4)."""

import dataclasses

import pytest
import torch
from torch import nn

from cl_moo import HypernetworkOptions, build_hypernetwork
from cl_moo.hnet_options import BUILDER_DEFAULTS

CHUNKED = HypernetworkOptions(generator="chunked", chunk_size=50, chunk_emb_dim=4, hidden=(20,), activation="elu")


def _target() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))


def test_options_and_keywords_build_the_same_hypernetwork():
    torch.manual_seed(0)
    a = build_hypernetwork(_target(), 2, HypernetworkOptions(hidden=(16, 16), mip=True, init="xavier"))
    torch.manual_seed(0)
    b = build_hypernetwork(_target(), 2, hidden=(16, 16), mip=True, init="xavier")
    assert a.build_options == b.build_options
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    assert a.build_options["hidden"] == [16, 16] and a.build_options["mip"] is True


def test_unset_fields_take_the_defaults_given():
    opts = HypernetworkOptions(mip=True).filled(CHUNKED)
    assert opts.mip is True and opts.generator == "chunked" and opts.chunk_size == 50 and opts.hidden == (20,)
    # an explicit choice wins over the defaults
    assert HypernetworkOptions(activation="relu").filled(CHUNKED).activation == "relu"


def test_choosing_mlp_over_chunked_defaults_drops_the_chunk_fields():
    opts = HypernetworkOptions(generator="mlp").filled(CHUNKED)
    assert opts.generator == "mlp" and opts.chunk_size is None and opts.chunk_emb_dim is None
    hnet = build_hypernetwork(_target(), 2, opts)
    assert hnet.build_options["generator"] == "mlp"


def test_builder_defaults_fill_everything():
    filled = HypernetworkOptions().filled(BUILDER_DEFAULTS)
    unset = [f.name for f in dataclasses.fields(filled) if getattr(filled, f.name) is None]
    assert unset == ["generator", "chunk_size"]  # None here means: MLP, no chunks
    assert HypernetworkOptions(hidden=[5, 6]).hidden == (5, 6)  # a list is kept as a tuple


def test_bad_calls_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="either as options"):
        build_hypernetwork(_target(), 2, HypernetworkOptions(), mip=True)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['hiden'\]"):
        build_hypernetwork(_target(), 2, hiden=(5,))
    with pytest.raises(TypeError, match="sequence of widths"):
        HypernetworkOptions(hidden=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        build_hypernetwork(_target(), 2, HypernetworkOptions(generator="chunked"))


def test_strategies_point_moved_keywords_to_hnet_options():
    from strategies import ParetoHypernetworkStrategy
    from strategies.cl_model import build_cl_model

    with pytest.raises(TypeError, match=r"build_cl_model: chunked, hidden are set through one options object.*"
                       r"hnet_options=HypernetworkOptions\(generator='mlp', hidden=\(5,\)\)"):
        build_cl_model(_target(), chunked=False, hidden=(5,))
    with pytest.raises(TypeError, match=r"ParetoHypernetworkStrategy: mip is set through.*Options\(mip=True\)"):
        ParetoHypernetworkStrategy(target=_target(), losses=[lambda o, y: o.mean(), lambda o, y: o.sum()], mip=True)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['colour'\]"):
        build_cl_model(_target(), colour="red")
