"""Multi-MNIST, Multi-Fashion and Multi-(Fashion+MNIST): two-item images, two classification losses.

These are the three data sets of Lin et al. 2019 (Pareto Multi-Task Learning, NeurIPS) that Navon
et al. 2021 (Pareto HyperNetworks, ICLR) use with a LeNet target (PHN Table 1). Task 1 (``left``):
the class of the item in the top-left corner; task 2 (``right``): the class of the item in the
bottom-right corner. Objectives: the two cross-entropies (:func:`ce_left`, :func:`ce_right`);
hypervolume reference point ``(2, 2)`` (:data:`REF_POINT`).

What the references say (read in public snapshots; nothing copied)
-------------------------------------------------------------------
* Lin et al. 2019, paper Sec. 6.1 (``ParetoMTL_NeurIPS2019_Full.pdf`` in github Xi-L/ParetoMTL,
  p. 8): "randomly pick two images with different digits", put one on the top-left corner and the
  other on the bottom-right corner, "each digit can be moved up to 4 pixels on each direction";
  the same for Fashion-MNIST items, and one MNIST plus one Fashion-MNIST item for the third set.
* Lin et al.'s data are pickles on Google Drive; the script that made them is NOT published
  (Xi-L/ParetoMTL ``multiMNIST/data/README.md``). ``multiMNIST/train.py`` (the ``train`` function,
  l. 102-120; reshapes at l. 118 and 120) reshapes them to ``(120000, 1, 36, 36)`` train and ``(20000, 1, 36, 36)``
  test, with labels ``(N, 2)`` (column 0 = top-left). So: 36x36 images, NOT resized to 28x28,
  and twice as many images as the source split.
* PHN (github AvivNavon/pareto-hypernetworks) reads the same pickles
  (``experiments/multimnist/README.md`` l. 7-10; ``data.py`` l. 13-27: 36x36, test 20,000) and
  holds out a validation set with ``sklearn.model_selection.train_test_split(test_size=val_size,
  random_state=42)`` (``data.py`` l. 17-20), ``val_size`` 0.1 (``trainer.py`` l. 289).
  Evaluation: 25 rays at angles in [0.1, pi/2 - 0.1] (``trainer.py`` l. 154-156), mean CE per
  ray on the test set (``trainer.py`` l. 30-75). Training: Adam lr 1e-4, batch 256, 150 epochs,
  Dirichlet(0.2) rays, ray-MLP hidden 100 (``trainer.py`` l. 263-306).
* PHN's LeNet target (``experiments/multimnist/models.py`` l. 101-172; ``LeNetTarget([9, 5])``,
  ``trainer.py`` l. 100-101): conv 1->10 (9x9, stride 1) + ReLU + 2x2 max-pool; conv 10->20 (5x5)
  + ReLU + 2x2 max-pool; flatten 20*5*5 = 500 (``latent = 25``, models.py l. 59-62: this needs a
  36x36 input: 36-8=28 -> 14 -> 14-4=10 -> 5); linear 500->50 with NO activation after it
  (models.py l. 153-159); two heads 50->10. The hypernetwork (``LeNetHyper``, models.py l. 9-98)
  generates EVERY weight and bias of the target (conv0, conv1, hidden0, task0, task1).
  Lin et al.'s own LeNet (Xi-L/ParetoMTL ``multiMNIST/model_lenet.py``) is the same but with a
  ReLU after the 500->50 layer and the two logits stacked to ``(N, 2, 10)``.
* The 28x28 construction is Sener & Koltun 2018 (github intel-isl/MultiObjectiveOptimization,
  ``multi_task/loaders/multi_mnist_loader.py`` l. 214-239): a 36x36 zero canvas, left digit at
  rows/cols 0:28, right digit at 6:34, the overlap 6:28 the pixelwise maximum, then
  ``scipy.misc.imresize(canvas, (28, 28), interp='nearest')``; the partner of image ``i`` is one
  uniform draw over the whole split (``np.random.permutation(n)[:1]``, any class, may be ``i``);
  N = 60,000 / 10,000. That is NOT the data of PHN Table 1 (whose LeNet needs 36x36 inputs).

What this module builds
-----------------------
``recipe="lin2019"`` (default; the data PHN Table 1 used, as far as the papers say):
  * N = 2 x the source split (120,000 train / 20,000 test): every left-source image is the left
    item twice (two independent random orders); its partner is drawn uniformly among the images
    of a DIFFERENT class (Multi-MNIST, Multi-Fashion); for Multi-(Fashion+MNIST) the top-left item
    is the MNIST digit and the partner any Fashion-MNIST item of the same split.
  * 36x36 uint8 canvas; the left item's 28x28 image at offset ``(dy, dx)``, ``dy, dx`` uniform in
    0..4; the right item's at ``(4 + dy', 4 + dx')``, ``dy', dx'`` uniform in 0..4 (each item moves
    up to 4 pixels; the top-left item stays above-left of the bottom-right one); overlapping pixels
    take the maximum (as Sener & Koltun); scaled to [0, 1]; no resizing.
  * Unpublished details that are this module's choice, not Lin et al.'s (whose generator is not
    public): the shift distribution, ``max`` for the overlap, two passes for N = 2x, MNIST on the
    top-left in Fashion+MNIST (inferred from PHN's ``resources/mmnist_fashion_and_mnist_evolve.png``
    and Lin et al. Fig. 4c, where task 1 reaches MNIST-like accuracy ~0.93 and task 2 ~0.84).
``recipe="sener2018"``: the 28x28 construction above, exactly (fixed placement, max overlap,
  imresize's byte-scaling to 0..255 then PIL nearest-neighbour 36->28, N = the source split).
  :class:`LeNetTarget` takes ``in_size=28`` for it (flatten 20*3*3 = 180).

Generation is deterministic for ``(kind, split, seed, recipe)`` (NumPy ``default_rng`` seeded with
those); the first ``limit`` images equal the first ``limit`` of the full set (pairs are drawn for
the whole split, only the first ``limit`` are drawn), and nothing is cached on disk. MNIST files
and Fashion-MNIST files are checked by ``cl_moo.data.require_file`` (``KNOWN_FILES``: the .gz sha256 or
published MD5, else the sha256 of the decompressed idx content, so any distribution's .gz is accepted).
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cl_moo.data import DataFormatError, DegenerateDataError, require_file
from cl_moo.data import read_idx as read_idx_file

KINDS = ("mnist", "fashion", "fashion_mnist")
SPLITS = ("train", "test")
RECIPES = ("lin2019", "sener2018")
REF_POINT = (2.0, 2.0)  # PHN's hypervolume reference point for the two cross-entropies
CANVAS = 36
ITEM = 28
MAX_SHIFT = 4  # lin2019: each item moves 0..4 pixels right and down from its corner position
SENER_RIGHT = 6  # sener2018: the right digit's fixed offset on the 36x36 canvas

FILES = {
    ("mnist", "train"): ("MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz"),
    ("mnist", "test"): ("MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz"),
    ("fashion", "train"): ("FashionMNIST/raw/train-images-idx3-ubyte.gz", "FashionMNIST/raw/train-labels-idx1-ubyte.gz"),
    ("fashion", "test"): ("FashionMNIST/raw/t10k-images-idx3-ubyte.gz", "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz"),
}
_SOURCE = {"mnist": ("mnist", "mnist"), "fashion": ("fashion", "fashion"), "fashion_mnist": ("mnist", "fashion")}
_KIND_ID = {k: i for i, k in enumerate(KINDS)}
_SPLIT_ID = {s: i for i, s in enumerate(SPLITS)}
_RECIPE_ID = {r: i for i, r in enumerate(RECIPES)}


def load_source(dataset: str, split: str, root: Union[str, Path, None] = None, *,
                verify: bool = True, download: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of ``dataset`` ("mnist" or "fashion");
    ``download``: fetch missing files that have a canonical URL (:func:`cl_moo.data.require_file`)."""
    if (dataset, split) not in FILES:
        raise ValueError(f"unknown source {dataset!r}/{split!r}: dataset is 'mnist' or 'fashion', split {SPLITS}")
    names = FILES[(dataset, split)]
    paths = [require_file(n, root, verify=verify, download=download) for n in names]
    x = read_idx_file(paths[0], magic=2051, item_shape=(ITEM, ITEM))
    y = read_idx_file(paths[1], magic=2049, item_shape=())
    if len(x) != len(y):
        raise DataFormatError(f"{paths[0]} has {len(x)} images but {paths[1]} has {len(y)} labels: the files do not "
                              "belong together; replace them with a matching pair")
    if len(x) == 0:
        raise DegenerateDataError(f"{paths[0]} holds no images; replace it with the published file")
    if y.max() > 9:
        bad = int(np.flatnonzero(y > 9)[0])
        raise DataFormatError(f"{paths[1]}: label {int(y[bad])} at index {bad}; labels must be 0..9: replace the file")
    return np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)


