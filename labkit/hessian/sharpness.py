"""Deprecated: the sharpness tracker is :class:`labkit.edge.EdgeOfStability` (``hessian.Sharpness`` is an alias)."""

from labkit import _deprecated

__deprecated__ = "labkit.edge"

__getattr__ = _deprecated.moved(__name__, {"Sharpness": "labkit.edge:EdgeOfStability"})
