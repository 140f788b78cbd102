"""The package builds as a wheel that works outside the repository: its configs ship, the console
scripts exist, and a tiny run goes through the installed ``cl-moo``."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs the wheel: outside the quick subset (pytest -m 'not slow')

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                 str(ROOT))
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("cl_moo-*.whl")
    return path


def test_the_wheel_holds_the_packages_configs_license_and_console_scripts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("cl_moo", "strategies", "benchmarks", "configs"):
        assert f"{package}/__init__.py" in names
    assert "configs/config.yaml" in names and "configs/benchmark/pmnist.yaml" in names
    assert any(n.endswith("hydra/launcher/cl_moo_joblib.yaml") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(meta).decode()
    assert "cl-moo = cl_moo.run:main" in entry_points and "cl-moo-report = cl_moo.report:main" in entry_points
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: torch")]
    assert any("<3" in r and ">=2.5" in r for r in requires), requires  # a range, not the tested pin
    assert not any("==" in r for r in requires) and any(n.endswith("LICENSE") for n in names)


@pytest.mark.slow
def test_the_installed_wheel_runs_outside_the_repository(wheel, tmp_path, data_root):
    site = tmp_path / "site"
    installed = _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel))
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    # the dependencies come from this environment; cl_moo, strategies, benchmarks, configs from the wheel
    env = {**os.environ, "PYTHONPATH": str(site), "CL_MOO_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    probe = _run(sys.executable, "-c", "import cl_moo, strategies, benchmarks, configs; "
                 "print(cl_moo.__file__, strategies.__file__, benchmarks.__file__, cl_moo.__version__)",
                 cwd=work, env=env)
    assert probe.returncode == 0, probe.stderr
    assert all(str(site) in path for path in probe.stdout.split()[:3]), probe.stdout
    script = site / "bin" / "cl-moo"
    assert script.exists()
    done = _run(sys.executable, str(script), "benchmark=regression", "train.iterations=5", "progress=false",
                "run_dir=run", cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["config"]["benchmark"]["name"] == "regression" and len(metrics["matrix"]) == 3
    assert "summary:" in done.stdout
