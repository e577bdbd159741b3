"""Shared test problems: one matrix of model x loss x dtype (as curvlinops' test cases), so that every operator
and probe is checked on the same small networks instead of a private builder per file.

``build_problem(arch, loss, dtype)`` (the ``make_problem`` fixture) is a :class:`labkit.risk.Risk` over 12
examples in three unequal batches (5, 5, 2): an MLP 3-5-3 (tanh) or a CNN on 1x4x4 images, cross-entropy on
labels ``i % 3`` or MSE on Gaussian targets. The ``problem`` fixture runs a test on every float64 combination;
``problem32`` on float32 (looser tolerances: float32 rounding, not the operator, sets them).
"""

from __future__ import annotations

import pytest
import torch

from labkit import models
from labkit.risk import Risk

ARCHS = ("mlp", "cnn")
LOSSES = ("cross_entropy", "mse")
CASES = [(a, loss) for a in ARCHS for loss in LOSSES]


def build_problem(arch: str, loss: str, dtype: torch.dtype = torch.float64, n: int = 12, seed: int = 0) -> Risk:
    """A small model's risk: ``arch`` in ARCHS, ``loss`` in LOSSES, parameters and data in ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    if arch == "mlp":
        model = models.mlp(3, [5], 3, "tanh", seed=seed)
        x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    else:
        model = models.cnn(image_size=4, channels=1, num_classes=3, width=2, activation="tanh", seed=seed)
        x = torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 3 if loss == "cross_entropy" else torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = y if loss == "cross_entropy" else y.to(dtype)
    return Risk(model.to(dtype), loss, (x.to(dtype), y), batch_size=5)  # unequal batches: 5, 5, 2


@pytest.fixture(params=CASES, ids=[f"{a}-{loss}" for a, loss in CASES])
def problem(request) -> Risk:
    """Every model x loss in float64."""
    return build_problem(*request.param)


@pytest.fixture(params=CASES, ids=[f"{a}-{loss}-float32" for a, loss in CASES])
def problem32(request) -> Risk:
    """Every model x loss in float32."""
    return build_problem(*request.param, dtype=torch.float32)


@pytest.fixture
def make_problem():
    """:func:`build_problem` for a test that needs one particular combination."""
    return build_problem
