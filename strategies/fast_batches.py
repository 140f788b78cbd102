"""Whole mini-batches gathered at once from in-memory tensors, inside Avalanche's own data loaders.

Avalanche fetches a mini-batch one sample at a time (its dataset layers, then the collate function):
about 30 us a sample on a 2-core CPU, 4 ms for a batch of 128, a fifth of a permuted-MNIST step. For
data sets whose samples are rows of tensors held in memory (a :class:`RowSource`, tagged on the
Avalanche dataset by :func:`tag_rows`), the loaders here keep Avalanche's samplers, its loop and
every plugin callback, and replace only the fetch: one indexing per batch, on the strategy's device
(device-resident batches: no host-to-device copy per step on a GPU).

Same batches, same order, same random numbers: the samplers and the data loader are Avalanche's,
and before a loader is used a probe batch is fetched both ways and compared exactly; any difference
(a transform, another collate function, an untagged dataset) keeps Avalanche's own fetch. The index of a
data set (its samples' rows and task labels, :func:`row_index`) is read once, not for every loader Avalanche
makes of it (a new one at every evaluation).
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from avalanche.benchmarks.utils import DataAttribute
from avalanche.benchmarks.utils.data_loader import MultiDatasetDataLoader
from torch.utils.data import ConcatDataset, DataLoader, Dataset

ROW_KEY = "source_row_key"  # data attribute: source id * 2**32 + row, for every sample
# set on a gathered batch's task-label tensor when every sample has the same task (known on the host,
# so the model need not read the labels back from the device to route the batch)
SINGLE_TASK = "cl_moo_single_task"
_ROW_BITS = 32
_SOURCES: "weakref.WeakValueDictionary[int, RowSource]" = weakref.WeakValueDictionary()
_LOADER_ARGS_DROPPED = ("batch_size", "shuffle", "sampler", "drop_last", "ffcv_args", "pin_memory", "batch_sampler")


class RowSource:
    """Tensors whose row ``i`` is sample ``i`` (``x`` optionally with its columns permuted by ``perm``,
    as a permuted-MNIST task shares one copy of the images): ``gather(rows)`` returns the samples of
    ``rows`` as one batch ``(x, y, ...)``, on the device asked for (kept there after the first call)."""

    def __init__(self, *tensors: torch.Tensor, perm: Optional[torch.Tensor] = None) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError(f"need tensors of equal length, got lengths {[len(t) for t in tensors]}")
        self.tensors, self.perm = tensors, perm
        self.id = _register(self)

    def __len__(self) -> int:
        return len(self.tensors[0])

    def gather(self, rows: torch.Tensor, device: torch.device) -> List[torch.Tensor]:
        rows = to_device(rows, device)
        out = [on_device(t, device)[rows] for t in self.tensors]
        if self.perm is not None:
            out[0] = out[0].index_select(1, on_device(self.perm, device))
        return out


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor (a batch's indices or labels) on ``device`` without waiting for it: through
    pinned memory, asynchronously on a GPU (a plain copy from pageable memory waits for the queued work)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


# one copy per tensor and device, shared by every source on it (the 100 tasks of PMNIST-100 share one
# image tensor: one copy on the GPU, not 100); dropped with the tensor
_COPIES: Dict[Tuple[int, torch.device], Tuple["weakref.ref[torch.Tensor]", torch.Tensor]] = {}


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``, copied there once."""
    if t.device == device:
        return t
    key = (id(t), device)
    held = _COPIES.get(key)
    if held is None or held[0]() is not t:

        def forget(_: object, key: Tuple[int, torch.device] = key) -> None:
            _COPIES.pop(key, None)

        held = (weakref.ref(t, forget), t.to(device))
        _COPIES[key] = held
    return held[1]


_IDS = itertools.count(1)  # never reused, even after a source is dropped


def _register(source: RowSource) -> int:
    key = next(_IDS)
    _SOURCES[key] = source
    return key


