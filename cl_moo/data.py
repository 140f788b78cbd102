"""Data root: where benchmark files are found, checked, and (with a network) fetched.

Order: an explicit ``root`` (the ``data.root=`` override), else ``$CL_MOO_DATA``, else
``~/.cache/cl_moo/data``. Every known file is checked (:data:`KNOWN_FILES`, :func:`require_file`);
a missing file fails with a message naming the file, the folder searched and how to provide it.

What is verified, per file: its bytes' sha256 (or a published MD5) when they match a known copy;
otherwise its content, which does not depend on how a copy was packed:

* ``.gz`` idx files: the sha256 of the decompressed idx bytes, the same in every distribution
  (Zalando's and torchvision's .gz, Debian's re-compressed ones, a copy gzipped again), whatever
  the gzip header (file name, time stamp, compression level) says;
* CSV files: the sha256 of the normalised text: blank lines and comment lines dropped, every cell
  stripped of spaces (and of ``"``), the header row (the known column names where the file has
  none) and every data row joined by ``,`` and ended by ``\\n``, encoded UTF-8. ``adult.csv`` is
  already in this form, so the raw UCI ``adult.data`` (no header row, ``", "`` separators) is
  checked against ``adult.csv``'s sha256: the same 32,561 rows, cell for cell;
* ``adult.test``, whose content we have no copy of: 16,281 data rows of the 15 UCI columns.

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
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np


class KnownFile(TypedDict, total=False):
    """What is known of a data file; every key is optional."""

    sha256: Optional[str]  # of the file's bytes: the copy in the shared data folder
    md5: Tuple[str, ...]  # of the bytes of other published copies (e.g. the upstream .gz, as torchvision checks)
    content_sha256: str  # of the decompressed idx bytes (.gz) or of the normalised CSV text (module docstring)
    rows: int  # CSV: number of data rows, checked where no content sha256 is known
    columns: Tuple[str, ...]  # CSV without a header row: its column names
    comment: str  # CSV: lines starting with this are skipped
    delimiter: str  # CSV: the field separator, "," if not given
    source: str  # what the file is and where it comes from
    url: Optional[str]  # canonical download address (data.download=true)


_ADULT = "https://archive.ics.uci.edu/dataset/2/adult"
ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
    "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "salary",
)  # fmt: skip
_ADULT_SHA = "49eb07879402f29f1f339e1be2e1d1f3c71975eaff2b3c16aa39c479da3dcf82"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION = (
    f"Zalando's upload ({_FASHION_URL}, the files torchvision fetches; also "
    "https://github.com/zalandoresearch/fashion-mnist, folder data/fashion) or Debian's package dataset-fashion-mnist"
)

KNOWN_FILES: Dict[str, KnownFile] = {
    # The shared copy is adult.data with a header row; already in normalised form (content = bytes).
    "adult.csv": {
        "sha256": _ADULT_SHA,
        "content_sha256": _ADULT_SHA,
        "source": f"UCI Adult, training split adult.data with a header row ({_ADULT}); the raw adult.data is read too",
        "url": None,
    },
    # The raw UCI files (no header row, ", " separators): their bytes' sha256 is not known here.
    "adult.data": {
        "sha256": None,
        "content_sha256": _ADULT_SHA,
        "columns": ADULT_COLUMNS,
        "source": f"UCI Adult, training split adult.data as distributed, no header row ({_ADULT})",
        "url": None,
    },
    "adult.test": {
        "sha256": None,
        "rows": 16281,
        "columns": ADULT_COLUMNS,
        "comment": "|",
        "source": f"UCI Adult, test split adult.test as distributed (first line '|1x3 Cross validator') ({_ADULT})",
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
        "content_sha256": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "source": "MNIST test images",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
    },
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": {
        "sha256": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "content_sha256": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "source": "MNIST test labels",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
    },
    "MNIST/raw/train-images-idx3-ubyte.gz": {
        "sha256": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "content_sha256": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "source": "MNIST training images",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    },
    "MNIST/raw/train-labels-idx1-ubyte.gz": {
        "sha256": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "content_sha256": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "source": "MNIST training labels",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
    },
    # Fashion-MNIST: sha256 of Debian's dataset-fashion-mnist .gz (the shared copy; Debian drops the stored file
    # name from the gzip header), MD5 of Zalando's upload (torchvision's check); the idx content is the same in both.
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": {
        "sha256": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "md5": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
        "content_sha256": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "source": f"Fashion-MNIST training images (Xiao et al. 2017), from {_FASHION}",
        "url": _FASHION_URL + "train-images-idx3-ubyte.gz",
    },
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": {
        "sha256": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "md5": ("25c81989df183df01b3e8a0aad5dffbe",),
        "content_sha256": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "source": f"Fashion-MNIST training labels (Xiao et al. 2017), from {_FASHION}",
        "url": _FASHION_URL + "train-labels-idx1-ubyte.gz",
    },
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": {
        "sha256": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "md5": ("bef4ecab320f06d8554ea6380940ec79",),
        "content_sha256": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "source": f"Fashion-MNIST test images (Xiao et al. 2017), from {_FASHION}",
        "url": _FASHION_URL + "t10k-images-idx3-ubyte.gz",
    },
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": {
        "sha256": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        "md5": ("bb300cfdad3c16e7a12a480ee83cd310",),
        "content_sha256": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "source": f"Fashion-MNIST test labels (Xiao et al. 2017), from {_FASHION}",
        "url": _FASHION_URL + "t10k-labels-idx1-ubyte.gz",
    },
}


def add_known_files(entries: Mapping[str, KnownFile]) -> None:
    """Adds what is known of more data files to :data:`KNOWN_FILES` (a benchmark defined outside the library
    brings its own checksums: ``benchmarks.data.registry.register_benchmark(..., known_files=...)``). The same
    entry again is accepted; a different entry for a name already known raises ``ValueError``."""
    for name, info in entries.items():
        known = KNOWN_FILES.get(name)
        if known is not None and dict(known) != dict(info):
            raise ValueError(
                f"data file {name!r} is already known with other checksums ({dict(known)}); "
                "a file name means one file: give the new file its own name"
            )
    for name, info in entries.items():
        KNOWN_FILES[name] = info


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
    A file that matches neither a known checksum of its bytes nor its known content (module
    docstring; a re-compressed .gz or UCI's raw ``adult.data`` passes by content) raises
    :class:`DataFileError`; ``verify=False`` (``data.verify=false``) accepts it.
    """
    return _require(name, root, download=download, verify=verify)[0]


