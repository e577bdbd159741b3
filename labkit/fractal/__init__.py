"""Trainability-boundary scanner (Sohl-Dickstein 2024, "The boundary of neural network trainability is fractal").

Train a grid of small networks over two hyperparameters, all at once, and see
which converge and which diverge; zoom into the boundary and measure its
box-counting dimension::

    from labkit.fractal import scan, box_counting_dimension
    res = scan("quick", resolution=64)
    res.figure()
    dim, sizes, counts = box_counting_dimension(res.boundary())

Names are imported on first use, so ``labkit fractal --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Experiment": "experiment",
    "PRESETS": "experiment",
    "scan": "scan",
    "ScanResult": "result",
    "equalise": "result",
    "box_counting_dimension": "dimension",
    "zoom_sequence": "sequence",
    "write_png": "png",
    "colorize": "png",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"labkit.fractal.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labkit.fractal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
