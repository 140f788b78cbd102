"""Every data-file fault gives a DataFileError naming the file (and line/column), never a bare traceback."""
import gzip
import struct

import numpy as np
import pytest

from benchmarks.data.fairness import load_fairness
from benchmarks.data.pmnist import load_mnist
from cl_moo.data import DataFileError, DataFormatError, DegenerateDataError, read_idx
from cl_moo.run import main

RAW = ("MNIST", "raw")


# ----------------------------------------------------------------------------- MNIST idx files

def write_pair(raw, prefix, n_images, n_labels=None, *, image_magic=2051, label_magic=2049, side=28,
               header_n=None, labels=None):
    """Writes a small gzip idx image/label pair; the keywords make one of them faulty."""
    rng = np.random.default_rng(0)
    n_labels = n_images if n_labels is None else n_labels
    images = rng.integers(0, 256, size=(n_images, side, side), dtype=np.uint8)
    labels = np.arange(n_labels, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, np.uint8)
    with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", image_magic, n_images if header_n is None else header_n, side, side)
                + images.tobytes())
    with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", label_magic, n_labels) + labels.tobytes())


@pytest.fixture()
def mnist_root(tmp_path):
    """A stand-in data root with good train (30) and test (20) idx pairs; tests then spoil one file."""
    raw = tmp_path.joinpath(*RAW)
    raw.mkdir(parents=True)
    write_pair(raw, "train", 30)
    write_pair(raw, "t10k", 20)
    return tmp_path


def test_mnist_standin_loads(mnist_root):
    xtr, ytr, xte, yte, info = load_mnist(mnist_root, verify=False)
    assert xtr.shape == (30, 28, 28) and xte.shape == (20, 28, 28) and info["fallback"] is None


def test_truncated_real_training_images_are_named_with_and_without_verify(tmp_path, data_root):
    raw = tmp_path.joinpath(*RAW)
    raw.mkdir(parents=True)
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).symlink_to(data_root.joinpath(*RAW, name).resolve())
    src = data_root.joinpath(*RAW, "train-images-idx3-ubyte.gz").read_bytes()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(src[: len(src) // 4])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz is truncated.*replace it"):
        load_mnist(tmp_path, verify=False)
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\.gz has sha256.*data.verify=false"):
        load_mnist(tmp_path, verify=True)


def test_bad_gzip_crc_is_named(mnist_root):
    path = mnist_root.joinpath(*RAW, "train-labels-idx1-ubyte.gz")
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte\.gz is corrupt: the gzip CRC check failed"):
        load_mnist(mnist_root, verify=False)


def test_not_a_gzip_file_is_named(mnist_root):
    mnist_root.joinpath(*RAW, "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte\.gz is not a gzip file"):
        load_mnist(mnist_root, verify=False)


def test_wrong_magic_number_is_named(mnist_root):
    write_pair(mnist_root.joinpath(*RAW), "train", 30, image_magic=2049)
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz has idx magic number 2049, expected 2051"):
        load_mnist(mnist_root, verify=False)
    write_pair(mnist_root.joinpath(*RAW), "train", 30, label_magic=2051)
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte\.gz has idx magic number 2051, expected 2049"):
        load_mnist(mnist_root, verify=False)


def test_payload_shorter_than_header_counts_is_named(mnist_root):
    write_pair(mnist_root.joinpath(*RAW), "t10k", 20, header_n=25)
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte\.gz: idx header declares 25 x 28 x 28 "
                                              r"ubyte values \(19600 bytes\) but the file holds 15680 bytes"):
        load_mnist(mnist_root, verify=False)


def test_image_size_other_than_28x28_is_named(mnist_root):
    write_pair(mnist_root.joinpath(*RAW), "train", 30, side=32)
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz: .*shape \(32, 32\), expected \(28, 28\)"):
        load_mnist(mnist_root, verify=False)


def test_image_label_count_mismatch_is_named(mnist_root):
    write_pair(mnist_root.joinpath(*RAW), "train", 30, n_labels=29)
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz has 30 images but .*"
                                              r"train-labels-idx1-ubyte\.gz has 29 labels"):
        load_mnist(mnist_root, verify=False)


def test_label_outside_0_to_9_is_named(mnist_root):
    write_pair(mnist_root.joinpath(*RAW), "t10k", 20, labels=[3] * 19 + [200])
    with pytest.raises(DataFormatError, match=r"t10k-labels-idx1-ubyte\.gz: label 200 at index 19"):
        load_mnist(mnist_root, verify=False)


