"""Deprecated: notebook 02's experiments are lesson code, now :mod:`labkit.lessons.ntk` (same names)."""

from labkit import _deprecated

__deprecated__ = "labkit.lessons.ntk"

_NAMES = ("DT", "PARAMETERIZATIONS", "eigenfunctions", "kernel_change", "kernel_runs", "linearization_gap",
          "loglog_slope", "max_stable_lr", "predict_vs_network", "regression_comparison", "sign_changes", "sine_data",
          "width_convergence")

__getattr__ = _deprecated.moved(__name__, {n: f"labkit.lessons.ntk:{n}" for n in _NAMES})
