"""The loss Hessian and its Gauss-Newton part as matrix-free operators (defined in :mod:`labkit.curvature`).

Kept as the place students meet them: ``labkit.hessian.HessianOperator(model, loss, data)``.
Every operator is evaluated at the parameters it was built with (see :mod:`labkit.risk`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from labkit.curvature import CurvatureOperator, GaussNewtonOperator, HessianOperator, residual_operator

__all__ = ["CurvatureOperator", "GaussNewtonOperator", "HessianOperator", "dense_hessian", "residual_operator"]


def dense_hessian(model: nn.Module, loss: Any = "auto", data: Any = None, *,
                  params: Iterable[str] | None = None) -> torch.Tensor:
    """The exact ``(P, P)`` Hessian by ``torch.func.hessian`` of the flat mean loss (small models only).

    Independent of the HVP path, so tests and students can use it as ground truth
    (:func:`labkit.testing.dense_hessian`).
    """
    from labkit.testing import dense_hessian as dense

    return dense(model, loss, data, params=None if params is None else list(params))
