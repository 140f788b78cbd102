"""Multi-MNIST / Multi-Fashion / Multi-(Fashion+MNIST) (benchmarks/data/multimnist.py) on the real idx files."""
import json
import shutil

import numpy as np
import pytest
import torch
from cl_moo import HypernetworkOptions as HO
from PIL import Image
from torch.utils.data import TensorDataset

from benchmarks.data.multimnist import (LOSSES, REF_POINT, LeNetTarget, ce_left, ce_right, load_source,
                                        make_multi_dataset, train_val_split)
from cl_moo.data import KNOWN_FILES, DataFileError
from cl_moo.moo_metrics import evaluation_rays, hypervolume
from strategies import ParetoHypernetworkStrategy


def _place_loop(left, right, shift_l, shift_r):
    """Independent reference: one image at a time, left at shift_l, right at 4 + shift_r, max overlap."""
    out = np.zeros((len(left), 36, 36), dtype=np.uint8)
    for i in range(len(left)):
        a = np.zeros((36, 36), np.uint8)
        b = np.zeros((36, 36), np.uint8)
        (ly, lx), (ry, rx) = shift_l[i], shift_r[i] + 4
        a[ly:ly + 28, lx:lx + 28] = left[i]
        b[ry:ry + 28, rx:rx + 28] = right[i]
        out[i] = np.maximum(a, b)
    return out


def test_same_seed_same_tensors_other_seed_other_pairing(data_root):
    a = make_multi_dataset("mnist", "test", data_root, seed=0, limit=400, return_info=True)
    b = make_multi_dataset("mnist", "test", data_root, seed=0, limit=400, return_info=True)
    c = make_multi_dataset("mnist", "test", data_root, seed=1, limit=400, return_info=True)
    for s, t in zip(a[:3], b[:3]):
        assert torch.equal(s, t)
    assert not torch.equal(a[0], c[0])
    assert (a[3]["right_index"] != c[3]["right_index"]).mean() > 0.9
    # the first `limit` images are the first images of the full seeded set
    full = make_multi_dataset("mnist", "test", data_root, seed=0, limit=1000)
    assert torch.equal(full[0][:400], a[0]) and torch.equal(full[2][:400], a[2])


@pytest.mark.parametrize("kind", ["mnist", "fashion", "fashion_mnist"])
def test_test_split_sizes_and_range_follow_lin2019(data_root, kind):
    x, yl, yr = make_multi_dataset(kind, "test", data_root)
    assert x.shape == (20000, 1, 36, 36) and x.dtype == torch.float32  # Lin et al.'s test pickle: 20,000 x 36 x 36
    assert yl.shape == yr.shape == (20000,) and yl.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(yl.tolist()) == set(yr.tolist()) == set(range(10))


def test_train_split_is_twice_the_source_and_sener2018_is_28x28(data_root):
    x, yl, yr = make_multi_dataset("mnist", "train", data_root)
    assert x.shape == (120000, 1, 36, 36) and len(yl) == len(yr) == 120000
    del x
    x, yl, _ = make_multi_dataset("mnist", "test", data_root, recipe="sener2018")
    assert x.shape == (10000, 1, 28, 28) and len(yl) == 10000


@pytest.mark.parametrize("kind,sources", [("mnist", ("mnist", "mnist")), ("fashion", ("fashion", "fashion")),
                                          ("fashion_mnist", ("mnist", "fashion"))])
