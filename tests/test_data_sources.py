"""Data files in the forms they are published in: Fashion-MNIST .gz packed by anyone (checked by the
decompressed idx content), UCI Adult as UCI distributes it (no header row, ", " separators, adult.test's
first line and label dots), checked by the normalised content (cl_moo/data.py's docstring)."""

import gzip
import hashlib
import io

import numpy as np
import pytest
import torch

import cl_moo.data
from benchmarks.data.fairness import SPECS, load_fairness
from benchmarks.data.multimnist import load_source
from cl_moo.data import (
    ADULT_COLUMNS,
    KNOWN_FILES,
    DataFileError,
    DataFormatError,
    read_csv,
    read_data_csv,
    read_gzip,
    require_file,
)

FASHION_TEST = ("FashionMNIST/raw/t10k-images-idx3-ubyte.gz", "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz")


def regzip(content: bytes, dest, name: str, mtime: int, level: int) -> None:
    """``content`` gzipped with another header than the shared copy's (stored file name, time, level)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as raw, gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=mtime,
                                                 compresslevel=level) as f:
        f.write(content)


# ----------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_regzipped_with_another_header_is_accepted_and_loads_the_same(tmp_path, data_root):
    for name in FASHION_TEST:
        regzip(read_gzip(data_root / name), tmp_path / name, "other-name", mtime=1234567890, level=1)
        assert (tmp_path / name).read_bytes() != (data_root / name).read_bytes()  # not the known .gz bytes
        require_file(name, tmp_path)  # verify=True: accepted by the decompressed content
    x, y = load_source("fashion", "test", tmp_path)
    x_ref, y_ref = load_source("fashion", "test", data_root)
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)


def test_fashion_changed_content_is_refused_with_file_expected_found_and_source(tmp_path, data_root):
    name = FASHION_TEST[1]
    content = bytearray(read_gzip(data_root / name))
    content[8 + 5] = (content[8 + 5] + 1) % 10  # one label changed: still a well-formed idx file
    regzip(bytes(content), tmp_path / name, "t10k-labels-idx1-ubyte", mtime=0, level=9)
    regzip(read_gzip(data_root / FASHION_TEST[0]), tmp_path / FASHION_TEST[0], "x", mtime=0, level=1)
    found = hashlib.sha256(bytes(content)).hexdigest()
    expected = KNOWN_FILES[name]["content_sha256"]
    with pytest.raises(DataFileError) as info:
        load_source("fashion", "test", tmp_path)
    msg = str(info.value)
    assert f"{tmp_path / name} has sha256 " in msg and KNOWN_FILES[name]["sha256"] in msg
    assert "bb300cfdad3c16e7a12a480ee83cd310" in msg  # Zalando's published MD5 of the .gz
    assert f"decompressed idx content (10008 bytes) has sha256 {found}, expected {expected}" in msg
    assert "not only its gzip header" in msg and "data.verify=false" in msg
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz" in msg
    assert "dataset-fashion-mnist" in msg
    x, y = load_source("fashion", "test", tmp_path, verify=False)  # structure intact: only the check sees it
    assert (y != load_source("fashion", "test", data_root)[1]).sum() == 1


def test_a_published_md5_is_accepted_and_a_truncated_copy_is_named(tmp_path, data_root, monkeypatch):
    name = FASHION_TEST[1]
    dest = tmp_path / name
    dest.parent.mkdir(parents=True)
    data = (data_root / name).read_bytes()
    dest.write_bytes(data[:-20])  # truncated: neither the bytes nor the content can match
    with pytest.raises(DataFileError, match=r"has sha256 .*, and its content cannot be checked: .*truncated.*"
                                            r"data\.verify=false"):
        require_file(name, tmp_path)
    # a file whose MD5 is a published one (like Zalando's .gz for torchvision) is accepted on that alone
    entry = dict(KNOWN_FILES[name], md5=(hashlib.md5(data[:-20]).hexdigest(),))
    monkeypatch.setitem(KNOWN_FILES, name, entry)
    assert require_file(name, tmp_path) == dest


def test_fashion_published_checksums_are_listed():
    md5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
           "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
           "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
           "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
    for file, digest in md5.items():
        entry = KNOWN_FILES[f"FashionMNIST/raw/{file}"]
        assert entry["md5"] == (digest,) and entry["url"].endswith(file)
        assert "Zalando" in entry["source"] and "Debian" in entry["source"]


class _Served:
    """Stands in for ``urllib.request.urlopen``: serves the shared copies' bytes by URL (no network)."""

    def __init__(self, files):
        self.files, self.urls = files, []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        if url not in self.files:
            raise OSError(f"no network in the tests: {url}")
        return io.BytesIO(self.files[url])


