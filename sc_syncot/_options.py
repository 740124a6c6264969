"""Which options of a call were set away from their defaults, read from the function's own signature.

Functions refuse options that cannot act in the case at hand (every argument acts or is refused); comparing with
the signature's defaults, instead of copies of them, keeps the two from drifting apart.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np


def differs(value, default) -> bool:
    """Whether ``value`` is not ``default`` (``True`` is not the number 1 here; an array is never a default)."""
    if isinstance(value, (bool, np.bool_)) != isinstance(default, bool):
        return True
    try:
        return bool(value != default)
    except (TypeError, ValueError):
        return True


def changed(func: Callable, **given) -> list[str]:
    """``"name=value"`` for each of ``given`` that differs from ``func``'s default for that parameter, in order."""
    params = inspect.signature(func).parameters
    return [f"{k}={v!r}" for k, v in given.items() if differs(v, params[k].default)]
