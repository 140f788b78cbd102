import torch
import gzip
import struct

import numpy as np
import pytest

from benchmarks.data.pmnist import avalanche_permuted_mnist, load_mnist, permuted_mnist
from cl_moo.data import DataFileError
from cl_moo.run import main


def write_idx(folder, prefix, n, rng):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.tobytes())
    return images, labels


@pytest.fixture()
def full_mnist_standin(tmp_path):
    """Small generated MNIST stand-in in torchvision's layout (train and test splits)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw, "train", 120, rng)
    write_idx(raw, "t10k", 40, rng)
    return tmp_path


@pytest.fixture()
def test_split_only(tmp_path, data_root):
    """A data root with the real MNIST test split but no training split."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).symlink_to((data_root / "MNIST" / "raw" / name).resolve())
    return tmp_path


def test_full_real_training_split_is_used_and_checked(data_root):
    bench, info = permuted_mnist(2, root=data_root, train_per_task=50, test_per_task=20)
    assert info["fallback"] is None and info["train_size"] == 50
    _, _, _, _, full = load_mnist(data_root)
    assert full["fallback"] is None


def test_real_test_split_fallback_is_reported(test_split_only):
    bench, info = permuted_mnist(2, root=test_split_only, train_per_task=50, test_per_task=20)
    assert "test split" in info["fallback"] and info["input_size"] == 1024
    x0 = bench.train_stream[0].dataset[0][0]
    x1 = bench.train_stream[1].dataset[0][0]
    assert sorted(x0.tolist()) == pytest.approx(sorted(x1.tolist()))  # same image, pixels permuted
    assert bench.train_stream[1].task_label == 1


def test_full_split_is_used_when_present(full_mnist_standin):
    with pytest.raises(DataFileError, match="sha256.*data.verify=false"):  # stand-ins are not the published files
        permuted_mnist(2, root=full_mnist_standin)
    bench, info = permuted_mnist(2, root=full_mnist_standin, verify=False)
    assert info["fallback"] is None and info["train_size"] == 120 and info["test_size"] == 40


def test_avalanche_permuted_mnist_runs_the_strategy(full_mnist_standin, tmp_path, monkeypatch):
    bench, info = avalanche_permuted_mnist(2, root=full_mnist_standin, seed=0, verify=False)
    assert [e.task_label for e in bench.train_stream] == [0, 1]
    out = tmp_path / "run"
    argv = ["benchmark=pmnist", "benchmark.builder=avalanche", "benchmark.n_tasks=2", f"data.root={full_mnist_standin}",
            "train.iterations=3", "train.batch_size=16", "hnet.hidden=[8]", "target.hidden=[16]", "hnet.emb_dim=4",
            "progress=false", "data.verify=false", f"run_dir={out}"]
    assert main(argv) == 0
    assert (out / "metrics.json").exists()


def test_avalanche_builder_without_training_split_names_the_files(test_split_only):
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.gz.*builder=tensors"):
        avalanche_permuted_mnist(2, root=test_split_only)


def test_tasks_beyond_the_copy_budget_permute_one_shared_copy_and_give_the_same_samples(data_root):
    copied, _ = permuted_mnist(3, root=data_root, train_per_task=40, test_per_task=20)
    shared, _ = permuted_mnist(3, root=data_root, train_per_task=40, test_per_task=20, max_copy_bytes=0)
    assert type(shared.train_stream[2].dataset._datasets[0]).__name__ == "PermutedRows"
    for stream in ("train_stream", "test_stream"):
        for a, b in zip(getattr(copied, stream), getattr(shared, stream)):
            for i in (0, 7, len(a.dataset) - 1):
                xa, ya, ta = a.dataset[i]
                xb, yb, tb = b.dataset[i]
                assert torch.equal(xa, xb) and int(ya) == int(yb) and int(ta) == int(tb)
    x0 = copied.train_stream[0].dataset[0][0]
    assert not torch.equal(x0, copied.train_stream[1].dataset[0][0])  # tasks really differ