def test_download_fetches_a_missing_file_into_the_data_root_and_verifies_it(tmp_path, data_root, monkeypatch):
    """data.download=true (require_file(download=True), which load_source passes on): the missing files
    are fetched from their KNOWN_FILES url into the data root and checked; an unreachable url is named."""
    served = _Served({KNOWN_FILES[n]["url"]: (data_root / n).read_bytes() for n in FASHION_TEST})
    monkeypatch.setattr(cl_moo.data.urllib.request, "urlopen", served)
    with pytest.raises(DataFileError, match="not found in data root.*data.download=true"):
        require_file(FASHION_TEST[1], tmp_path)  # without download: nothing is fetched
    assert served.urls == []
    x, y = load_source("fashion", "test", tmp_path, download=True)
    assert served.urls == [KNOWN_FILES[n]["url"] for n in FASHION_TEST]
    for name in FASHION_TEST:
        assert (tmp_path / name).read_bytes() == (data_root / name).read_bytes()
        assert not (tmp_path / (name + ".part")).exists()
    x_ref, y_ref = load_source("fashion", "test", data_root)
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    require_file(FASHION_TEST[1], tmp_path, download=True)  # present: not fetched again
    assert len(served.urls) == 2
    name = "MNIST/raw/t10k-labels-idx1-ubyte.gz"  # no copy served: the failed fetch names the file and url
    with pytest.raises(DataFileError, match=rf"could not fetch {name} from {KNOWN_FILES[name]['url']}"):
        require_file(name, tmp_path, download=True)


def test_a_corrupted_download_is_refused(tmp_path, data_root, monkeypatch):
    name = FASHION_TEST[1]
    data = bytearray((data_root / name).read_bytes())
    served = _Served({KNOWN_FILES[name]["url"]: bytes(data[:-20])})  # cut short in transit
    monkeypatch.setattr(cl_moo.data.urllib.request, "urlopen", served)
    with pytest.raises(DataFileError, match=r"has sha256 .*content cannot be checked.*data\.verify=false.*was removed"):
        require_file(name, tmp_path, download=True)
    assert served.urls == [KNOWN_FILES[name]["url"]]
    assert not (tmp_path / name).exists()  # not left for the next run (with data.verify=false) to read


# ----------------------------------------------------------------------------- UCI Adult, raw form


@pytest.fixture(scope="module")
def adult_rows(data_root):
    table = read_csv(data_root / "adult.csv")
    assert tuple(table.header) == ADULT_COLUMNS
    return table.rows


def uci_lines(rows, dot=False):
    """Rows as UCI writes them: ", " between values, no header; adult.test's labels end with '.'."""
    return ["".join([", ".join(r), "." if dot else ""]) + "\n" for r in rows]


def test_raw_adult_data_loads_to_the_same_arrays_as_the_shared_csv(tmp_path, data_root, adult_rows):
    (tmp_path / "adult.data").write_text("".join(uci_lines(adult_rows)) + "\n")  # UCI's file ends with a blank line
    assert require_file("adult.data", tmp_path) == tmp_path / "adult.data"  # verify=True: normalised content
    raw, raw_info = load_fairness("adult", tmp_path, seed=1)
    ref, ref_info = load_fairness("adult", data_root, seed=1)
    assert raw_info == ref_info and raw_info["n_rows"] == 32561
    for part in ("train", "val", "test"):
        for a, b in zip(raw[part].tensors, ref[part].tensors):
            assert torch.equal(a, b)


def test_raw_adult_data_is_parsed_once_by_its_check_and_its_read(tmp_path, adult_rows, monkeypatch):
    (tmp_path / "adult.data").write_text("".join(uci_lines(adult_rows)))
    calls = []
    monkeypatch.setattr(cl_moo.data, "read_csv", lambda *a, **k: calls.append(a) or read_csv(*a, **k))
    checked = read_data_csv("adult.data", tmp_path)  # verify=True: the content check parses the file
    assert len(calls) == 1
    unchecked = read_data_csv("adult.data", tmp_path, verify=False)
    assert len(calls) == 2 and checked.header == unchecked.header and checked.rows == unchecked.rows


