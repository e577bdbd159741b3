"""Renamed and moved names keep working for one release, each warning once with its new name.

    from labkit import _deprecated
    __getattr__ = _deprecated.moved(__name__, {"old_name": "labkit.new.module:new_name"})

A module-level ``__getattr__`` that resolves ``old_name`` to the object at its new home (imported when first
asked for, so an alias never pulls a module in at import time) after one ``DeprecationWarning`` naming the new
place; :func:`warn` is the same warning for a function or class that stays as a thin wrapper.
"""

from __future__ import annotations

import functools
import importlib
import inspect
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


def renamed(**old_to_new: str) -> Callable[[Callable], Callable]:
    """Decorator: keyword arguments renamed to their contract names keep working (one warning each per process).

        @renamed(k_steps="lanczos_steps")
        def lanczos(op, lanczos_steps, ...): ...
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both {old}= and its new name {new}=")
                    warn(f"{fn.__module__}.{fn.__qualname__}({old}=)", f"{new}=")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def keyword_only(*names: str) -> Callable[[Callable], Callable]:
    """Decorator: ``names`` (in their old positional order) became keyword-only; passing them by position still
    works for one release, with one warning per process."""

    def decorate(fn: Callable) -> Callable:
        params = inspect.signature(fn).parameters.values()
        n_pos = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) > n_pos:
                extra = args[n_pos:]
                if len(extra) > len(names):
                    raise TypeError(f"{fn.__qualname__}() takes {n_pos} positional arguments but {len(args)} were "
                                    f"given")
                moved = names[:len(extra)]
                warn(f"{fn.__module__}.{fn.__qualname__}: passing {', '.join(moved)} by position",
                     f"{', '.join(n + '=' for n in moved)} (keyword-only)")
                for name, value in zip(moved, extra):
                    if name in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got multiple values for argument {name!r}")
                    kwargs[name] = value
                args = args[:n_pos]
            return fn(*args, **kwargs)

        return wrapper

    return decorate
