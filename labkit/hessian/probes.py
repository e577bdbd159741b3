"""Curvature probes for students: one-call spectra, sharpness during training, batch vs full Hessian."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks, _deprecated, linalg, threads
from labkit.data import as_dataset
from labkit.hessian.operators import GaussNewtonOperator, HessianOperator
from labkit.machine import MAX_MEMORY
from labkit.testing import dense_hessian

__all__ = [
    "BatchSharpness",
    "OutlierSubspace",
    "at_edge_of_stability",
    "batch_sharpness",
    "class_outliers",
    "count_outliers",
    "dense",
    "edge_of_stability_run",
    "gauss_newton_outliers",
    "operator",
    "outlier_count",
    "spectral_density",
    "top_eigenvalues",
    "trace",
]

MATRICES = ("hessian", "gauss_newton", "residual")


def operator(
    model: nn.Module, loss: Any = "auto", data: Any = None, matrix: str = "hessian", **kwargs: Any
) -> linalg.LinearOperator:
    """``matrix`` = ``"hessian"`` (H), ``"gauss_newton"`` (G) or ``"residual"`` (H - G) as an operator."""
    _checks.choice("matrix", matrix, MATRICES)
    if matrix == "hessian":
        return HessianOperator(model, loss, data, **kwargs)
    if matrix == "gauss_newton":
        return GaussNewtonOperator(model, loss, data, **kwargs)
    return HessianOperator(model, loss, data, **kwargs) - GaussNewtonOperator(model, loss, data, **kwargs)


@threads.hot  # its set-up (checks, dry runs) too: a busy neighbour holds a core
def top_eigenvalues(
    model: nn.Module, loss: Any = "auto", data: Any = None, k: int = 1, *, matrix: str = "hessian",
    which: linalg.Which = "largest", tol: float = 1e-6, seed: int = 0, batch_size: int | None = None,
    params: Sequence[str] | None = None,
) -> linalg.EigResult:
    """The ``k`` top (or ``which``) eigenpairs of the loss Hessian (or ``matrix``) over ``data``."""
    op = operator(model, loss, data, matrix, batch_size=batch_size, params=params)
    with threads.for_work(threads.layer_flops(model, batch_size or len(as_dataset(data)))):
        return linalg.top_eigenvalues(op, k, which=which, tol=tol, seed=seed)


@threads.hot
def trace(
    model: nn.Module, loss: Any = "auto", data: Any = None, n_matvec: int = 100, *, matrix: str = "hessian",
    method: str = "hutchpp", seed: int = 0, batch_size: int | None = None, params: Sequence[str] | None = None,
    max_memory: int = MAX_MEMORY,
) -> linalg.Estimate:
    """Estimated trace of the loss Hessian (or ``matrix``), with its standard error."""
    op = operator(model, loss, data, matrix, batch_size=batch_size, params=params)
    return linalg.trace(op, n_matvec, method, seed=seed, max_memory=max_memory)


@threads.hot
def spectral_density(
    model: nn.Module, loss: Any = "auto", data: Any = None, *, matrix: str = "hessian", n_probes: int = 10,
    lanczos_steps: int = 80, grid: Any = None, sigma: float | None = None, seed: int = 0,
    batch_size: int | None = None, params: Sequence[str] | None = None, max_memory: int = MAX_MEMORY,
) -> linalg.Density:
    """Eigenvalue density of the loss Hessian (or ``matrix``) by stochastic Lanczos quadrature."""
    op = operator(model, loss, data, matrix, batch_size=batch_size, params=params)
    return linalg.spectral_density(op, n_probes, lanczos_steps, grid, sigma, seed=seed, max_memory=max_memory)


@threads.hot
def dense(
    model: nn.Module, loss: Any = "auto", data: Any = None, matrix: str = "hessian", *,
    params: Sequence[str] | None = None,
) -> torch.Tensor:
    """The exact dense matrix (``(P, P)``; for small models): ground truth for every estimate."""
    if _checks.choice("matrix", matrix, MATRICES) == "hessian":
        return dense_hessian(model, loss, data, params=None if params is None else list(params))
    M = linalg.to_dense(operator(model, loss, data, matrix, params=params))
    return (M + M.T) / 2


def count_outliers(values: Any, max_count: int | None = None) -> int:
    """Number of eigenvalues above the largest relative gap at the top of a spectrum.

    With ``lambda_1 >= lambda_2 >= ...`` (positive part), the outliers are ``lambda_1..lambda_c``
    where ``c`` maximises ``lambda_c / lambda_{c+1}`` over ``c <= max_count`` (default: a third
    of the values given): the split with the widest gap on a log scale.
    """
    if max_count is not None:
        _checks.positive("max_count", max_count, integer=True, allow_zero=True)
        if max_count == 0:
            return 0  # at most none: nothing to split off
    v = np.sort(np.asarray(torch.as_tensor(values).detach().cpu(), dtype=float))[::-1]
    v = v[v > 0]
    if len(v) < 2:
        raise ValueError(f"count_outliers needs at least two positive eigenvalues, got {len(v)}")
    max_count = max(1, len(v) // 3) if max_count is None else min(max_count, len(v) - 1)
    ratios = v[:max_count] / v[1 : max_count + 1]
    return int(np.argmax(ratios)) + 1


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

    def trend(self) -> tuple[float, float]:
        """Least-squares slope of lambda_max against log(batch size) over all draws, and its t statistic.

        Sizes whose draws are all equal (a batch of the whole data set) carry no noise and are left out.
        """
        pairs = [(b, v) for b, row in zip(self.batch_sizes, self.values) for v in row if np.ptp(row) > 0]
        if len(pairs) < 3:
            return math.nan, math.nan
        x, y = np.log([b for b, _ in pairs]), np.array([v for _, v in pairs])
        xc = x - x.mean()
        slope = float(xc @ (y - y.mean()) / (xc @ xc))
        resid = y - y.mean() - slope * xc
        se = math.sqrt(float(resid @ resid) / (len(y) - 2) / float(xc @ xc))
        return slope, slope / se if se > 0 else math.copysign(math.inf, slope) if slope else math.nan

    @property
    def decreases(self) -> bool:
        """lambda_max falls as the batch grows: significantly (slope t < -3, one-sided p ~ 0.001) and by more
        than 1% of the full-data value from the smallest to the largest batch (100x the eigensolver's tolerance)."""
        _, t = self.trend()
        drop = (self.mean[0] - self.mean[-1]) / abs(self.full)
        return bool(t < -3.0 and drop > 0.01)

    def figure(self) -> Any:
        from labkit.viz import theme

        fig = theme.figure("Mini-batch vs full-batch sharpness", "batch size", "top eigenvalue", log_x=True)
        fig.add_scatter(x=self.batch_sizes, y=self.mean, mode="lines+markers", name="batch Hessian",
                        error_y={"type": "data", "array": self.stderr})
        fig.add_scatter(x=self.batch_sizes, y=[self.full] * len(self.batch_sizes), mode="lines",
                        name="full Hessian", line={"dash": "dash", "color": theme.REFERENCE})
        return fig


@threads.hot
@_deprecated.keyword_only("batch_sizes")
def batch_sharpness(
    model: nn.Module, loss: Any = "auto", data: Any = None, *, batch_sizes: Sequence[int], n_batches: int = 5,
    tol: float = 1e-4, seed: int = 0,
) -> BatchSharpness:
    """lambda_max of the Hessian on random mini-batches of each size vs that of the full data.

    A batch Hessian is the full one plus zero-mean noise whose size grows like
    1/sqrt(batch size); its top eigenvalue is pushed up (a random-matrix effect, as the
    extremal eigenvalue of a noisy matrix exceeds the noiseless one's).
    """
    if data is None:
        raise ValueError("data is required: pass a labkit Dataset or an (inputs, targets) pair")
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
    """Dense spectrum (descending) and outlier count at initialisation, ``classes`` outputs and data classes.

    The readout starts near zero (weights x 0.01, bias 0), so the softmax is uniform and
    the output Hessian is the same for every example: ``H_out = (1/k)(I - 11^T/k)`` for
    cross-entropy (rank k - 1: adding a constant to all logits changes nothing) and
    ``2 I`` for MSE (rank k). The readout block of G is then ``H_out (x) E[h h^T]`` and
    the mean feature's large direction in ``E[h h^T]`` is repeated once per nonzero
    eigenvalue of ``H_out``: k_out - 1 outliers for cross-entropy, k_out for MSE, in G and in H,
    where k_out is the number of **outputs**, whatever the data (see :func:`outlier_count`).
    """
    return outlier_count(classes, classes, loss, matrix, per_class=per_class, dim=dim, width=width,
                         separation=separation, seed=seed)


def outlier_count(
    classes: int, outputs: int | None = None, loss: str = "cross_entropy", matrix: str = "hessian", *,
    steps: int = 0, lr: float = 0.5, per_class: int = 10, dim: int = 4, width: int = 16, separation: float = 3.0,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """Dense spectrum (descending) and outlier count: ``classes`` data classes, ``outputs`` network outputs.

    A one-hidden-layer ReLU net on a Gaussian mixture (``separation=0``: no class structure), its readout
    started near zero (softmax uniform), then trained ``steps`` full-batch GD steps. Varying ``classes``
    with ``outputs`` fixed tells what the count follows (see :func:`class_outliers` for the mechanism at
    initialisation). The count is :func:`count_outliers` over the top ``3 * outputs`` eigenvalues.
    """
    from labkit.data import Dataset, gaussian_mixture
    from labkit.models import mlp
    from labkit.train import fit

    outputs = classes if outputs is None else outputs
    _checks.in_range("classes", classes, 2, 100)
    _checks.in_range("outputs", outputs, classes, 100)
    _checks.choice("loss", loss, ["cross_entropy", "mse"])
    _checks.positive("steps", steps, integer=True, allow_zero=True)
    _checks.positive("lr", lr)
    _checks.positive("per_class", per_class, integer=True)
    ds = gaussian_mixture(per_class * classes, dim, classes, separation, seed=seed).to(dtype=torch.float64)
    model = mlp(dim, [width], outputs, "relu", seed=seed).double()
    with torch.no_grad():
        model[-1].weight.mul_(0.01)
        model[-1].bias.zero_()
    if loss == "cross_entropy":  # labels drawn from `outputs` possible classes, of which `classes` occur
        data: Any = Dataset(ds.inputs, ds.targets, "classification", outputs, ds.name)
    else:
        data = (ds.inputs, torch.nn.functional.one_hot(ds.targets, outputs).double())
    if steps:
        fit(model, data, loss=loss, lr=lr, steps=steps, progress=False)
    M = linalg.to_dense(operator(model, loss, data, matrix))
    values = torch.linalg.eigvalsh((M + M.T) / 2).flip(0)
    return values, count_outliers(values[: 3 * outputs])


# ---------------------------------------------------------------- do the outliers of H live in G?


@dataclass
class OutlierSubspace:
    """How far the top-``k`` eigenpairs of H = G + R are those of the Gauss-Newton part G.

    ``overlap`` = ||U_H^T U_G||_F^2 / k (1: the same subspace, k/P: unrelated), ``residual`` = ||R||_2,
    ``gap`` = lambda_k(G) - lambda_{k+1}(G), the distance between G's outliers and the rest.
    """

    k: int
    overlap: float
    residual: float
    gap: float
    h_top: list[float]
    g_top: list[float]

    @property
    def residual_small(self) -> bool:
        """||R|| < gap / 2. Weyl: every eigenvalue of H is within ||R|| of G's, so H keeps G's k outliers
        apart from the bulk; Davis-Kahan: the angle between the subspaces has sin <= ||R|| / (gap - ||R||) < 1.
        When it fails, R is as large as the outliers themselves and can reorder or merge them with the bulk."""
        return self.residual < self.gap / 2


@_deprecated.keyword_only("k")
def gauss_newton_outliers(model: nn.Module, loss: Any = "auto", data: Any = None, *, k: int) -> OutlierSubspace:
    """Compare the top ``k`` eigenvectors of the Hessian with those of its Gauss-Newton part (dense; small models)."""
    _checks.positive("k", k, integer=True)
    H, G = dense(model, loss, data, "hessian"), dense(model, loss, data, "gauss_newton")
    eh, vh = torch.linalg.eigh(H)
    eg, vg = torch.linalg.eigh(G)
    if k >= len(eg):
        raise ValueError(f"k must be below the number of parameters ({len(eg)}), got {k}")
    overlap = float((vh[:, -k:].T @ vg[:, -k:]).pow(2).sum()) / k
    residual = float(torch.linalg.eigvalsh(H - G).abs().max())
    gap = float(eg[-k] - eg[-k - 1])
    return OutlierSubspace(k, overlap, residual, gap, eh.flip(0)[:k].tolist(), eg.flip(0)[:k].tolist())


# ---------------------------------------------------------------- deprecated: the edge of stability is labkit.edge


def stability_threshold(lr: float, optimizer: Any) -> float:
    """Deprecated: :func:`labkit.edge.threshold` (which also knows Adam, AdamW, RMSprop and Nesterov)."""
    from labkit import _deprecated, edge

    _deprecated.warn("labkit.hessian.probes.stability_threshold", "labkit.edge.threshold")
    return edge.threshold(lr, optimizer)


def at_edge_of_stability(values: Any, threshold: float, last: int | None = None) -> Any:
    """Deprecated: :func:`labkit.edge.at_edge`, the one criterion (median over the last third of the values;
    ``last`` measurements instead when given)."""
    from labkit import _deprecated, edge

    _deprecated.warn("labkit.hessian.probes.at_edge_of_stability", "labkit.edge.at_edge")
    v = np.asarray(values, dtype=float)
    if last is None:
        return edge.at_edge(v, threshold)
    _checks.positive("last", last, integer=True)
    if v.ndim != 1 or len(v) < last + 1:
        raise ValueError(f"values must be a 1-D series longer than last={last}, got shape {v.shape}")
    return edge.at_edge(v, threshold, tail=last / len(v))


def edge_of_stability_run(
    lr: float, *, n: int = 128, steps: int = 2000, every: int = 20, seed: int = 0, live: Any = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any]:
    """Deprecated: :func:`labkit.lessons.edge.demo_run` with ``optimizer="sgd"`` (the same network, data and
    tracker; lesson code, so resolved by name rather than imported from this lower layer)."""
    _deprecated.warn("labkit.hessian.probes.edge_of_stability_run", "labkit.lessons.edge.demo_run('sgd', ...)")
    demo_run = _deprecated.resolve("labkit.lessons.edge:demo_run")
    return demo_run("sgd", lr, steps, every, n=n, seed=seed, live=live, callbacks=callbacks)


__getattr__ = _deprecated.moved(__name__, {"EdgeOfStability": "labkit.edge:EdgeVerdict",
                                          "EOS_START_BELOW": "labkit.edge:START_BELOW",
                                          "EOS_END_WITHIN": "labkit.edge:WITHIN"})
