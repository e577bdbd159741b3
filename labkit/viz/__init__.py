"""Plotly figures for everything labkit produces, in one consistent look.

``theme`` holds the template and colours; the builders and :class:`LivePlot`
live in the submodules listed in ``_EXPORTS`` and are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from labkit.viz import theme
from labkit.viz.theme import COLORS, figure

__all__ = ["COLORS", "LivePlot", "density", "figure", "heatmap", "image2d", "loss_curves", "spectrum", "theme",
           "tradeoff"]

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "density": "figures",
    "heatmap": "figures",
    "image2d": "figures",
    "loss_curves": "figures",
    "spectrum": "figures",
    "tradeoff": "figures",
    "LivePlot": "live",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"labkit.viz.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labkit.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
