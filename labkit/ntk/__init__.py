"""Kernel probes: the neural tangent kernel of a network, of its infinite-width limit, and how it moves.

- :func:`empirical` / :class:`NTKOperator`: the empirical NTK ``J(x1) J(x2)^T`` (three methods, auto choice).
- :func:`analytic`: closed-form infinite-width NNGP and NTK kernels of fully connected networks.
- :func:`predict`: kernel gradient flow for MSE at any time ``t`` (one eigendecomposition).
- :func:`linearize`: a network's first-order Taylor expansion, trainable with ``labkit.train.fit``.
- :func:`kernel_distance`, :class:`KernelTracker`: how far the kernel moves during training.
"""

from labkit import _deprecated
from labkit.ntk.analytic import analytic
from labkit.ntk.drift import KernelTracker, kernel_distance, relative_change
from labkit.ntk.dynamics import Linearized, linearize, predict
from labkit.ntk.empirical import METHODS, NTKOperator, choose_method, empirical, estimate_memory

__all__ = [
    "METHODS",
    "KernelTracker",
    "Linearized",
    "NTKOperator",
    "analytic",
    "choose_method",
    "empirical",
    "estimate_memory",
    "kernel_distance",
    "linearize",
    "predict",
    "relative_change",
]

# the renamed submodule, reached as an attribute (``package.tracking.name``): one warning, then the new module
__getattr__ = _deprecated.moved(__name__, {"tracking": "labkit.ntk.drift"})