def test_images_are_the_source_items_in_their_corners_with_their_labels(data_root, kind, sources):
    x, yl, yr, info = make_multi_dataset(kind, "test", data_root, seed=3, limit=300, return_info=True)
    (xs_l, ys_l), (xs_r, ys_r) = (load_source(s, "test", data_root) for s in sources)
    li, ri = info["left_index"], info["right_index"]
    assert np.array_equal(yl.numpy(), ys_l[li]) and np.array_equal(yr.numpy(), ys_r[ri])
    if sources[0] == sources[1]:
        assert (yl != yr).all()  # "two images with different digits"
    shifts_l, shifts_r = info["left_shift"], info["right_shift"]
    assert shifts_l.min() == 0 and shifts_l.max() == 4 and shifts_r.min() == 0 and shifts_r.max() == 4
    expected = _place_loop(xs_l[li], xs_r[ri], shifts_l, shifts_r)
    got = np.rint(x[:, 0].numpy() * 255).astype(np.uint8)
    assert np.array_equal(got, expected)
    # with the roles swapped the images differ: the top-left item really is the left source item
    assert not np.array_equal(got, _place_loop(xs_r[ri], xs_l[li], shifts_l, shifts_r))
    # the top-left 4x4 corner holds only the left item, the bottom-right 4x4 corner only the right item
    for i in range(len(li)):
        (ly, lx), (ry, rx) = shifts_l[i], shifts_r[i]
        assert np.array_equal(got[i, :4, :4], np.pad(xs_l[li[i]], ((ly, 0), (lx, 0)))[:4, :4])
        assert np.array_equal(got[i, 32:, 32:], np.pad(xs_r[ri[i]], ((0, 4 - ry), (0, 4 - rx)))[-4:, -4:])
    # the left item's ink lies up-left of the right item's: compare centres of mass of the two parts
    rows = np.arange(36)[None, :, None]
    ink_l = _place_loop(xs_l[li], np.zeros_like(xs_r[ri]), shifts_l, shifts_r).astype(float)
    ink_r = _place_loop(np.zeros_like(xs_l[li]), xs_r[ri], shifts_l, shifts_r).astype(float)
    com = lambda ink: (ink * rows).sum(axis=(1, 2)) / ink.sum(axis=(1, 2))
    assert (com(ink_l) < com(ink_r)).mean() > 0.85


def test_sener2018_matches_a_per_image_pil_reference(data_root):
    x, yl, yr, info = make_multi_dataset("mnist", "test", data_root, recipe="sener2018", limit=20, return_info=True)
    xs, ys = load_source("mnist", "test", data_root)
    assert np.array_equal(info["left_index"], np.arange(20))
    for i in range(20):
        lim, rim = xs[i].astype(float), xs[info["right_index"][i]].astype(float)
        canvas = np.zeros((36, 36))
        canvas[0:28, 0:28] = lim
        canvas[6:34, 6:34] = rim
        canvas[6:28, 6:28] = np.maximum(lim[6:28, 6:28], rim[0:22, 0:22])
        cmin, cmax = canvas.min(), canvas.max()
        byte = (((canvas - cmin) * 255.0 / (cmax - cmin)).clip(0, 255) + 0.5).astype(np.uint8)
        ref = np.array(Image.fromarray(byte).resize((28, 28), Image.NEAREST))
        assert np.array_equal(np.rint(x[i, 0].numpy() * 255).astype(np.uint8), ref)
        assert yl[i] == ys[i] and yr[i] == ys[info["right_index"][i]]


def test_missing_and_altered_files_fail_naming_the_file(data_root, tmp_path):
    with pytest.raises(DataFileError, match=r"MNIST/raw/t10k-images-idx3-ubyte.gz.*not found"):
        make_multi_dataset("mnist", "test", tmp_path)
    (tmp_path / "MNIST").symlink_to((data_root / "MNIST").resolve())
    with pytest.raises(DataFileError, match=r"FashionMNIST/raw/t10k-images-idx3-ubyte.gz.*not found.*CL_MOO_DATA"):
        make_multi_dataset("fashion_mnist", "test", tmp_path)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in [n for n in KNOWN_FILES if n.startswith("FashionMNIST/")]:
        shutil.copy(data_root / name, tmp_path / name)
    with open(raw / "t10k-labels-idx1-ubyte.gz", "ab") as f:
        f.write(b"x")  # trailing garbage (zero bytes would be valid gzip padding, same content: accepted)
    with pytest.raises(DataFileError, match=r"t10k-labels-idx1-ubyte.gz has sha256 .* expected 8d3605d1"):
        make_multi_dataset("fashion", "test", tmp_path)
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        make_multi_dataset("mnist", "test", data_root, limit="a")
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        make_multi_dataset("mnist", "test", data_root, seed=-1)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_multi_dataset("cifar", "test", data_root)


def test_train_val_split_is_seeded_and_disjoint():
    tr, va = train_val_split(1000, 0.1, seed=42)
    tr2, va2 = train_val_split(1000, 0.1, seed=42)
    assert len(va) == 100 and len(tr) == 900 and not set(tr) & set(va)
    assert np.array_equal(va, va2) and not np.array_equal(va, train_val_split(1000, 0.1, seed=0)[1])