def tag_rows(source: RowSource) -> DataAttribute:
    """The data attribute to add to the Avalanche dataset built on ``source`` (one sample per row, in
    order): it lets :func:`use_gathered_batches` fetch whole batches of it and of any subset or
    concatenation Avalanche makes of it."""
    keys = torch.arange(len(source), dtype=torch.int64) + (source.id << _ROW_BITS)
    return DataAttribute(keys, ROW_KEY)


def _read_index(rows: Any, tasks: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """The row keys and task labels of a dataset's samples, read one sample at a time (slow: tens of ms
    for 10,000 samples)."""
    return torch.as_tensor(list(rows), dtype=torch.int64), torch.as_tensor(list(tasks), dtype=torch.int64)


# a dataset's row keys and task labels, by the identity of the two data attributes they are read from: the
# train() and eval() clones Avalanche makes for every data loader (one per evaluation of an experience) share
# their parent's attributes, so the index is read once per data set; Avalanche's DataAttribute is immutable
# (a subset or concatenation is a new attribute), and an entry is dropped with either attribute
_INDEX: Dict[Tuple[int, int], Tuple["weakref.ref[Any]", "weakref.ref[Any]", torch.Tensor, torch.Tensor]] = {}


def row_index(dataset: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(row keys, task labels)`` of ``dataset``'s samples (int64), read once per data set."""
    rows, tasks = getattr(dataset, ROW_KEY), dataset.targets_task_labels
    if not (isinstance(rows, DataAttribute) and isinstance(tasks, DataAttribute)):
        return _read_index(rows, tasks)  # not known to be immutable: read every time
    key = (id(rows), id(tasks))
    held = _INDEX.get(key)
    if held is None or held[0]() is not rows or held[1]() is not tasks:

        def forget(_: object, key: Tuple[int, int] = key) -> None:
            _INDEX.pop(key, None)

        held = (weakref.ref(rows, forget), weakref.ref(tasks, forget), *_read_index(rows, tasks))
        _INDEX[key] = held
    return held[2], held[3]


class _Gathered:
    """A collated batch (passed through the collate function unchanged)."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch


class GatheredRows(Dataset):
    """The concatenation of Avalanche datasets (as its loaders make) with a whole-batch fetch
    (``__getitems__``, which PyTorch's data loader calls with a batch's indices)."""

    def __init__(self, datasets: Sequence[Any], device: torch.device) -> None:
        self.concat: ConcatDataset[Any] = ConcatDataset(datasets)
        self.device = device
        index = [row_index(d) for d in datasets]
        self.keys = torch.cat([keys for keys, _ in index])
        self.tasks = torch.cat([tasks for _, tasks in index])
        ids = (self.keys >> _ROW_BITS).unique().tolist()
        self.sources = {i: _SOURCES.get(i) for i in ids}
        self.kind: type = list  # the container the collate function returns, set by the probe

    @property
    def complete(self) -> bool:
        return all(s is not None for s in self.sources.values())

    def __len__(self) -> int:
        return len(self.concat)

    def __getitem__(self, i: int) -> Any:
        return self.concat[i]

    def __getitems__(self, indices: Sequence[int]) -> _Gathered:
        return _Gathered(self.gather(indices))

    def gather(self, indices: Sequence[int]) -> Any:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        keys = self.keys[idx]
        ids, rows = keys >> _ROW_BITS, keys & ((1 << _ROW_BITS) - 1)
        if len(self.sources) == 1:
            (source,) = self.sources.values()
            assert source is not None
            parts = source.gather(rows, self.device)
        else:  # e.g. a replay buffer beside the current task: per source, then back in the batch's order
            parts = []
            for key, source in self.sources.items():
                assert source is not None
                where = (ids == key).nonzero().squeeze(1)
                got = source.gather(rows[where], self.device)
                if not parts:
                    parts = [t.new_empty((len(idx), *t.shape[1:])) for t in got]
                where_on_device = to_device(where, self.device)
                for out, t in zip(parts, got):
                    out[where_on_device] = t
        tasks = self.tasks[idx]  # on the host: the one-task check below reads nothing back from the device
        labels = to_device(tasks, self.device)
        if len(tasks) and bool((tasks == tasks[0]).all()):
            setattr(labels, SINGLE_TASK, int(tasks[0]))
        return self.kind([*parts, labels])

    def collate(self, collate_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def collate_or_pass(data: Any) -> Any:
            return data.batch if isinstance(data, _Gathered) else collate_fn(data)

        return collate_or_pass

    def matches(self, collate_fn: Callable[[Any], Any]) -> bool:
        """Whether a probe batch (first, middle and last samples) gathered here equals Avalanche's own
        fetch and collate exactly (values, dtypes, shapes, container type)."""
        n = len(self)
        probe = sorted({0, n // 2, n - 1})
        slow = collate_fn([self.concat[i] for i in probe])
        if not isinstance(slow, (list, tuple)):
            return False
        self.kind = type(slow)
        fast = self.gather(probe)
        return len(fast) == len(slow) and all(
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.cpu(), b.cpu())
            for a, b in zip(fast, slow)
        )


def gathered(datasets: Sequence[Any], collate_fn: Callable[[Any], Any], device: torch.device) -> Optional[GatheredRows]:
    """A :class:`GatheredRows` for ``datasets`` when every sample is a tagged tensor row and the probe
    matches, else None (Avalanche's own fetch is kept)."""
    if not datasets or not all(hasattr(d, ROW_KEY) and hasattr(d, "targets_task_labels") for d in datasets):
        return None
    rows = GatheredRows(datasets, device)
    if len(rows) == 0 or not rows.complete or not rows.matches(collate_fn):
        return None
    return rows


def use_gathered_batches(loader: Any, device: torch.device) -> bool:
    """Makes an Avalanche training loader (``MultiDatasetDataLoader``, e.g. the task-balanced loader)
    fetch whole batches where :func:`gathered` allows; returns whether it was set up."""
    if not isinstance(loader, MultiDatasetDataLoader) or loader.loader_kwargs.get("num_workers", 0) > 0:
        return False
    original = loader._make_pytorch_loader
    cache: Dict[Tuple[int, ...], Optional[GatheredRows]] = {}

    def make(datasets: List[Any], batch_sampler: Any) -> Any:
        key = tuple(id(d) for d in datasets)
        if key not in cache:  # a new epoch reuses the same datasets
            cache[key] = gathered(datasets, loader.loader_kwargs["collate_fn"], device)
        rows = cache[key]
        if rows is None:
            return original(datasets, batch_sampler)
        args = {k: v for k, v in loader.loader_kwargs.items() if k not in _LOADER_ARGS_DROPPED}
        args["collate_fn"] = rows.collate(loader.loader_kwargs["collate_fn"])
        return DataLoader(rows, batch_sampler=batch_sampler, **args)

    loader._make_pytorch_loader = make
    return True


def gathered_loader(loader: Any, device: torch.device) -> Any:
    """``loader`` fetching whole batches where :func:`gathered` allows: an Avalanche loader is set up in
    place (:func:`use_gathered_batches`); a PyTorch ``DataLoader`` is rebuilt with the same sampler,
    batch size and collate function; anything else is returned unchanged."""
    if isinstance(loader, MultiDatasetDataLoader):
        use_gathered_batches(loader, device)
        return loader
    if not isinstance(loader, DataLoader) or loader.num_workers > 0 or loader.batch_size is None:
        return loader
    rows = gathered([loader.dataset], loader.collate_fn, device)
    if rows is None:
        return loader
    return DataLoader(
        rows,
        batch_size=loader.batch_size,
        sampler=loader.sampler,
        drop_last=loader.drop_last,
        collate_fn=rows.collate(loader.collate_fn),
        generator=loader.generator,
    )
