"""Installs cl_moo: the core package, the strategies, the benchmarks and the configs."""
import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def _version() -> str:
    """``cl_moo.__version__``, read without importing the package."""
    match = re.search(r'^__version__ = "([^"]+)"', (HERE / "cl_moo" / "__init__.py").read_text(), re.M)
    assert match, "cl_moo/__init__.py defines no __version__"
    return match.group(1)


def _requirements() -> list:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# Hydra plugins for sweeps: local processes (joblib), a Ray cluster, SLURM (submitit) and Optuna search.
# Versions that work with hydra-core 1.3.8 on Python 3.11 (``pip install -e ".[sweep]"``); the tested
# versions of everything are in constraints.txt.
SWEEP = [
    "hydra-joblib-launcher==1.2.0",
    "hydra-ray-launcher==1.2.2",
    "hydra-submitit-launcher==1.2.0",
    "hydra-optuna-sweeper==1.3.0",
    "sqlalchemy<2",  # the sweeper's optuna 2.10 stores studies in a database only with SQLAlchemy 1.x
]

# The documentation site (``mkdocs build --strict``, mkdocs.yml); the tested versions are in constraints.txt.
DOCS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.26,<2"]

setup(
    name="cl_moo",
    version=_version(),
    description="Continual learning and multi-objective learning with hypernetworks",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["cl_moo", "strategies", "benchmarks", "benchmarks.data", "benchmarks.configuration", "benchmarks.runners",
              "benchmarks.command_line", "benchmarks.experiments", "benchmarks.experiments.paper_claims", "configs"],
    package_data={"configs": ["*.yaml", "*/*.yaml", "hydra/*/*.yaml"]},
    include_package_data=True,
    install_requires=_requirements(),
    entry_points={"console_scripts": ["cl-moo=cl_moo.run:main", "cl-moo-report=cl_moo.report:main"]},
    extras_require={"sweep": SWEEP, "docs": DOCS, "test": ["pytest>=8", "pytest-xdist>=3.5", "import-linter>=2.1", "ruff>=0.6", "mypy>=1.10", *SWEEP]},
)
