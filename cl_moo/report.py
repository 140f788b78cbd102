"""Command line: ``python -m cl_moo.report <folder>... [--out DIR]``, a report across finished runs.

A thin entry point like :mod:`cl_moo.run`: the report (``benchmarks.command_line.results_report``) loads only
when called.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .run import _use_installed_packages


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Writes report.md, report.csv and figures; returns the exit code (2 on bad input)."""
    _use_installed_packages()
    from benchmarks.command_line.results_report import main as report_main

    return report_main(argv)


if __name__ == "__main__":
    sys.exit(main())
