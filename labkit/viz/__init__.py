"""Plotly figures for everything labkit produces, in one consistent look.

``theme`` holds the template and colours; the builders and :class:`LivePlot`
live in the submodules listed in ``_EXPORTS`` and are imported on first use.
"""

from __future__ import annotations

from labkit._lazy import lazy_exports
from labkit.viz import theme
from labkit.viz.theme import COLORS, figure

__all__ = ["COLORS", "LivePlot", "density", "figure", "heatmap", "image2d", "intervals", "loss_curves", "spectrum",
           "theme", "tradeoff"]

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "density": "figures",
    "heatmap": "figures",
    "image2d": "figures",
    "intervals": "figures",
    "loss_curves": "figures",
    "spectrum": "figures",
    "tradeoff": "figures",
    "LivePlot": "live",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
