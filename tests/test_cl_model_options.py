"""``build_cl_model(module, hnet_options=...)``: one :class:`cl_moo.HypernetworkOptions` instead of the
former eleven keywords; unset fields take ``CL_HNET_DEFAULTS``, which build exactly what the former
defaults built (same parameters for the same seed)."""
import pytest
import torch
from torch import nn

from cl_moo import ChunkedHypernetwork, FunctionalTarget, HypernetworkOptions, MLPHypernetwork, build_hypernetwork
from strategies import build_cl_model
from strategies.cl_model import CL_HNET_DEFAULTS

# what build_cl_model passed to the builder before hnet_options (its keyword defaults then)
FORMER = dict(chunk_emb_dim=8, hidden=(100, 75, 50), activation="elu", last_activation=True, init="hyperfan_in",
              target_gain=2.0)


def net():
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))


def former(emb_dim=24, emb_std=1.0, chunk_size=2000, **changes):
    """The hypernetwork the former build_cl_model built (chunked=True: chunk_size; chunked=False: None)."""
    torch.manual_seed(0)
    target = FunctionalTarget(net())
    return build_hypernetwork(target, emb_dim, **{**FORMER, "mip": False, "theta0": "init", **changes},
                              chunk_size=chunk_size, input_range="unbounded",
                              probe_conditions=torch.randn(256, emb_dim) * emb_std)


def now(options=None, **kwargs):
    torch.manual_seed(0)
    return build_cl_model(net(), hnet_options=options, **kwargs).hnet


def same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return type(a) is type(b) and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) \
        and a.build_options == b.build_options


@pytest.mark.parametrize("options, changes", [
    (None, {}),
    (HypernetworkOptions(), {}),
    (HypernetworkOptions(mip=True), {"mip": True}),
    (HypernetworkOptions(mip=True, theta0="keep"), {"mip": True, "theta0": "keep"}),
    (HypernetworkOptions(chunk_size=700, hidden=(16,)), {"chunk_size": 700, "hidden": (16,)}),
    (HypernetworkOptions(generator="mlp"), {"chunk_size": None}),  # the former chunked=False
    (HypernetworkOptions(generator="mlp", hidden=(10, 10), activation="sigmoid", init="kaiming", target_gain=1.0),
     {"chunk_size": None, "hidden": (10, 10), "activation": "sigmoid", "init": "kaiming", "target_gain": 1.0}),
])
def test_options_build_what_the_former_keywords_built(options, changes, one_thread):
    assert same(now(options), former(**changes))


def test_the_defaults_are_the_former_keyword_defaults_and_the_generator_is_named(one_thread):
    assert isinstance(now(), ChunkedHypernetwork) and now().build_options["chunk_size"] == 2000
    assert isinstance(now(HypernetworkOptions(generator="mlp")), MLPHypernetwork)
    assert CL_HNET_DEFAULTS.generator == "chunked" and CL_HNET_DEFAULTS.hidden == FORMER["hidden"]
    assert same(now(emb_dim=6, emb_std=0.5), former(emb_dim=6, emb_std=0.5))


def test_options_of_another_type_are_refused():
    with pytest.raises(TypeError, match="hnet_options must be a cl_moo.HypernetworkOptions, got dict"):
        build_cl_model(net(), hnet_options={"hidden": (10,)})
    with pytest.raises(TypeError, match=r"chunk_size is set through one options object.*\(chunk_size=2000\)"):
        build_cl_model(net(), chunk_size=2000)  # the former keywords are gone: the error points to hnet_options
