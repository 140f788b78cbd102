"""Data root: where benchmark files are found, checked, and (with a network) fetched.

Order: an explicit ``root`` (the ``data.root=`` override), else ``$CL_MOO_DATA``, else
``~/.cache/cl_moo/data``. Every known file is checked against its sha256; a missing file fails
with a message naming the file, the folder searched and how to provide it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

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
}


class DataFileError(FileNotFoundError):
    """A data file is missing or differs from the published one."""


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
