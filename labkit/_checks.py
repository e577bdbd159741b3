"""Argument checks that fail early with messages naming the argument, the value and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError listing them."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {allowed}")
    return value


def positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> Any:
    """Return ``value`` if it is a positive (or non-negative) number, else raise (numpy scalars are fine)."""
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
    if isinstance(value, bool) or not ok_type:
        raise TypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
    if value != value or (value < 0 if allow_zero else value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def in_range(name: str, value: int, lo: int, hi: int) -> int:
    """Return the int ``value`` if ``lo <= value <= hi``, else raise (numpy integers are fine)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value
