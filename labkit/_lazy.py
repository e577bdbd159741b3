"""Lazy exports: a package names its public objects (and submodules); each is imported on first use.

The one lazy-import mechanism of labkit (the top-level package and its subpackages). It keeps
``import labkit`` (and ``labkit --help``) fast and stops one broken optional dependency from hiding the rest::

    __getattr__, __dir__ = lazy_exports(__name__, {"scan": "scan", "ScanResult": "result"})
    __getattr__, __dir__ = lazy_exports(__name__, {}, submodules=["train", "viz"])   # labkit.train, ...

A listed submodule whose file is not in this installation is an ``AttributeError`` naming it, raised only
when it is accessed (``hasattr`` is False); a submodule that exists but fails to import raises its own error.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``: ``name -> package.exports[name].name``
    for exports, ``name -> package.name`` (the module itself) for ``submodules``."""
    modules = frozenset(submodules)
    clash = modules & set(exports)
    if clash:
        raise ValueError(f"{package}: {sorted(clash)} listed both as exports and as submodules")

    def __getattr__(name: str) -> Any:
        if name in modules:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise  # the module exists; one of its own imports is missing
                raise AttributeError(f"module {package!r} has no attribute {name!r}: {package}.{name} is listed "
                                     "but not part of this installation") from None
        elif name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # cache: later lookups skip this function
        return value

    def __dir__() -> list[str]:
        present = {m for m in modules if importlib.util.find_spec(f"{package}.{m}") is not None}
        return sorted(set(vars(sys.modules[package])) | set(exports) | present)

    return __getattr__, __dir__
