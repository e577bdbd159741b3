"""Renamed and moved names keep working for one release, each warning once with its new name.

    from labkit import _deprecated
    __getattr__ = _deprecated.moved(__name__, {"old_name": "labkit.new.module:new_name"})

A module-level ``__getattr__`` that resolves ``old_name`` to the object at its new home (imported when first
asked for, so an alias never pulls a module in at import time) after one ``DeprecationWarning`` naming the new
place; :func:`warn` is the same warning for a function or class that stays as a thin wrapper.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

_warned: set[str] = set()  # each old name warns once per process


def warn(old: str, new: str, *, stacklevel: int = 3) -> None:
    """One ``DeprecationWarning`` per process: ``old`` is deprecated, use ``new``."""
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(f"{old} is deprecated: use {new} (the old name goes in the next release)", DeprecationWarning,
                  stacklevel=stacklevel)


def resolve(target: str) -> Any:
    """The object at ``"package.module:name"`` (or the module ``"package.module"``)."""
    module, _, name = target.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, name) if name else mod


def moved(module: str, names: Mapping[str, str],
          fallback: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving each old name in ``names`` from its new ``"module:name"`` after a warning."""

    def __getattr__(name: str) -> Any:
        if name in names:
            target = names[name]
            warn(f"{module}.{name}", target.replace(":", "."))
            return resolve(target)
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