def test_lenet_matches_phn_target_shapes():
    net = LeNetTarget()
    out = net(torch.zeros(4, 1, 36, 36))
    assert out.shape == (4, 2, 10)
    assert net.fc.in_features == 500  # PHN: 20 kernels x 5 x 5 ("latent = 25")
    # conv 1->10 9x9, conv 10->20 5x5, 500->50, two 50->10 heads
    assert sum(p.numel() for p in net.parameters()) == (810 + 10) + (5000 + 20) + (25000 + 50) + 2 * (500 + 10)
    assert LeNetTarget(in_size=28)(torch.zeros(2, 1, 28, 28)).shape == (2, 2, 10)
    with pytest.raises(ValueError, match=r"expects \(N, 1, 36, 36\)"):
        net(torch.zeros(2, 1, 28, 28))
    y = torch.tensor([1, 2, 3, 4])
    logits = torch.zeros(4, 2, 10)
    logits[torch.arange(4), 0, y] = 10.0
    assert float(ce_left(logits, y, y)) < 1e-3 and float(ce_right(logits, y, y)) == pytest.approx(np.log(10), rel=1e-5)


@pytest.mark.parametrize("solver", ["ls", "epo"])
def test_phn_trains_and_evaluates_on_multimnist(data_root, solver):
    x, yl, yr = make_multi_dataset("fashion_mnist", "test", data_root, limit=256)
    data = TensorDataset(x, yl, yr)
    torch.manual_seed(0)
    phn = ParetoHypernetworkStrategy(target=LeNetTarget(), losses=LOSSES, hnet_options=HO(hidden=(100, 100, 100)), solver=solver,
                                     rays_per_step=2, lr=1e-3, train_mb_size=64, eval_mb_size=256, seed=0)
    assert len(phn.hnet.layout.shapes) == 10  # every weight and bias of the target is generated, as in PHN
    phn.train(data, steps=3)
    assert phn.iteration == 3 and np.isfinite(phn.last_loss)
    losses = phn.eval(data, rays=evaluation_rays(2, 5))
    assert losses.shape == (5, 2) and np.isfinite(losses).all()
    hv = hypervolume(losses, REF_POINT)
    assert np.isfinite(hv) and hv >= 0.0


@pytest.mark.slow
def test_the_bench_trains_its_separate_models_with_the_runners_ls_loop(data_root, tmp_path):
    from benchmarks.experiments import multimnist_bench

    out = tmp_path / "mm.json"
    with pytest.raises(SystemExit):  # refused before any training: one ray is not a front
        multimnist_bench.main(["--root", str(data_root), "--k-separate", "1", "--out", str(out)])
    result = multimnist_bench.main(["--root", str(data_root), "--train", "300", "--test", "200", "--epochs", "1",
                                    "--k-separate", "3", "--n-rays", "4", "--out", str(out)])
    res = result["results"]["mnist"]
    assert (res["n_train"], res["n_test"]) == (300, 200)
    sep = res["ls_separate"]
    assert np.asarray(sep["losses"]).shape == (3, 2) and np.asarray(sep["accuracies"]).shape == (3, 2)
    assert sep["steps"] == 3 * 2  # 3 models x 1 epoch x ceil(300 / 256) batches
    assert all(0.0 <= a <= 1.0 for row in sep["accuracies"] for a in row)
    assert all(np.asarray(res[m]["losses"]).shape == (4, 2) for m in ("phn_ls", "phn_epo"))
    # model j is the runner's train_ls_model on ray j with the global RNG seeded seed + j
    from benchmarks.runners.pareto_runner import train_ls_model
    from benchmarks.runners.pareto_problems import ParetoProblem, mean_losses
    from benchmarks.data.multimnist import LOSSES, LeNetTarget, load_multimnist
    from omegaconf import OmegaConf

    train, test = load_multimnist("mnist", data_root, max_train=300, max_test=200)
    torch.manual_seed(1)
    net = train_ls_model(OmegaConf.create({"train": {"lr": 1e-3, "epochs": 1, "batch_size": 256}}),
                         ParetoProblem(train, test, LOSSES, ["l", "r"], LeNetTarget, None),
                         evaluation_rays(2, 3)[1], torch.device("cpu")).eval()
    expected = mean_losses(lambda x: net(x)[None], test, LOSSES, 2048, torch.device("cpu"))[0]
    assert np.allclose(sep["losses"][1], expected, atol=1e-6)
    assert json.loads(out.read_text())["results"]["mnist"]["ls_separate"]["steps"] == 6