def _partners(y_left: np.ndarray, y_right: np.ndarray, n_pairs: int, same_source: bool,
              rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """lin2019: left indices (the source order, ``n_pairs / len`` passes of random orders) and their
    partners (uniform over the right source; over a different class when both come from one data set)."""
    n_left = len(y_left)
    passes = -(-n_pairs // n_left)
    left = np.concatenate([rng.permutation(n_left) for _ in range(passes)])[:n_pairs]
    if not same_source:
        return left, rng.integers(0, len(y_right), size=n_pairs)
    by_class = [np.flatnonzero(y_right == c) for c in range(10)]
    others = {c: np.concatenate([by_class[d] for d in range(10) if d != c]) for c in range(10)}
    if any(len(o) == 0 for c, o in others.items() if np.any(y_left[left] == c)):
        raise DegenerateDataError("the source split has a single class: no pair of different classes exists")
    u = rng.random(n_pairs)
    right = np.empty(n_pairs, dtype=np.int64)
    for c in range(10):
        sel = np.flatnonzero(y_left[left] == c)
        if len(sel):
            pool = others[c]
            right[sel] = pool[np.minimum((u[sel] * len(pool)).astype(np.int64), len(pool) - 1)]
    return left, right


def _place(canvas: np.ndarray, items: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> None:
    """``canvas[i] = max(canvas[i], items[i] at (dy[i], dx[i]))`` for every i, grouped by offset."""
    for oy in np.unique(dy):
        for ox in np.unique(dx):
            sel = np.flatnonzero((dy == oy) & (dx == ox))
            if len(sel):
                region = canvas[sel, oy:oy + ITEM, ox:ox + ITEM]
                canvas[sel, oy:oy + ITEM, ox:ox + ITEM] = np.maximum(region, items[sel])


def compose_lin2019(left_items: np.ndarray, right_items: np.ndarray, left_shift: np.ndarray,
                    right_shift: np.ndarray) -> np.ndarray:
    """36x36 uint8 canvases: left items at ``left_shift`` (N, 2) (row, col in 0..4), right items at
    ``4 + right_shift``; overlaps take the maximum."""
    n = len(left_items)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    _place(canvas, left_items, left_shift[:, 0], left_shift[:, 1])
    _place(canvas, right_items, MAX_SHIFT + right_shift[:, 0], MAX_SHIFT + right_shift[:, 1])
    return canvas


# PIL's NEAREST resize samples source pixel floor((i + 0.5) * in / out) (an affine transform through
# pixel centres); scipy.misc.imresize(..., interp='nearest') resized with PIL after byte-scaling.
_NEAREST_36_TO_28 = np.floor((np.arange(ITEM) + 0.5) * CANVAS / ITEM).astype(np.int64)


def compose_sener2018(left_items: np.ndarray, right_items: np.ndarray) -> np.ndarray:
    """Sener & Koltun's 28x28 images (uint8): left at 0:28, right at 6:34 of a 36x36 canvas, overlap
    max, byte-scaled to 0..255 like ``scipy.misc.bytescale`` (min -> 0, max -> 255, +0.5 then
    truncation), then nearest-neighbour 36 -> 28 as PIL does it."""
    n = len(left_items)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.float64)
    canvas[:, :ITEM, :ITEM] = left_items
    s = SENER_RIGHT
    canvas[:, s:s + ITEM, s:s + ITEM] = right_items
    canvas[:, s:ITEM, s:ITEM] = np.maximum(left_items[:, s:ITEM, s:ITEM], right_items[:, :ITEM - s, :ITEM - s])
    lo = canvas.min(axis=(1, 2), keepdims=True)
    span = canvas.max(axis=(1, 2), keepdims=True) - lo
    span[span == 0] = 1.0
    scaled = ((canvas - lo) * (255.0 / span)).clip(0, 255) + 0.5
    byte = scaled.astype(np.uint8)
    return byte[:, _NEAREST_36_TO_28][:, :, _NEAREST_36_TO_28]


def make_multi_dataset(kind: str, split: str, root: Union[str, Path, None] = None, seed: int = 0, *,
                       recipe: str = "lin2019", limit: Optional[int] = None, verify: bool = True,
                       download: bool = False, return_info: bool = False):
    """Returns ``(x, y_left, y_right)``: ``x`` float32 ``(N, 1, S, S)`` in [0, 1] (S = 36 for
    ``lin2019``, 28 for ``sener2018``), labels int64 ``(N,)``; with ``return_info=True`` also a dict
    with the source indices of both items and their shifts (for checks and reports).

    ``kind``: "mnist" | "fashion" | "fashion_mnist" (top-left MNIST digit, bottom-right Fashion item).
    ``limit``: only the first ``limit`` images of the full, seeded set (same images as without it).
    Memory: the full lin2019 train split is 120,000 x 36 x 36 float32 = 622 MB.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    src_l, src_r = _SOURCE[kind]
    xl, yl = load_source(src_l, split, root, verify=verify, download=download)
    xr, yr = (xl, yl) if src_r == src_l else load_source(src_r, split, root, verify=verify, download=download)
    rng = np.random.default_rng([int(seed), _KIND_ID[kind], _SPLIT_ID[split], _RECIPE_ID[recipe]])
    info: Dict[str, np.ndarray] = {}
    if recipe == "lin2019":
        n_total = 2 * len(xl)
        left, right = _partners(yl, yr, n_total, src_l == src_r, rng)
        shift_l = rng.integers(0, MAX_SHIFT + 1, size=(n_total, 2))
        shift_r = rng.integers(0, MAX_SHIFT + 1, size=(n_total, 2))
        n = n_total if limit is None else min(int(limit), n_total)
        left, right, shift_l, shift_r = left[:n], right[:n], shift_l[:n], shift_r[:n]
        images = compose_lin2019(xl[left], xr[right], shift_l, shift_r)
        info.update(left_shift=shift_l, right_shift=shift_r)
    else:
        n_total = len(xl)
        left = np.arange(n_total)
        right = rng.integers(0, len(xr), size=n_total)  # one uniform partner per image, as permutation(n)[:1]
        n = n_total if limit is None else min(int(limit), n_total)
        left, right = left[:n], right[:n]
        images = compose_sener2018(xl[left], xr[right])
    info.update(left_index=left, right_index=right)
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    out = (x, torch.from_numpy(yl[left].copy()), torch.from_numpy(yr[right].copy()))
    return (*out, info) if return_info else out


def make_multi_tensor_dataset(kind: str, split: str, root: Union[str, Path, None] = None, seed: int = 0,
                              **kwargs) -> TensorDataset:
    """:func:`make_multi_dataset` as a ``TensorDataset(x, y_left, y_right)`` (the batch layout the
    PHN strategy expects: losses are called ``loss(output, y_left, y_right)``)."""
    return TensorDataset(*make_multi_dataset(kind, split, root, seed, **kwargs))


def train_val_split(n: int, val_size: float = 0.1, seed: int = 42) -> Tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(train, val)``: a seeded random ``val_size`` fraction held out (PHN holds out 10 %
    with ``random_state=42``; the exact sklearn split of their pickles cannot be reproduced here)."""
    if not 0 < val_size < 1:
        raise ValueError(f"val_size must be a fraction in (0, 1), got {val_size!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(np.ceil(val_size * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def load_multimnist(kind: str, root: Union[str, Path, None] = None, *, max_train: Optional[int] = None,
                    max_test: Optional[int] = None, seed: int = 0, subset_seed: int = 0,
                    verify: bool = True, download: bool = False) -> Tuple[TensorDataset, TensorDataset]:
    """PHN's splits of one data set: ``(train, test)`` ``TensorDataset(x, y_left, y_right)``.

    Train: the generated training split less PHN's 10 % validation hold-out (108,000 images);
    test: all 20,000. ``max_train`` / ``max_test``: a seeded subset (``subset_seed``) of that many.
    ``seed`` generates the images (the same data for every run seed, like PHN's fixed pickles).
    """
    out = []
    for split, limit in (("train", max_train), ("test", max_test)):
        x, yl, yr = make_multi_dataset(kind, split, root, seed=seed, verify=verify, download=download)
        keep = train_val_split(len(x))[0] if split == "train" else np.arange(len(x))
        if limit:
            keep = np.sort(np.random.default_rng(subset_seed).choice(keep, size=min(int(limit), len(keep)),
                                                                     replace=False))
        index = torch.from_numpy(keep)
        out.append(TensorDataset(x[index].clone(), yl[index].clone(), yr[index].clone()))
    return out[0], out[1]


def permuted_tasks(n_tasks: int, train: TensorDataset, test: TensorDataset, *,
                   seed: int = 0) -> List[Tuple[TensorDataset, TensorDataset]]:
    """Task t: the same images with a fixed pixel permutation (task 0: none; task t >= 1: the t-th draw of
    ``np.random.RandomState(seed)``), as ``(train, test)`` pairs for a sequence of Pareto tasks."""
    side = train.tensors[0].shape[-1]
    gen = np.random.RandomState(seed)
    tasks = []
    for t in range(n_tasks):
        perm = torch.arange(side * side) if t == 0 else torch.from_numpy(gen.permutation(side * side))

        def permute(data: TensorDataset) -> TensorDataset:
            x, *labels = data.tensors
            return TensorDataset(x.reshape(len(x), -1)[:, perm].reshape(x.shape).contiguous(), *labels)

        tasks.append((permute(train), permute(test)))
    return tasks


class MLPTwoHeads(nn.Module):
    """An MLP target for the two-item images: flatten, hidden ReLU layers, two 10-way heads; logits
    stacked to ``(N, 2, 10)`` like :class:`LeNetTarget` (learns permuted images, which a conv net cannot)."""

    def __init__(self, in_size: int = CANVAS, hidden: Sequence[int] = (100,), n_classes: int = 10,
                 n_tasks: int = 2) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.Flatten()]
        width = in_size * in_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(width, n_classes) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return torch.stack([head(h) for head in self.heads], dim=1)


class LeNetTarget(nn.Module):
    """PHN's LeNet target (Navon et al., ``experiments/multimnist/models.py`` l. 101-172).

    conv 1->10 (9x9) + ReLU + max-pool 2; conv 10->20 (5x5) + ReLU + max-pool 2; flatten;
    linear -> 50 (no activation in PHN's target; ``hidden_relu=True`` adds the ReLU of Lin et al.'s
    LeNet); two heads 50 -> 10. ``forward`` returns the logits stacked to ``(N, 2, 10)`` (column 0 =
    top-left item), one tensor so ``FunctionalTarget``/``vmap`` can batch it over weight sets.
    ``in_size``: 36 (lin2019 data, flatten 500 as in PHN) or 28 (sener2018, flatten 180).
    """

    def __init__(self, in_size: int = CANVAS, n_classes: int = 10, hidden: int = 50, n_tasks: int = 2,
                 hidden_relu: bool = False) -> None:
        super().__init__()
        side = ((in_size - 8) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"in_size {in_size} is too small for a 9x9 and a 5x5 convolution with two 2x2 pools")
        self.in_size, self.hidden_relu = in_size, hidden_relu
        self.conv1 = nn.Conv2d(1, 10, 9)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.fc = nn.Linear(20 * side * side, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n_classes) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, self.in_size, self.in_size):
            raise ValueError(f"LeNetTarget(in_size={self.in_size}) expects (N, 1, {self.in_size}, {self.in_size}) "
                             f"images, got {tuple(x.shape)}; lin2019 data are 36x36, sener2018 data 28x28")
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = self.fc(h.flatten(1))
        if self.hidden_relu:
            h = F.relu(h)
        return torch.stack([head(h) for head in self.heads], dim=1)


