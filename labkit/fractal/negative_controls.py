"""Negative controls for the fractal-boundary claim, and the zoom-and-measure pipeline they share.

A box-counting dimension above 1 means something only if the same pipeline reports 1 on a boundary
known to be smooth. The control here is gradient descent on a convex quadratic with one learning rate
per coordinate,

    L(a, b) = (h_a a^2 + h_b b^2) / 2,        a <- a - lr_in h_a a,   b <- b - lr_out h_b b,

which converges iff ``lr_in h_a < 2`` and ``lr_out h_b < 2``: the stable region is a rectangle, its
boundary two straight lines. It is scored with the scan's rules (losses divided by the first, non-finite
-> 1e6, clipped at 1e6, converged iff the mean of the last ``tail`` is < 1) and returned as a
:class:`ScanResult`, so zooming and box counting run unchanged::

    from labkit.fractal.negative_controls import quadratic_scan, zoom_dimensions
    smooth = zoom_dimensions(quadratic_scan, levels=5, resolution=64)
    smooth.median          # ~1.0: a straight boundary
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labkit import _checks
from labkit.fractal.experiment import Experiment
from labkit.fractal.result import ScanResult, axis_values, check_window

__all__ = ["ZoomDimensions", "quadratic_scan", "zoom_dimensions"]

_CLIP = 1e6  # the scan's clip for normalised losses


def quadratic_scan(
    x_range: tuple[float, float] = (1e-3, 1e6), y_range: tuple[float, float] = (1e-3, 1e6),
    resolution: int = 64, *, curvature: tuple[float, float] = (1.0, 4.0), steps: int = 100, tail: int = 20,
) -> ScanResult:
    """Scan GD on the convex quadratic above over (lr_in, lr_out), log axes; boundary at lr = 2 / curvature."""
    _checks.positive("resolution", resolution, integer=True)
    _checks.positive("steps", steps, integer=True)
    _checks.in_range("tail", tail, 1, steps)
    ha, hb = (float(_checks.positive("curvature", c)) for c in curvature)
    x_range, y_range = check_window(x_range, y_range, (resolution, resolution), (True, True), np.finfo(float).eps)
    xs, ys = axis_values(x_range, resolution, True), axis_values(y_range, resolution, True)
    t = np.arange(steps)[:, None, None]  # (T, 1, 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # l_t / l_0 with a_0 = b_0 = 1: each coordinate is multiplied by (1 - lr h) per step.
        la = ha * np.abs(1 - xs[None, None, :] * ha) ** (2.0 * t)  # (T, 1, nx)
        lb = hb * np.abs(1 - ys[None, :, None] * hb) ** (2.0 * t)  # (T, ny, 1)
        norm = (la + lb) / (ha + hb)  # (T, ny, nx)
        norm = np.clip(np.where(np.isfinite(norm), norm, _CLIP), 0.0, _CLIP)
        converged = norm[-tail:].mean(0) < 1.0
        score = np.where(converged, -norm.sum(0), (1.0 / np.maximum(norm, 1e-300)).sum(0))
    exp = Experiment(name="quadratic control", steps=steps, tail=tail, n_points=1,
                     extra={"control": f"convex quadratic, curvatures {ha:g}, {hb:g}: stable region is a rectangle"})
    return ScanResult(exp, exp.axes, x_range, y_range, (True, True), xs, ys, converged, score)


@dataclass
class ZoomDimensions:
    """Box-counting dimension of the boundary at each zoom level (NaN where too few scales were valid)."""

    widths: list[float]  # log10 of the window's x extent (max/min) at each level
    dims: list[float]
    scans: list[ScanResult]

    @property
    def median(self) -> float:
        """Median over the levels with a finite dimension (NaN if none)."""
        finite = [d for d in self.dims if np.isfinite(d)]
        return float(np.median(finite)) if finite else float("nan")

    @property
    def finite(self) -> int:
        """Number of levels where the dimension could be measured."""
        return int(np.isfinite(self.dims).sum())

    def figure(self, name: str = "", fig: Any = None) -> Any:
        """Dimension per zoom level (a new figure, or a trace added to ``fig``)."""
        from labkit.viz import theme

        if fig is None:
            fig = theme.figure("Box-counting dimension of the boundary per zoom level", "zoom level (decades)",
                               "dimension")
        fig.add_scatter(x=list(range(len(self.dims))), y=self.dims, mode="lines+markers", name=name or "boundary")
        return fig


def zoom_dimensions(
    scanner: Experiment | str | Callable[..., ScanResult], levels: int = 9, resolution: int = 64,
    factor: float = 10.0,
) -> ZoomDimensions:
    """Scan the first window, then zoom ``factor``-fold onto the boundary pixel nearest the centre, ``levels``
    windows in all, measuring the box-counting dimension of the boundary at each.

    ``scanner`` is an :class:`Experiment` (or preset name), scanned with :func:`labkit.fractal.scan`, or a
    function ``scanner(x_range, y_range, resolution) -> ScanResult`` such as :func:`quadratic_scan`.
    The dimension is taken at 64 px by default: at 32 px it varies too much from level to level.
    """
    _checks.positive("levels", levels, integer=True)
    if isinstance(scanner, (Experiment, str)):
        from labkit.fractal.scanner import scan

        exp = scanner

        def scanner(xr: Any, yr: Any, n: int) -> ScanResult:
            return scan(exp, xr, yr, n, progress=False)

        r = scan(exp, resolution=resolution, progress=False)
    else:
        r = scanner((1e-3, 1e6), (1e-3, 1e6), resolution)
    widths, dims, scans = [], [], []
    for level in range(levels):
        widths.append(float(np.log10(r.x_range[1] / r.x_range[0])))
        dims.append(float(r.dimension()))
        scans.append(r)
        if level < levels - 1:
            r = scanner(*r.zoom(r.nearest_boundary(), factor), resolution)
    return ZoomDimensions(widths, dims, scans)
