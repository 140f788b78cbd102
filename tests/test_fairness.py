import pytest
import torch

from benchmarks.data.fairness import FAIRNESS_LOSSES, fn_gap_loss, fp_gap_loss, hard_objectives, load_fairness
from cl_moo.data import DataFileError


@pytest.mark.parametrize("name,rows,pos", [("adult", 32561, 7841), ("default", 30000, 6636), ("bank", 45211, 5289)])
def test_real_files_load_with_published_counts(data_root, name, rows, pos):
    data, info = load_fairness(name, data_root, seed=0)
    assert info["n_rows"] == rows
    assert info["positive_rate"] == pytest.approx(pos / rows)
    sizes = {k: len(v) for k, v in data.items()}
    assert sum(sizes.values()) == rows and sizes["train"] == int(0.7 * rows)
    x_train = data["train"].tensors[0]
    numeric = [i for i, n in enumerate(info["feature_names"]) if "=" not in n]
    # standardised with training statistics: mean 0, std 1 on the training split
    assert torch.allclose(x_train[:, numeric].mean(0), torch.zeros(len(numeric)), atol=1e-4)
    assert torch.isfinite(x_train).all()


def test_split_is_fixed_by_seed(data_root):
    a, _ = load_fairness("adult", data_root, seed=3, max_rows=2000)
    b, _ = load_fairness("adult", data_root, seed=3, max_rows=2000)
    c, _ = load_fairness("adult", data_root, seed=4, max_rows=2000)
    assert torch.equal(a["test"].tensors[0], b["test"].tensors[0])
    assert not torch.equal(a["test"].tensors[0], c["test"].tensors[0])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataFileError, match=r"'adult.csv'.*not found.*CL_MOO_DATA"):
        load_fairness("adult", tmp_path)


def test_changed_file_fails_its_checksum(tmp_path):
    (tmp_path / "adult.csv").write_text("age,sex,salary\n30,Male,<=50K\n")
    with pytest.raises(DataFileError, match="sha256"):
        load_fairness("adult", tmp_path)


def test_rate_gaps_by_hand():
    y = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    s = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    z = torch.tensor([5.0, -5.0, -5.0, -5.0, 5.0, 5.0, 5.0, -5.0])
    hard = hard_objectives(z, y, s)
    assert hard[1].item() == pytest.approx(0.5)  # FPR 1/2 in group 0, 0 in group 1
    assert hard[2].item() == pytest.approx(0.5)  # FNR 0 in group 0, 1/2 in group 1
    assert fp_gap_loss(z, y, s).item() == pytest.approx(0.5, abs=0.01)
    assert fn_gap_loss(z, y, s).item() == pytest.approx(0.5, abs=0.01)
    z.requires_grad_(True)
    sum(fn(z, y, s) for fn in FAIRNESS_LOSSES).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