def test_faulty_test_split_is_named_in_the_fallback(tmp_path):
    raw = tmp_path.joinpath(*RAW)
    raw.mkdir(parents=True)
    write_pair(raw, "t10k", 20, header_n=21)  # no training split: the fallback reads this faulty test split
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte\.gz: idx header declares 21"):
        load_mnist(tmp_path, verify=False)
    write_pair(raw, "t10k", 20)  # well formed, but too few images to divide
    with pytest.raises(DegenerateDataError, match=r"training split not found.*only 20 images"):
        load_mnist(tmp_path, verify=False)
    _, _, _, _, info = load_mnist(tmp_path, verify=False, fallback_train=15)
    assert "train-images-idx3-ubyte.gz" in info["fallback"] and "15 train / 5 test" in info["fallback"]


def test_read_idx_checks_plain_idx_header(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(struct.pack(">II", 2049, 3) + bytes([1, 2, 3]))
    assert read_idx(path, magic=2049).tolist() == [1, 2, 3]
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataFormatError, match=r"x\.idx holds 2 bytes, too short for an idx header"):
        read_idx(path)


# ----------------------------------------------------------------------------- fairness CSV files

@pytest.fixture(scope="module")
def adult_lines(data_root):
    """Header and the first 1,500 data lines of the real adult.csv, as lists of cells."""
    with open(data_root / "adult.csv") as f:
        lines = [f.readline().rstrip("\n").split(",") for _ in range(1501)]
    return lines[0], lines[1:]


