"""Lazy exports: a package names its public objects and the submodules defining them; each is imported on first use.

Keeps ``import labkit`` (and ``labkit --help``) fast and stops one broken optional dependency from hiding the rest::

    __getattr__, __dir__ = lazy_exports(__name__, {"scan": "scan", "ScanResult": "result"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` resolving ``name -> package.submodule.name``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)  # cache: later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
