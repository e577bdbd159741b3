"""The loss Hessian and its Gauss-Newton part as matrix-free operators (defined in :mod:`labkit.curvature`).

Kept as the place students meet them: ``labkit.hessian.HessianOperator(model, loss, data)``.
Every operator is evaluated at the parameters it was built with (see :mod:`labkit.risk`).
"""

from __future__ import annotations

from labkit import _deprecated
from labkit.curvature import CurvatureOperator, GaussNewtonOperator, HessianOperator, residual_operator

__all__ = ["CurvatureOperator", "GaussNewtonOperator", "HessianOperator", "residual_operator"]


# the dense Hessian has one name, labkit.testing.dense_hessian (a reference for tests, independent of the HVP path)
__getattr__ = _deprecated.moved(__name__, {"dense_hessian": "labkit.testing:dense_hessian"})
