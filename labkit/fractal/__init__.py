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

from labkit._lazy import lazy_exports

_EXPORTS = {
    "Experiment": "experiment",
    "PRESETS": "experiment",
    "scan": "scanner",
    "ScanResult": "result",
    "equalise": "result",
    "format_dimension": "result",
    "estimate_memory": "scanner",
    "sharpness_map": "curvature_map",
    "box_counting_dimension": "dimension",
    "zoom_sequence": "sequence",
    "write_png": "png",
    "colorize": "png",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
