"""Deprecated alias module: renamed to labkit.ntk.drift (how far the NTK moves).

No two labkit modules share a name; the old path keeps the same names for one release, each warning once."""

from labkit import _deprecated

__deprecated__ = "labkit.ntk.drift"
_NAMES = ("KernelTracker", "kernel_distance", "relative_change")
__getattr__ = _deprecated.moved(__name__, {n: f"labkit.ntk.drift:{n}" for n in _NAMES})
