"""Curvature probes for students: one-call spectra, sharpness during training, batch vs full Hessian."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks, linalg
from labkit.data import as_dataset
from labkit.hessian.operators import GaussNewtonOperator, HessianOperator, dense_hessian

__all__ = [
    "BatchSharpness",
    "batch_sharpness",
    "class_outliers",
    "count_outliers",
    "dense",
    "operator",
    "spectral_density",
    "top_eigenvalues",
    "trace",
]

MATRICES = ("hessian", "gauss_newton", "residual")


def operator(model: nn.Module, loss: Any, data: Any, matrix: str = "hessian", **kwargs: Any) -> linalg.LinearOperator:
    """``matrix`` = ``"hessian"`` (H), ``"gauss_newton"`` (G) or ``"residual"`` (H - G) as an operator."""
    _checks.choice("matrix", matrix, MATRICES)
    if matrix == "hessian":
        return HessianOperator(model, loss, data, **kwargs)
    if matrix == "gauss_newton":
        return GaussNewtonOperator(model, loss, data, **kwargs)
    return HessianOperator(model, loss, data, **kwargs) - GaussNewtonOperator(model, loss, data, **kwargs)


def top_eigenvalues(
    model: nn.Module, loss: Any, data: Any, k: int = 1, *, matrix: str = "hessian", which: linalg.Which = "largest",
    tol: float = 1e-6, seed: int = 0, batch_size: int | None = None, params: Sequence[str] | None = None,
) -> linalg.EigResult:
    """The ``k`` top (or ``which``) eigenpairs of the loss Hessian (or ``matrix``) over ``data``."""
    op = operator(model, loss, data, matrix, batch_size=batch_size, params=params)
    return linalg.top_eigenvalues(op, k, which=which, tol=tol, seed=seed)


def trace(
    model: nn.Module, loss: Any, data: Any, n_matvec: int = 100, *, matrix: str = "hessian", method: str = "hutchpp",
    seed: int = 0, batch_size: int | None = None, params: Sequence[str] | None = None,
) -> linalg.Estimate:
    """Estimated trace of the loss Hessian (or ``matrix``), with its standard error."""
    op = operator(model, loss, data, matrix, batch_size=batch_size, params=params)
    return linalg.trace(op, n_matvec, method, seed)


def spectral_density(
    model: nn.Module, loss: Any, data: Any, *, matrix: str = "hessian", n_probes: int = 10, lanczos_steps: int = 80,
    grid: Any = None, sigma: float | None = None, seed: int = 0, batch_size: int | None = None,
    params: Sequence[str] | None = None,
) -> linalg.Density:
    """Eigenvalue density of the loss Hessian (or ``matrix``) by stochastic Lanczos quadrature."""
    op = operator(model, loss, data, matrix, batch_size=batch_size, params=params)
    return linalg.spectral_density(op, n_probes, lanczos_steps, grid, sigma, seed)


def dense(
    model: nn.Module, loss: Any, data: Any, matrix: str = "hessian", *, params: Sequence[str] | None = None
) -> torch.Tensor:
    """The exact dense matrix (``(P, P)``; for small models): ground truth for every estimate."""
    if _checks.choice("matrix", matrix, MATRICES) == "hessian":
        return dense_hessian(model, loss, data, params=params)
    M = linalg.to_dense(operator(model, loss, data, matrix, params=params))
    return (M + M.T) / 2


def count_outliers(values: Any, max_count: int | None = None) -> int:
    """Number of eigenvalues above the largest relative gap at the top of a spectrum.

    With ``lambda_1 >= lambda_2 >= ...`` (positive part), the outliers are ``lambda_1..lambda_c``
    where ``c`` maximises ``lambda_c / lambda_{c+1}`` over ``c <= max_count`` (default: a third
    of the values given): the split with the widest gap on a log scale.
    """
    v = np.sort(np.asarray(torch.as_tensor(values).detach().cpu(), dtype=float))[::-1]
    v = v[v > 0]
    if len(v) < 2:
        raise ValueError(f"count_outliers needs at least two positive eigenvalues, got {len(v)}")
    max_count = max(1, len(v) // 3) if max_count is None else min(max_count, len(v) - 1)
    ratios = v[:max_count] / v[1 : max_count + 1]
    return int(np.argmax(ratios)) + 1


# ---------------------------------------------------------------- sharpness during training


def stability_threshold(lr: float, optimizer: Any) -> float:
    """The edge-of-stability sharpness: ``2/lr`` for SGD, ``2(1 + beta)/lr`` for heavy-ball momentum beta.

    Gradient descent on a quadratic with curvature lambda is stable iff ``lr lambda < 2``
    (Cohen et al. 2021, arXiv:2103.00065); with heavy-ball momentum (``m = beta m + g``,
    ``p -= lr m``) the bound becomes ``lr lambda < 2 + 2 beta`` (38/lr for beta = 0.9).
    Adam has no such threshold on the raw Hessian (NaN).
    """
    from labkit.optim import MOMENTUM

    if optimizer == "sgd":
        return 2.0 / lr
    if optimizer == "momentum":
        return 2.0 * (1.0 + MOMENTUM) / lr
    return math.nan


# ---------------------------------------------------------------- batch vs full Hessian


@dataclass
class BatchSharpness:
    """Top eigenvalue of mini-batch Hessians per batch size: ``mean``, ``stderr`` over ``n_batches`` draws."""

    batch_sizes: list[int]
    values: list[list[float]]
    full: float
    mean: list[float] = field(init=False)
    stderr: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.mean = [float(np.mean(v)) for v in self.values]
        self.stderr = [float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan for v in self.values]

    def figure(self) -> Any:
        from labkit.viz import theme

        fig = theme.figure("Mini-batch vs full-batch sharpness", "batch size", "top eigenvalue", log_x=True)
        fig.add_scatter(x=self.batch_sizes, y=self.mean, mode="lines+markers", name="batch Hessian",
                        error_y={"type": "data", "array": self.stderr})
        fig.add_scatter(x=self.batch_sizes, y=[self.full] * len(self.batch_sizes), mode="lines",
                        name="full Hessian", line={"dash": "dash", "color": theme.REFERENCE})
        return fig


def batch_sharpness(
    model: nn.Module, loss: Any, data: Any, batch_sizes: Sequence[int], *, n_batches: int = 5, tol: float = 1e-4,
    seed: int = 0,
) -> BatchSharpness:
    """lambda_max of the Hessian on random mini-batches of each size vs that of the full data.

    A batch Hessian is the full one plus zero-mean noise whose size grows like
    1/sqrt(batch size); its top eigenvalue is pushed up (a random-matrix effect, as the
    extremal eigenvalue of a noisy matrix exceeds the noiseless one's).
    """
    ds = as_dataset(data)
    _checks.positive("n_batches", n_batches, integer=True)
    for b in batch_sizes:
        _checks.in_range("batch_sizes entry", b, 1, len(ds))
    full = float(linalg.top_eigenvalues(HessianOperator(model, loss, ds), 1, tol=tol, dense=False).values[0])
    g = torch.Generator().manual_seed(seed)
    values = []
    for b in batch_sizes:
        row = []
        for _ in range(n_batches):
            idx = torch.randperm(len(ds), generator=g)[:b]
            op = HessianOperator(model, loss, ds[idx])
            row.append(float(linalg.top_eigenvalues(op, 1, tol=tol, dense=False).values[0]))
        values.append(row)
    return BatchSharpness(list(batch_sizes), values, full)


# ---------------------------------------------------------------- outliers and the number of classes


def class_outliers(
    classes: int, loss: str = "cross_entropy", matrix: str = "hessian", *, per_class: int = 10, dim: int = 4,
    width: int = 16, separation: float = 3.0, seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """Dense spectrum (descending) and outlier count for a one-hidden-layer ReLU net on a Gaussian mixture.

    The readout starts near zero (weights x 0.01, bias 0), so the softmax is uniform and
    the output Hessian is the same for every example: ``H_out = (1/k)(I - 11^T/k)`` for
    cross-entropy (rank k - 1: adding a constant to all logits changes nothing) and
    ``2 I`` for MSE (rank k). The readout block of G is then ``H_out (x) E[h h^T]`` and
    the mean feature's large direction in ``E[h h^T]`` is repeated once per nonzero
    eigenvalue of ``H_out``: k - 1 outliers for cross-entropy, k for MSE, in G and in H.
    """
    from labkit.data import gaussian_mixture
    from labkit.models import mlp

    _checks.in_range("classes", classes, 2, 100)
    _checks.choice("loss", loss, ["cross_entropy", "mse"])
    ds = gaussian_mixture(per_class * classes, dim, classes, separation, seed).to(dtype=torch.float64)
    model = mlp(dim, [width], classes, "relu", seed=seed).double()
    with torch.no_grad():
        model[-1].weight.mul_(0.01)
        model[-1].bias.zero_()
    data = ds if loss == "cross_entropy" else (ds.inputs, torch.nn.functional.one_hot(ds.targets, classes).double())
    M = linalg.to_dense(operator(model, loss, data, matrix))
    values = torch.linalg.eigvalsh((M + M.T) / 2).flip(0)
    return values, count_outliers(values[: 3 * classes])