def _require(
    name: str, root: Union[str, Path, None], *, download: bool, verify: bool
) -> Tuple[Path, Optional["CsvTable"]]:
    """:func:`require_file`, also returning the table the content check parsed (``None`` when it parsed none)."""
    base = data_root(root)
    path = base / name
    info = KNOWN_FILES.get(name, {})
    fetched = False
    if not path.is_file() and download and info.get("url"):
        try:
            _fetch(str(info["url"]), path)
        except OSError as exc:
            raise DataFileError(f"could not fetch {name} from {info['url']}: {exc}") from exc
        fetched = True
    if not path.is_file():
        hint = f" ({info['source']})" if info.get("source") else ""
        raise DataFileError(
            f"data file '{name}'{hint} not found in data root {base}. Put it there, point "
            "CL_MOO_DATA (or the data.root= override) at the folder that holds it"
            + (", or allow downloading with data.download=true" if info.get("url") else "")
        )
    table = None
    if verify and info:
        try:
            table = _verify(path, info)
        except DataFileError as exc:
            if not fetched:
                raise
            path.unlink(missing_ok=True)  # a bad download is not left where the next run would find it
            raise DataFileError(
                f"{exc} (the file just downloaded from {info['url']} failed this check and was "
                "removed; try again, or place a good copy there)"
            ) from None
    return path, table


def read_data_csv(
    name: str, root: Union[str, Path, None] = None, *, delimiter: str = ",", verify: bool = True
) -> "CsvTable":
    """Known CSV file ``name``, checked by :func:`require_file` and read by :func:`read_csv` with its known
    layout (:data:`KNOWN_FILES`: the column names of a file without a header row, comment lines)."""
    info = KNOWN_FILES.get(name, {})
    path, checked = _require(name, root, download=False, verify=verify)
    if checked is not None and info.get("delimiter", ",") == info.get("delimiter", delimiter):
        return checked  # the content check already read it with this layout (UCI's raw adult.data)
    return read_csv(path, info.get("delimiter", delimiter), columns=info.get("columns"), comment=info.get("comment"))


def _digests(path: Path) -> Tuple[str, str]:
    """sha256 and MD5 of a file's bytes, in one pass."""
    h, m = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            m.update(block)
    return h.hexdigest(), m.hexdigest()


