"""Deprecated alias module: renamed to labkit.fractal.negative_controls.

No two labkit modules share a name; the old path keeps the same names for one release, each warning once."""

from labkit import _deprecated

__deprecated__ = "labkit.fractal.negative_controls"
_NAMES = ("ZoomDimensions", "quadratic_scan", "zoom_dimensions")
__getattr__ = _deprecated.moved(__name__, {n: f"labkit.fractal.negative_controls:{n}" for n in _NAMES})
