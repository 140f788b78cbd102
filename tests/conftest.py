import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: the workers share the cores, one thread each
    os.environ["OMP_NUM_THREADS"] = "1"  # and the runs they start as subprocesses too
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Data root for tests: CL_MOO_DATA, else ../shared/data beside the project."""
    # absolute: tests that change the working directory (CI passes CL_MOO_DATA=../shared/data) still find it
    root = Path(os.environ.get("CL_MOO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")).resolve()
    if not root.is_dir():
        pytest.fail(f"data root {root} not found: set CL_MOO_DATA to the folder of ../shared/data")
    return root


@pytest.fixture
def one_thread():
    """Tiny tensors: a second thread only contends (5-10x slower on a loaded CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
