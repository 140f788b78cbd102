"""Installs cl_moo: the core package, the strategies, the benchmarks and the configs."""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def _requirements() -> list:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="cl_moo",
    version="0.1.0",
    description="Continual learning and multi-objective learning with hypernetworks",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["cl_moo", "strategies", "benchmarks", "configs"],
    package_data={"configs": ["*.yaml", "*/*.yaml"]},
    include_package_data=True,
    install_requires=_requirements(),
    extras_require={"test": ["pytest>=8", "import-linter>=2.1"]},
)
