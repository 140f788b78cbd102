"""Permuted MNIST (von Oswald et al. 2020, Sec. 4.2) as an Avalanche benchmark with task labels.

Images are scaled to [0, 1], zero-padded from 28x28 to 32x32 (1024 inputs, as in the paper's
reference code) and flattened; task ``t`` applies a fixed random pixel permutation (task 0 is
unpermuted, as in the reference code). Data come from the data root in torchvision's layout
(``MNIST/raw/*-idx*-ubyte.gz``). When the 60,000-image training split is not there, the
10,000-image test split is divided into train/test parts (default 8,000 / 2,000) and
``info["fallback"]`` says so; every report must carry that note.

Permutations are applied to tensors (not as a per-sample PIL transform, which is what makes
Avalanche's own ``PermutedMNIST`` slow on a CPU): once per task while the copies fit in memory,
else per sample through one shared copy (``max_copy_bytes``). The streams are ordinary Avalanche
streams (``benchmark_from_datasets`` + ``with_task_labels``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from cl_moo.data import DataFileError, DataFormatError, DegenerateDataError, data_root, read_gzip, require_file
from cl_moo.data import read_idx as read_idx_file

from benchmarks.data.avalanche_streams import task_benchmark

TRAIN_FILES = ("MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz")
TEST_FILES = ("MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz")


def read_idx(images: Path, labels: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Reads an MNIST idx image/label pair into uint8 arrays (N, 28, 28) and (N,), checking both.

    The gzip stream, the magic numbers (2051 images, 2049 labels), the 28x28 size, the payload
    lengths, the image/label counts and the label range 0..9 are checked whatever ``verify`` says;
    a fault raises :class:`~cl_moo.data.DataFormatError` naming the file.
    """
    x = read_idx_file(images, magic=2051, item_shape=(28, 28))
    y = read_idx_file(labels, magic=2049, item_shape=())
    if len(x) != len(y):
        raise DataFormatError(
            f"{images} has {len(x)} images but {labels} has {len(y)} labels: the two files do not belong together "
            "(different splits, or one is cut short); replace them with a matching pair"
        )
    if len(x) == 0:
        raise DegenerateDataError(f"{images} and {labels} hold no images; replace them with the published files")
    bad = np.flatnonzero(y > 9)
    if len(bad):
        raise DataFormatError(
            f"{labels}: label {int(y[bad[0]])} at index {int(bad[0])} (labels outside 0..9: {len(bad)}); MNIST "
            "labels are digits 0..9: replace the file with the published one"
        )
    return x, y


def load_mnist(
    root: Union[str, Path, None] = None, *, download: bool = False, verify: bool = True, fallback_train: int = 8000
):
    """Returns ``(x_train, y_train, x_test, y_test, info)`` as uint8/int64 arrays.

    Without the training split (a file of it absent) the test split is divided into
    ``fallback_train`` training images and the rest as test images, and ``info["fallback"]`` says so.
    Training files that are present but faulty raise; they are never silently replaced by the fallback.
    """
    base = data_root(root)
    present = [f for f in TRAIN_FILES if (base / f).is_file()]
    have_train = len(present) == len(TRAIN_FILES)
    if have_train or download:
        try:
            xtr, ytr = read_idx(*(require_file(f, root, download=download, verify=verify) for f in TRAIN_FILES))
            xte, yte = read_idx(*(require_file(f, root, download=download, verify=verify) for f in TEST_FILES))
            return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), {"fallback": None}
        except DataFileError:
            if have_train or all((base / f).is_file() for f in TRAIN_FILES):  # e.g. a faulty download
                raise
    x, y = read_idx(*(require_file(f, root, verify=verify) for f in TEST_FILES))
    if len(x) <= fallback_train:
        raise DegenerateDataError(
            f"MNIST training split not found in {base}, and the test split ({base / TEST_FILES[0]}) has only "
            f"{len(x)} images, too few to divide into {fallback_train} train images and a test part; put the "
            f"training files ({', '.join(TRAIN_FILES)}) there, or replace the test files with the published ones"
        )
    rng = np.random.RandomState(1234)
    order = rng.permutation(len(x))
    tr, te = order[:fallback_train], order[fallback_train:]
    absent = [f for f in TRAIN_FILES if f not in present]
    note = (
        f"MNIST training split not found in {base} ({', '.join(absent)} missing); using the "
        f"{len(x):,}-image test split divided into {len(tr)} train / {len(te)} test images per task"
    )
    return x[tr], y[tr].astype(np.int64), x[te], y[te].astype(np.int64), {"fallback": note}


