"""Runtime checks of numeric arguments that mypy follows.

``isinstance(x, numbers.Real)`` on an argument annotated ``float`` (or ``numbers.Integral`` on an ``int``)
is, to mypy, never true: typeshed's ``float`` and ``int`` do not subclass the ``numbers`` ABCs (they are
registered at run time). A check ``if not isinstance(alpha, numbers.Real): raise ...`` then makes mypy take
every statement after it as unreachable and skip it silently. These functions are the same ``isinstance``
calls behind a ``bool`` return, which mypy does not narrow on.
"""

from __future__ import annotations

import numbers


def is_real(value: object) -> bool:
    """``isinstance(value, numbers.Real)`` (True for bools too, as ``isinstance`` is)."""
    return isinstance(value, numbers.Real)


def is_integral(value: object) -> bool:
    """``isinstance(value, numbers.Integral)`` (True for bools too, as ``isinstance`` is)."""
    return isinstance(value, numbers.Integral)
