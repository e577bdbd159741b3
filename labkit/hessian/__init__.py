"""Curvature of the training loss: Hessian and Gauss-Newton operators and the probes built on them.

    import labkit
    ds = labkit.data.gaussian_mixture(256, dim=4, classes=3, seed=0).to(dtype=torch.float64)
    model = labkit.models.mlp(4, [16], 3, seed=0).double()
    H = labkit.hessian.HessianOperator(model, "cross_entropy", ds)
    labkit.linalg.top_eigenvalues(H, k=3).values       # the three largest eigenvalues
    labkit.hessian.top_eigenvalues(model, "cross_entropy", ds, k=3)   # the same, in one call

Operators live in :mod:`labkit.hessian.operators`, the probes (convenience functions,
batch-vs-full sharpness, outlier counting) in :mod:`labkit.hessian.probes`; the algorithms are
:mod:`labkit.linalg`'s. Sharpness during training (the tracker, its threshold, the at-the-edge check) is
:mod:`labkit.edge`; ``hessian.Sharpness`` is a deprecated alias of :class:`labkit.edge.EdgeOfStability`.
"""

from labkit import _deprecated
from labkit.hessian.operators import GaussNewtonOperator, HessianOperator, residual_operator
from labkit.hessian.probes import (
    BatchSharpness,
    batch_sharpness,
    class_outliers,
    count_outliers,
    dense,
    operator,
    spectral_density,
    top_eigenvalues,
    trace,
)

__all__ = [
    "BatchSharpness",
    "GaussNewtonOperator",
    "HessianOperator",
    "batch_sharpness",
    "class_outliers",
    "count_outliers",
    "dense",
    "operator",
    "residual_operator",
    "spectral_density",
    "top_eigenvalues",
    "trace",
]

__getattr__ = _deprecated.moved(__name__, {"Sharpness": "labkit.edge:EdgeOfStability",
                                          "dense_hessian": "labkit.testing:dense_hessian"})