def ce_left(output: torch.Tensor, y_left: torch.Tensor, y_right: torch.Tensor) -> torch.Tensor:
    """Objective 1: mean cross-entropy of the top-left item (``output`` is ``(N, 2, C)``)."""
    return F.cross_entropy(output[:, 0], y_left)


def ce_right(output: torch.Tensor, y_left: torch.Tensor, y_right: torch.Tensor) -> torch.Tensor:
    """Objective 2: mean cross-entropy of the bottom-right item."""
    return F.cross_entropy(output[:, 1], y_right)


LOSSES: List = [ce_left, ce_right]


def acc_left(output: torch.Tensor, y_left: torch.Tensor, y_right: torch.Tensor) -> torch.Tensor:
    """Accuracy of the top-left head (a tensor, so :func:`torch.func.vmap` can batch it over models)."""
    return (output[:, 0].argmax(dim=-1) == y_left).float().mean()


def acc_right(output: torch.Tensor, y_left: torch.Tensor, y_right: torch.Tensor) -> torch.Tensor:
    """Accuracy of the bottom-right head."""
    return (output[:, 1].argmax(dim=-1) == y_right).float().mean()


__all__ = ["KINDS", "LOSSES", "LeNetTarget", "MLPTwoHeads", "load_multimnist", "permuted_tasks", "REF_POINT", "acc_left", "acc_right", "ce_left", "ce_right", "compose_lin2019",
           "compose_sener2018", "load_source", "make_multi_dataset", "make_multi_tensor_dataset", "train_val_split"]
