"""Plotly figures for everything labkit produces, in one consistent look.

``theme`` holds the template and colours; the builders and :class:`LivePlot`
live in the submodules listed in ``_EXPORTS`` and are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from labkit.viz import theme
from labkit.viz.theme import COLORS, figure

__all__ = ["COLORS", "figure", "theme"]

# public name -> submodule that defines it (filled in as builders are added)
_EXPORTS: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"labkit.viz.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labkit.viz' has no attribute {name!r}")
