"""Kernel probes: the neural tangent kernel of a network, of its infinite-width limit, and how it moves.

- :func:`empirical` / :class:`NTKOperator`: the empirical NTK ``J(x1) J(x2)^T`` (three methods, auto choice).
- :func:`analytic`: infinite-width NNGP and NTK kernels of fully connected networks (closed forms for
  ReLU and erf, a 2-D Gaussian quadrature for any activation: :func:`gaussian_expectations`).
- :func:`predict`: kernel gradient flow for MSE at any time ``t`` (one eigendecomposition).
- :func:`nngp_posterior`, :func:`gd_ensemble`: predictive distributions (mean and covariance) of the
  Bayesian infinitely wide network and of the gradient-descent-trained ensemble at any time.
- :func:`train_ensemble`: train N finite networks at once and measure their ensemble over time.
- :func:`coverage`: how often central intervals of a predictive distribution hold held-out targets.
- :func:`linearize`: a network's first-order Taylor expansion, trainable with ``labkit.train.fit``.
- :func:`kernel_distance`, :class:`KernelTracker`: how far the kernel moves during training.
"""

from labkit import _deprecated
from labkit.ntk.analytic import analytic
from labkit.ntk.calibration import coverage
from labkit.ntk.drift import KernelTracker, kernel_distance, relative_change
from labkit.ntk.dynamics import Linearized, linearize, predict
from labkit.ntk.empirical import METHODS, NTKOperator, choose_method, empirical, estimate_memory
from labkit.ntk.ensemble import Ensemble, train_ensemble
from labkit.ntk.posterior import Gaussian, gd_ensemble, nngp_posterior, predictive_memory
from labkit.ntk.quadrature import gaussian_expectations

__all__ = [
    "METHODS",
    "Ensemble",
    "Gaussian",
    "KernelTracker",
    "Linearized",
    "NTKOperator",
    "analytic",
    "choose_method",
    "coverage",
    "empirical",
    "estimate_memory",
    "gaussian_expectations",
    "gd_ensemble",
    "kernel_distance",
    "linearize",
    "nngp_posterior",
    "predict",
    "predictive_memory",
    "relative_change",
    "train_ensemble",
]

# the renamed submodule, reached as an attribute (``package.tracking.name``): one warning, then the new module
__getattr__ = _deprecated.moved(__name__, {"tracking": "labkit.ntk.drift"})
