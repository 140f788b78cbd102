"""Command line: ``python -m cl_moo.run benchmark=pmnist [key=value ...]`` (Hydra overrides).

A thin entry point: the runners live in the ``benchmarks`` layer and load only when called.
The ``benchmarks``, ``strategies`` and ``configs`` packages are taken from where ``cl_moo`` is
installed, so a folder of the same name in the working directory cannot shadow them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

_OWN_PACKAGES = ("benchmarks", "strategies", "configs")


def _use_installed_packages() -> None:
    """Puts the folder holding ``cl_moo`` first on ``sys.path`` and checks nothing else is loaded."""
    home = Path(__file__).resolve().parent.parent
    if not sys.path or Path(sys.path[0] or ".").resolve() != home:
        sys.path.insert(0, str(home))
    for name in _OWN_PACKAGES:
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None) if module is not None else None
        if where is not None and Path(where).resolve().parent.parent != home:
            raise ImportError(
                f"a different '{name}' package ({where}) is already imported; cl_moo needs its own from {home}"
            )


def main(argv: Optional[Sequence[str]] = None) -> int:
    _use_installed_packages()
    from benchmarks.command_line.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