def write_adult(folder, header, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adult.csv").write_text("".join(",".join(r) + "\n" for r in [header, *rows]))
    return folder


def load(folder, **kw):
    return load_fairness("adult", folder, verify=False, **kw)


def test_adult_excerpt_loads_with_allowed_missing_values(tmp_path, adult_lines):
    header, rows = adult_lines
    rows = [list(r) for r in rows]
    age = header.index("age")
    rows[0][age], rows[1][age], rows[2][age] = "?", "", "nan"  # missing numeric values are imputed
    data, info = load(write_adult(tmp_path, header, rows), seed=0)
    assert info["n_rows"] == 1500
    x = np.concatenate([d.tensors[0].numpy() for d in data.values()])
    assert np.isfinite(x).all()


def test_empty_csv_is_named(tmp_path):
    (tmp_path / "adult.csv").write_text("")
    with pytest.raises(DataFormatError, match=r"adult\.csv is empty"):
        load(tmp_path)


def test_header_only_csv_is_named(tmp_path, adult_lines):
    with pytest.raises(DataFormatError, match=r"adult\.csv has a header but no data rows"):
        load(write_adult(tmp_path, adult_lines[0], []))


@pytest.mark.parametrize("column,role", [("salary", "label column"), ("sex", "sensitive-attribute column"),
                                         ("race", "categorical")])
def test_missing_required_column_is_named(tmp_path, adult_lines, column, role):
    header, rows = adult_lines
    j = header.index(column)
    cut = lambda r: r[:j] + r[j + 1:]  # noqa: E731
    with pytest.raises(DataFormatError, match=rf"adult\.csv lacks the column\(s\) \['{column}'\].*{role}"):
        load(write_adult(tmp_path, cut(header), [cut(r) for r in rows]))


def test_ragged_row_names_its_line(tmp_path, adult_lines):
    header, rows = adult_lines
    rows = [list(r) for r in rows]
    rows[5] = rows[5][:-2]  # file line 7 (header is line 1)
    with pytest.raises(DataFormatError, match=r"adult\.csv, line 7: 13 fields, expected 15"):
        load(write_adult(tmp_path, header, rows))


def test_non_numeric_cell_names_row_column_and_value(tmp_path, adult_lines):
    header, rows = adult_lines
    rows = [list(r) for r in rows]
    rows[3][header.index("hours-per-week")] = "forty"  # file line 5
    with pytest.raises(DataFormatError, match=r"adult\.csv, line 5, column 'hours-per-week': 'forty' is not a "
                                              r"finite number"):
        load(write_adult(tmp_path, header, rows))


def test_empty_label_cell_is_refused(tmp_path, adult_lines):
    header, rows = adult_lines
    rows = [list(r) for r in rows]
    rows[9][header.index("salary")] = ""  # file line 11; was silently class 0
    with pytest.raises(DataFormatError, match=r"adult\.csv, line 11, column 'salary': the label is empty"):
        load(write_adult(tmp_path, header, rows))


def test_unknown_sensitive_value_is_refused(tmp_path, adult_lines):
    header, rows = adult_lines
    rows = [list(r) for r in rows]
    rows[0][header.index("sex")] = "F"  # was silently group 0
    with pytest.raises(DataFormatError, match=r"adult\.csv, line 2, column 'sex': the sensitive attribute is 'F'"):
        load(write_adult(tmp_path, header, rows))


def test_all_missing_numeric_column_is_refused(tmp_path, adult_lines):
    header, rows = adult_lines
    j = header.index("capital-gain")
    rows = [r[:j] + ["?"] + r[j + 1:] for r in rows]  # was silently all 0
    with pytest.raises(DataFormatError, match=r"adult\.csv, column 'capital-gain': no value in any of the 1050 "
                                              r"training rows"):
        load(write_adult(tmp_path, header, rows))


def test_bank_missing_sensitive_age_is_refused(tmp_path, data_root):
    with open(data_root / "bank-full.csv") as f:
        lines = [f.readline() for _ in range(300)]
    lines[4] = ";" + lines[4].split(";", 1)[1]  # empty age on file line 5
    (tmp_path / "bank-full.csv").write_text("".join(lines))
    with pytest.raises(DataFormatError, match=r"bank-full\.csv, line 5, column 'age': the sensitive attribute is "
                                              r"missing"):
        load_fairness("bank", tmp_path, verify=False)


# ----------------------------------------------------------------------------- degenerate fairness data

def select(adult_lines, sex=None, salary=None):
    header, rows = adult_lines
    js, jy = header.index("sex"), header.index("salary")
    return [r for r in rows if (sex is None or r[js] == sex) and (salary is None or r[jy] == salary)]


def test_one_sensitive_group_is_refused_with_counts(tmp_path, adult_lines):
    men = select(adult_lines, sex="Male")
    with pytest.raises(DegenerateDataError, match=rf"adult\.csv: fewer than two sensitive groups among {len(men)} rows "
                                                  rf"\({{'sex=Male': {len(men)}, 'sex=Female': 0}}\)"):
        load(write_adult(tmp_path, adult_lines[0], men))


def test_one_label_class_is_refused_with_counts(tmp_path, adult_lines):
    low = select(adult_lines, salary="<=50K")
    with pytest.raises(DegenerateDataError, match=rf"adult\.csv: fewer than two label classes among {len(low)} rows .*"
                                                  rf"\(y=1\)': 0"):
        load(write_adult(tmp_path, adult_lines[0], low))


def test_empty_group_label_cell_is_refused_with_counts(tmp_path, adult_lines):
    rows = select(adult_lines, sex="Male") + select(adult_lines, sex="Female", salary="<=50K")
    rows += select(adult_lines, sex="Female", salary=">50K")[:1]  # one sample: train or test lacks the cell
    with pytest.raises(DegenerateDataError, match=r"adult\.csv: the (train|test) split \(\d+ of \d+ rows\) has no "
                                                  r"sample in cell \(s=1, y=1\).*FN-rate gap is undefined.*"
                                                  r"\(s=1,y=1\): 0"):
        load(write_adult(tmp_path, adult_lines[0], rows))


@pytest.mark.parametrize("max_rows,problem", [
    (0, r"fewer than two sensitive groups among 0 rows \({'sex=Male': 0, 'sex=Female': 0}\)"),
    (4, r"fewer than two sensitive groups among 4 rows \({'sex=Male': 4, 'sex=Female': 0}\)"),
    (12, r"the test split \(3 of 12 rows\) has no sample in cell \(s=0, y=1\).*\(s=0,y=1\): 0"),
], ids=["0-rows", "4-rows", "12-rows"])
def test_tiny_max_rows_fails_with_counts(data_root, max_rows, problem):
    with pytest.raises(DegenerateDataError, match=rf"adult\.csv \(first {max_rows} rows, "
                                                  rf"benchmark\.max_rows={max_rows}\): {problem}"):
        load_fairness("adult", data_root, max_rows=max_rows)


def test_errors_are_data_file_errors():
    assert issubclass(DataFormatError, DataFileError) and issubclass(DegenerateDataError, DataFileError)
    assert issubclass(DataFileError, FileNotFoundError)


# ----------------------------------------------------------------------------- command line

def run_cli(tmp_path, root, *extra):
    argv = ["benchmark=adult", "strategy=phn_ls", f"data.root={root}", f"run_dir={tmp_path / 'r'}", "progress=false",
            "data.verify=false", "train.epochs=1", *extra]
    return main(argv)


def test_command_line_prints_the_message_and_exits_1(tmp_path, adult_lines, capsys):
    header, rows = adult_lines
    rows = [list(r) for r in rows]
    rows[5] = rows[5] + ["extra"]
    assert run_cli(tmp_path, write_adult(tmp_path / "data", header, rows)) == 1
    err = capsys.readouterr().err
    assert "adult.csv, line 7: 16 fields, expected 15" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_command_line_refuses_tiny_max_rows_with_counts(tmp_path, data_root, capsys):
    assert run_cli(tmp_path, data_root, "benchmark.max_rows=4") == 1
    err = capsys.readouterr().err
    assert "benchmark.max_rows=4" in err and "fewer than two sensitive groups among 4 rows" in err