def csv_content_sha256(table: "CsvTable") -> str:
    """sha256 of a table's normalised text: header and rows, cells joined by ``,``, each row ended by ``\\n``."""
    h = hashlib.sha256()
    for row in [table.header, *table.rows]:
        h.update((",".join(row) + "\n").encode("utf-8"))
    return h.hexdigest()


def _verify(path: Path, info: KnownFile) -> Optional["CsvTable"]:
    """Checks ``path`` against what :data:`KNOWN_FILES` knows of it (see the module docstring); raises
    :class:`DataFileError` naming the file, what was expected and found, and where to get the file.
    Returns the table when the check had to parse a CSV file's content, else ``None``."""
    expected, md5s = info.get("sha256"), info.get("md5", ())
    content, rows = info.get("content_sha256"), info.get("rows")
    if not (expected or md5s or content or rows):
        warnings.warn(f"{path.name}: no published checksum to check against", stacklevel=4)
        return None
    actual, md5 = _digests(path)
    if actual == expected or md5 in md5s:
        return None
    found = f"{path} has sha256 {actual}" + (f", expected {expected}" if expected else "")
    if md5s:
        found += f" (or MD5 {' or '.join(md5s)}; its MD5 is {md5})"
    url = info.get("url")
    get = f"replace it with the published file: {info.get('source', path.name)}"
    fix = get + (f" (download: {url})" if url else "") + "; or pass data.verify=false to use it anyway"
    if not content and rows is None:
        raise DataFileError(
            f"{found}: the file differs from the published one (truncated download or a different version); {fix}"
        )
    if path.suffix == ".gz":
        try:
            data = read_gzip(path)
        except DataFormatError as exc:
            raise DataFileError(f"{found}, and its content cannot be checked: {exc}; {fix}") from None
        got = hashlib.sha256(data).hexdigest()
        if got != content:
            raise DataFileError(
                f"{found}, and its decompressed idx content ({len(data)} bytes) has sha256 {got}, expected {content}: "
                f"the data differ from the published file, not only its gzip header (truncated, corrupt or another "
                f"version); {fix}"
            )
        return None
    table = read_csv(path, info.get("delimiter", ","), columns=info.get("columns"), comment=info.get("comment"))
    shape = f"{len(table)} data rows of {len(table.header)} columns"
    if content:
        got = csv_content_sha256(table)
        if got != content:
            raise DataFileError(
                f"{found}, and its normalised content ({shape}; cells stripped of spaces, joined by ',') has sha256 "
                f"{got}, expected {content}: the data differ from the published file; {fix}"
            )
    elif rows is not None and len(table) != rows:
        raise DataFileError(
            f"{path} holds {shape}, expected {rows} data rows: the file differs from the published one; {fix}"
        )
    return table


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


def read_csv(
    path: Union[str, Path],
    delimiter: str = ",",
    strip: str = '"',
    *,
    columns: Optional[Sequence[str]] = None,
    comment: Optional[str] = None,
) -> CsvTable:
    """Reads a CSV file with a header row; cells and names are stripped of spaces and ``strip``.

    ``columns``: the file has no header row (like UCI's ``adult.data``) and these are its column
    names; a first row equal to them is still taken as the header. ``comment``: lines whose first
    character (after spaces) is this are skipped, e.g. ``|`` for ``adult.test``'s first line.
    Blank lines are skipped. An unreadable, empty or header-only file, a duplicate or empty
    column name, or a row whose number of fields differs from the header's raises
    :class:`DataFormatError` naming the file and line.
    """
    path = Path(path)
    header: Optional[List[str]] = None if columns is None else [c.strip() for c in columns]
    first = True
    rows: List[List[str]] = []
    lines: List[int] = []
    ragged: List[Tuple[int, int]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for raw in reader:
                cells = [c.strip().strip(strip) for c in raw]
                if not any(cells) or (comment and raw[0].lstrip().startswith(comment)):
                    continue
                if header is None or (first and cells == header):
                    header, first = cells, False
                    continue
                first = False
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
    named = "as in the header" if columns is None else f"for its {len(header)} columns {header}"
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
            f"{path}, line {line}: {n} fields, expected {len(header)} {named} (a cut-short row or a stray "
            f"{delimiter!r}){more}; {len(ragged)} of {len(ragged) + len(rows)} data rows have another number of "
            f"fields; {_FIX_ROW}"
        )
    if not rows:
        what = "has a header but no data rows" if columns is None else "is empty"
        raise DataFormatError(f"{path} {what} (0 data rows; expected rows of {len(header)} fields); {_REPLACE}")
    return CsvTable(path, header, rows, lines)
