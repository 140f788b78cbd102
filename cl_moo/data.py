"""Data root: where benchmark files are found, checked, and (with a network) fetched.

Order: an explicit ``root`` (the ``data.root=`` override), else ``$CL_MOO_DATA``, else
``~/.cache/cl_moo/data``. Every known file is checked against its sha256; a missing file fails
with a message naming the file, the folder searched and how to provide it.

Structural checks that run whatever ``verify`` says: :func:`read_idx` (gzip stream, idx magic,
dimensions, payload size) and :func:`read_csv` (header, ragged rows, named columns, numeric
cells). Every fault raises a :class:`DataFileError` naming the file (and the line and column
where it applies), the problem and the fix.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import os
import shutil
import struct
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

KNOWN_FILES: Dict[str, Dict[str, Optional[str]]] = {
    "adult.csv": {
        "sha256": "49eb07879402f29f1f339e1be2e1d1f3c71975eaff2b3c16aa39c479da3dcf82",
        "source": "UCI Adult, training split adult.data with a header row (https://archive.ics.uci.edu/dataset/2/adult)",
        "url": None,
    },
    "default_credit.csv": {
        "sha256": "5c69a6b4e167dac42c4b22665330404fe49928a198de44d2d061b800cb65f9b1",
        "source": "UCI Default of credit card clients as UCI_Credit_Card.csv (https://archive.ics.uci.edu/dataset/350)",
        "url": None,
    },
    "bank-full.csv": {
        "sha256": "e003ab9ba07160dd9e7dc257e924f4961a6dfaed4a3c2c157c38621995b68c08",
        "source": "UCI Bank Marketing, bank-full.csv (https://archive.ics.uci.edu/dataset/222/bank+marketing)",
        "url": None,
    },
    "MNIST/raw/t10k-images-idx3-ubyte.gz": {
        "sha256": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "source": "MNIST test images",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
    },
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": {
        "sha256": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "source": "MNIST test labels",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
    },
    "MNIST/raw/train-images-idx3-ubyte.gz": {
        "sha256": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "source": "MNIST training images",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    },
    "MNIST/raw/train-labels-idx1-ubyte.gz": {
        "sha256": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "source": "MNIST training labels",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
    },
    # Fashion-MNIST as in Debian's dataset-fashion-mnist: its .gz headers differ from Zalando's upload
    # (same idx content), so these sha256 would not match a download from upstream: no url.
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": {
        "sha256": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "source": "Fashion-MNIST training images (Xiao et al. 2017)",
        "url": None,
    },
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": {
        "sha256": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "source": "Fashion-MNIST training labels (Xiao et al. 2017)",
        "url": None,
    },
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": {
        "sha256": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "source": "Fashion-MNIST test images (Xiao et al. 2017)",
        "url": None,
    },
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": {
        "sha256": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        "source": "Fashion-MNIST test labels (Xiao et al. 2017)",
        "url": None,
    },
}


class DataFileError(FileNotFoundError):
    """A data file is missing or differs from the published one."""


class DataFormatError(DataFileError):
    """A data file is present but unreadable or malformed (bad gzip, idx header, CSV row or cell)."""


class DegenerateDataError(DataFileError):
    """A data file is well formed but its content cannot give a meaningful result (e.g. one class)."""


def data_root(root: Union[str, Path, None] = None) -> Path:
    """Resolves the data root: ``root``, else ``$CL_MOO_DATA``, else ``~/.cache/cl_moo/data``."""
    if root not in (None, ""):
        return Path(root).expanduser().resolve()
    env = os.environ.get("CL_MOO_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "cl_moo" / "data"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out)
    tmp.replace(dest)


def require_file(
    name: str, root: Union[str, Path, None] = None, *, download: bool = False, verify: bool = True
) -> Path:
    """Path of data file ``name`` under the data root, checked against its sha256.

    With ``download=True`` a missing file that has a canonical URL is fetched (needs a network).
    A file whose checksum differs from the published one raises :class:`DataFileError`;
    ``verify=False`` (``data.verify=false``) accepts it, e.g. for a re-compressed copy.
    """
    base = data_root(root)
    path = base / name
    info = KNOWN_FILES.get(name, {})
    if not path.is_file() and download and info.get("url"):
        try:
            _fetch(str(info["url"]), path)
        except OSError as exc:
            raise DataFileError(f"could not fetch {name} from {info['url']}: {exc}") from exc
    if not path.is_file():
        hint = f" ({info['source']})" if info.get("source") else ""
        raise DataFileError(
            f"data file '{name}'{hint} not found in data root {base}. Put it there, point "
            "CL_MOO_DATA (or the data.root= override) at the folder that holds it"
            + (", or allow downloading with data.download=true" if info.get("url") else "")
        )
    expected = info.get("sha256") if verify else None
    if expected:
        actual = sha256(path)
        if actual != expected:
            raise DataFileError(
                f"{path} has sha256 {actual}, expected {expected}: the file differs from the "
                "published one (truncated download or a different version); replace it, or pass "
                "data.verify=false to use it anyway"
            )
    elif info and verify:
        warnings.warn(f"{name}: no published checksum to check against", stacklevel=2)
    return path


# ----------------------------------------------------------------------------- gzip and idx files

_REPLACE = "replace it with the published file (delete it and copy or download it again)"
_IDX_TYPES: Dict[int, Tuple[str, np.dtype]] = {
    0x08: ("ubyte", np.dtype(np.uint8)),
    0x09: ("byte", np.dtype(np.int8)),
    0x0B: ("short", np.dtype(">i2")),
    0x0C: ("int", np.dtype(">i4")),
    0x0D: ("float", np.dtype(">f4")),
    0x0E: ("double", np.dtype(">f8")),
}


def read_gzip(path: Union[str, Path]) -> bytes:
    """Decompressed content of a gzip file; a truncated or corrupt stream raises :class:`DataFormatError`."""
    try:
        with gzip.open(path) as f:
            return f.read()
    except EOFError as exc:
        problem = f"is truncated: the gzip stream ends early ({exc})"
    except gzip.BadGzipFile as exc:
        text = str(exc)
        if "CRC" in text:
            problem = f"is corrupt: the gzip CRC check failed ({text})"
        elif "Not a gzipped file" in text:
            problem = f"is not a gzip file ({text})"
        else:
            problem = f"is a damaged gzip file ({text})"
    except zlib.error as exc:
        problem = f"is corrupt: its compressed data cannot be decompressed (zlib: {exc})"
    except OSError as exc:
        raise DataFileError(f"{path} cannot be read ({exc}); check its permissions, or replace it") from None
    raise DataFormatError(f"{path} {problem}; {_REPLACE}") from None


def _idx_kind(magic: int) -> str:
    kind = _IDX_TYPES.get((magic >> 8) & 0xFF, ("unknown type",))[0]
    return f"idx{magic & 0xFF} {kind}"


def read_idx(
    path: Union[str, Path], *, magic: Optional[int] = None, item_shape: Optional[Sequence[int]] = None
) -> np.ndarray:
    """Array stored in an idx file (``.gz`` is decompressed), with its header checked.

    ``magic`` (e.g. 2051 for MNIST images, 2049 for labels) and ``item_shape`` (the dimensions
    after the count, e.g. ``(28, 28)``) are compared with the header when given; the payload must
    be exactly as long as the header's dimensions say. Every fault raises :class:`DataFormatError`.
    """
    path = Path(path)
    if path.suffix == ".gz":
        data = read_gzip(path)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataFileError(f"{path} cannot be read ({exc}); check its permissions, or replace it") from None
    if len(data) < 4:
        raise DataFormatError(f"{path} holds {len(data)} bytes, too short for an idx header; {_REPLACE}")
    got = struct.unpack(">I", data[:4])[0]
    if magic is not None and got != magic:
        raise DataFormatError(
            f"{path} has idx magic number {got}, expected {magic} ({_idx_kind(magic)}): it is not the file its "
            f"name says (image and label files swapped, or another format); {_REPLACE}"
        )
    ndim, code = data[3], data[2]
    if data[:2] != b"\0\0" or code not in _IDX_TYPES or ndim == 0:
        raise DataFormatError(f"{path} is not an idx file (magic number {got}); {_REPLACE}")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataFormatError(f"{path} is truncated inside its idx header ({len(data)} of {start} bytes); {_REPLACE}")
    dims = struct.unpack(f">{ndim}I", data[4:start])
    if item_shape is not None and tuple(dims[1:]) != tuple(item_shape):
        raise DataFormatError(
            f"{path}: idx header declares items of shape {tuple(dims[1:])}, expected {tuple(item_shape)}; {_REPLACE}"
        )
    dtype = _IDX_TYPES[code][1]
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - start != expected:
        shape = " x ".join(str(d) for d in dims)
        raise DataFormatError(
            f"{path}: idx header declares {shape} {_IDX_TYPES[code][0]} values ({expected} bytes) but the file "
            f"holds {len(data) - start} bytes after the {start}-byte header (truncated or padded); {_REPLACE}"
        )
    return np.frombuffer(data, dtype, offset=start).reshape(dims)


# ----------------------------------------------------------------------------- CSV files

_FIX_ROW = "fix or delete that line, or replace the file with the published one"


@dataclass
class CsvTable:
    """A CSV file read as text cells, with the file line of every row kept for error messages."""

    path: Path
    header: List[str]
    rows: List[List[str]]
    lines: List[int]

    def __len__(self) -> int:
        return len(self.rows)

    def head(self, n: int) -> "CsvTable":
        """The first ``n`` data rows."""
        return CsvTable(self.path, self.header, self.rows[:n], self.lines[:n])

    def require(self, columns: Iterable[str], why: str = "") -> None:
        """Raises :class:`DataFormatError` naming every column of ``columns`` the header lacks."""
        missing = [c for c in columns if c not in self.header]
        if missing:
            raise DataFormatError(
                f"{self.path} lacks the column(s) {missing}{' ' + why if why else ''}; its header has "
                f"{self.header}. Use the published file (with its header row), or rename the column"
            )

    def column(self, name: str) -> List[str]:
        """The cells of column ``name``."""
        self.require([name])
        j = self.header.index(name)
        return [row[j] for row in self.rows]

    def where(self, i: int, column: str) -> str:
        """``"<file>, line <n>, column '<name>'"`` for data row ``i``."""
        return f"{self.path}, line {self.lines[i]}, column '{column}'"

    def numeric(self, name: str, missing: Sequence[str] = ("", "?")) -> np.ndarray:
        """Column ``name`` as float64; ``missing`` cells and ``nan`` become NaN, anything else non-numeric raises."""
        out = np.empty(len(self.rows), dtype=np.float64)
        bad: List[int] = []
        for i, v in enumerate(self.column(name)):
            if v in missing:
                out[i] = np.nan
                continue
            try:
                out[i] = float(v)
            except ValueError:
                bad.append(i)
                continue
            if math.isinf(out[i]):
                bad.append(i)
        if bad:
            i = bad[0]
            more = f" ({len(bad) - 1} more such cells in this column)" if len(bad) > 1 else ""
            marks = " or ".join(repr(m) if m else "empty" for m in missing)
            raise DataFormatError(
                f"{self.where(i, name)}: {self.rows[i][self.header.index(name)]!r} is not a finite number in a "
                f"numeric column{more}; correct the cell, or mark a missing value as {marks}"
            )
        return out

    def codes(self, name: str, values: Mapping[str, int], what: str = "value") -> np.ndarray:
        """Column ``name`` mapped through ``values``; an empty or unlisted cell raises naming row and value."""
        out = np.empty(len(self.rows), dtype=np.int64)
        self.require([name])
        j = self.header.index(name)
        for i, row in enumerate(self.rows):
            code = values.get(row[j])
            if code is None:
                cell = "empty" if row[j] == "" else f"{row[j]!r}, not a known value"
                raise DataFormatError(
                    f"{self.where(i, name)}: {what} is {cell}; expected one of {sorted(values)}. Fill in or correct "
                    "the cell, or delete the row"
                )
            out[i] = code
        return out


def read_csv(path: Union[str, Path], delimiter: str = ",", strip: str = '"') -> CsvTable:
    """Reads a CSV file with a header row; cells and names are stripped of spaces and ``strip``.

    Blank lines are skipped. An unreadable, empty or header-only file, a duplicate or empty
    column name, or a row whose number of fields differs from the header's raises
    :class:`DataFormatError` naming the file and line.
    """
    path = Path(path)
    header: Optional[List[str]] = None
    rows: List[List[str]] = []
    lines: List[int] = []
    ragged: List[Tuple[int, int]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for raw in reader:
                cells = [c.strip().strip(strip) for c in raw]
                if not any(cells):
                    continue
                if header is None:
                    header = cells
                    continue
                if len(cells) != len(header):
                    ragged.append((reader.line_num, len(cells)))
                    continue
                rows.append(cells)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path} is not a UTF-8 text file ({exc}); {_REPLACE}") from None
    except OSError as exc:
        raise DataFileError(f"{path} cannot be read ({exc}); check its permissions, or replace it") from None
    except csv.Error as exc:
        raise DataFormatError(f"{path}, line {reader.line_num}: unreadable CSV ({exc}); {_FIX_ROW}") from None
    if header is None:
        raise DataFormatError(f"{path} is empty (no header row, no data); {_REPLACE}")
    if len(header) < 2:
        raise DataFormatError(
            f"{path}: the header has a single column {header}; the file is not separated by {delimiter!r} as "
            f"expected; {_REPLACE}"
        )
    dup = sorted({c for c in header if header.count(c) > 1 or not c})
    if dup:
        raise DataFormatError(f"{path}: duplicate or empty column names {dup} in the header; name each column once")
    if ragged:
        line, n = ragged[0]
        more = f" ({len(ragged) - 1} more such lines)" if len(ragged) > 1 else ""
        raise DataFormatError(
            f"{path}, line {line}: {n} fields, expected {len(header)} as in the header (a cut-short row or a stray "
            f"{delimiter!r}){more}; {_FIX_ROW}"
        )
    if not rows:
        raise DataFormatError(f"{path} has a header but no data rows; {_REPLACE}")
    return CsvTable(path, header, rows, lines)
