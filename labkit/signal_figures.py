"""Deprecated: the signal-propagation figures are :mod:`labkit.viz.propagation` (same names)."""

from labkit import _deprecated

__deprecated__ = "labkit.viz.propagation"

__getattr__ = _deprecated.moved(__name__, {n: f"labkit.viz.propagation:{n}" for n in (
    "phase_figure", "propagation_figure", "spp_figure", "trainability_figure")})