def _prepare(x: np.ndarray, pad_to: int) -> torch.Tensor:
    t = torch.from_numpy(x.astype(np.float32) / 255.0)
    pad = (pad_to - 28) // 2
    if pad > 0:
        t = torch.nn.functional.pad(t, (pad, pad_to - 28 - pad, pad, pad_to - 28 - pad))
    return t.reshape(len(t), -1)


def permuted_mnist(
    n_tasks: int = 10,
    *,
    root: Union[str, Path, None] = None,
    seed: int = 0,
    pad_to: int = 32,
    train_per_task: Optional[int] = None,
    test_per_task: Optional[int] = None,
    download: bool = False,
    verify: bool = True,
    max_copy_bytes: int = 4 * 2**30,
) -> Tuple[object, Dict]:
    """Permuted MNIST benchmark and an info dict (input size, classes, fallback note). Tasks get
    pre-permuted copies of the images while all copies fit in ``max_copy_bytes`` (fastest loading;
    PMNIST-10 on the full data is 2.9 GB); beyond that every task permutes one shared copy per
    sample (PMNIST-100 would need 29 GB of copies). Both give the same samples."""
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    xtr, ytr, xte, yte, info = load_mnist(root, download=download, verify=verify)
    gen = np.random.RandomState(seed)
    sub_tr = gen.permutation(len(xtr))[:train_per_task] if train_per_task else np.arange(len(xtr))
    sub_te = gen.permutation(len(xte))[:test_per_task] if test_per_task else np.arange(len(xte))
    xtr_t, xte_t = _prepare(xtr[sub_tr], pad_to), _prepare(xte[sub_te], pad_to)
    ytr_t, yte_t = torch.from_numpy(ytr[sub_tr]), torch.from_numpy(yte[sub_te])
    n_in = xtr_t.shape[1]
    copies = n_tasks * (xtr_t.numel() + xte_t.numel()) * xtr_t.element_size() <= max_copy_bytes
    train, test = [], []
    for t in range(n_tasks):
        perm = torch.arange(n_in) if t == 0 else torch.from_numpy(gen.permutation(n_in))
        if copies:
            train.append((xtr_t[:, perm].contiguous(), ytr_t))
            test.append((xte_t[:, perm].contiguous(), yte_t))
        else:
            train.append((xtr_t, ytr_t, perm))
            test.append((xte_t, yte_t, perm))
    info.update(
        {"input_size": n_in, "num_classes": 10, "n_tasks": n_tasks, "train_size": len(sub_tr), "test_size": len(sub_te)}
    )
    return task_benchmark(train, test), info


def avalanche_permuted_mnist(
    n_tasks: int = 10, *, root: Union[str, Path, None] = None, seed: int = 0, verify: bool = True
) -> Tuple[object, Dict]:
    """Avalanche's own ``PermutedMNIST`` (task labels on), reading MNIST from the data root.

    Needs the full MNIST (training and test idx files) in ``<root>/MNIST/raw``; nothing is
    downloaded here. The files are checked, then decompressed into ``~/.cache/cl_moo`` (the
    layout torchvision reads), so the data root is never written to. Images come as (1, 28, 28) tensors: put ``nn.Flatten()`` before an MLP.
    """
    from avalanche.benchmarks.classic import PermutedMNIST

    base = data_root(root)
    missing = [f for f in TRAIN_FILES + TEST_FILES if not (base / f).is_file()]
    if missing:
        raise DataFileError(
            f"Avalanche's PermutedMNIST needs {missing} in {base}; use benchmark.builder=tensors, which "
            "falls back to the test split, or put the MNIST idx files there"
        )
    cache = Path.home() / ".cache" / "cl_moo" / "avalanche_mnist"
    raw = cache / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    paths = [require_file(f, root, verify=verify) for f in TRAIN_FILES + TEST_FILES]
    read_idx(*paths[:2])  # checks gzip streams, headers and counts before torchvision sees them
    read_idx(*paths[2:])
    for f, src in zip(TRAIN_FILES + TEST_FILES, paths):
        # torchvision reads the uncompressed idx files; they go to a cache, never into the data root
        (raw / Path(f).name[: -len(".gz")]).write_bytes(read_gzip(src))
    bench = PermutedMNIST(n_tasks, return_task_id=True, seed=seed, dataset_root=str(cache))
    return bench, {"input_size": 784, "num_classes": 10, "n_tasks": n_tasks, "fallback": None, "builder": "avalanche",
                   "image_shape": (1, 28, 28)}
