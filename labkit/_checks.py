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


def seed(name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a non-negative integer seed, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative int, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def fraction(name: str, value: Any) -> float:
    """Return ``value`` if it is a number strictly between 0 and 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return float(value)


def tensor(name: str, value: Any) -> Any:
    """Return ``value`` if it is a torch tensor, else raise a TypeError that says how to make one."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; use torch.as_tensor({name})")
    return value


def finite(name: str, value: Any) -> Any:
    """Return the tensor ``value`` if it has no NaN or inf, else raise naming how many and where the first is."""
    import torch

    if not (value.is_floating_point() or value.is_complex()):
        return value
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        count = int(bad.sum())
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} contains {count} NaN or inf value(s), the first at index {first} "
            f"({float(value[first].real) if value.is_complex() else float(value[first])}); "
            "clean the data (bad data is not a divergence)"
        )
    return value