def test_raw_adult_data_with_a_changed_cell_fails_its_content_check(tmp_path, adult_rows):
    rows = [list(r) for r in adult_rows]
    rows[100][ADULT_COLUMNS.index("age")] = str(int(rows[100][0]) + 1)
    (tmp_path / "adult.data").write_text("".join(uci_lines(rows)))
    with pytest.raises(DataFileError, match=r"adult\.data has sha256 [0-9a-f]{64}, and its normalised content "
                                            r"\(32561 data rows of 15 columns; .*\) has sha256 [0-9a-f]{64}, expected "
                                            r"49eb0787.*archive\.ics\.uci\.edu.*data\.verify=false"):
        load_fairness("adult", tmp_path)
    _, info = load_fairness("adult", tmp_path, verify=False)
    assert info["n_rows"] == 32561


def test_adult_test_as_distributed_is_read_with_its_first_line_and_label_dots(tmp_path, adult_rows):
    rows = adult_rows[:16281]  # a stand-in with adult.test's layout and row count
    (tmp_path / "adult.test").write_text("|1x3 Cross validator\n" + "".join(uci_lines(rows, dot=True)) + "\n")
    table = read_data_csv("adult.test", tmp_path)  # verify=True: 16,281 rows of the 15 columns
    assert tuple(table.header) == ADULT_COLUMNS and table.lines[0] == 2
    salary = ADULT_COLUMNS.index("salary")
    assert [r[:salary] for r in table.rows] == [r[:salary] for r in rows]
    assert all(r[salary] == s[salary] + "." for r, s in zip(table.rows, rows))
    labels = SPECS["adult"].label_values
    assert [labels[r[salary]] for r in table.rows] == [labels[r[salary]] for r in rows]
    (tmp_path / "adult.test").write_text("|1x3 Cross validator\n" + "".join(uci_lines(rows[:-1], dot=True)))
    with pytest.raises(DataFileError, match=r"adult\.test holds 16280 data rows of 15 columns, expected 16281"):
        read_data_csv("adult.test", tmp_path)


def test_raw_adult_data_with_a_header_row_and_csv_preferred_over_data(tmp_path, adult_rows):
    (tmp_path / "adult.data").write_text(", ".join(ADULT_COLUMNS) + "\n" + "".join(uci_lines(adult_rows[:400])))
    table = read_data_csv("adult.data", tmp_path, verify=False)
    assert table.rows == adult_rows[:400] and table.lines[0] == 2
    (tmp_path / "adult.csv").write_text(",".join(ADULT_COLUMNS) + "\n" + "".join(",".join(r) + "\n"
                                                                                 for r in adult_rows[:300]))
    _, info = load_fairness("adult", tmp_path, verify=False)
    assert info["n_rows"] == 300  # adult.csv is read when both are there


@pytest.mark.parametrize("verify", [True, False])
def test_degenerate_raw_adult_data_is_refused_with_counts(tmp_path, adult_rows, verify):
    path = tmp_path / "adult.data"
    path.write_text("")
    with pytest.raises(DataFormatError, match=r"adult\.data is empty \(0 data rows; expected rows of 15 fields\)"):
        load_fairness("adult", tmp_path, verify=verify)
    path.write_text("\n \n\n")  # blank lines only
    with pytest.raises(DataFormatError, match=r"adult\.data is empty \(0 data rows"):
        load_fairness("adult", tmp_path, verify=verify)
    path.write_text("".join(uci_lines([r[1:] for r in adult_rows[:50]])))  # a column missing in every row
    with pytest.raises(DataFormatError, match=r"adult\.data, line 1: 14 fields, expected 15 for its 15 columns "
                                              r"\['age', .*\(49 more such lines\); 50 of 50 data rows"):
        load_fairness("adult", tmp_path, verify=verify)
    rows = [list(r) for r in adult_rows[:50]]
    rows[6] = rows[6] + ["extra"]
    path.write_text("".join(uci_lines(rows)))
    with pytest.raises(DataFormatError, match=r"adult\.data, line 7: 16 fields, expected 15 .*; 1 of 50 data rows"):
        load_fairness("adult", tmp_path, verify=verify)


def test_missing_adult_names_both_forms(tmp_path):
    with pytest.raises(DataFileError, match=r"'adult\.csv' .*the raw adult\.data is read too.*not found"):
        load_fairness("adult", tmp_path)


def test_a_file_known_only_by_its_bytes_is_refused_when_they_differ(tmp_path, data_root):
    text = (data_root / "bank-full.csv").read_text()
    (tmp_path / "bank-full.csv").write_text(text.replace(";", " ;", 1))  # same cells once stripped
    with pytest.raises(DataFileError, match=r"bank-full\.csv has sha256 [0-9a-f]{64}, expected e003ab9b.*differs "
                                            r"from the published one.*data\.verify=false"):
        require_file("bank-full.csv", tmp_path)
