"""The experiments of notebook 11: what a landscape picture can and cannot show, each with its control.

Every function returns data and a ``holds`` verdict whose threshold comes from theory (the docstrings say
which), so a notebook cell, a test in ``tests/science/`` and a student run the same code:

- :func:`same_basin` -- a small-batch SGD and a full-batch GD solution from one initialisation are joined by
  a straight line without a barrier (Sagun et al. 2017); the control starts GD from another initialisation;
- :func:`slice_sharpness` -- a 1-D slice along the top Hessian eigenvector has curvature lambda_max, random
  unit slices have mean curvature tr(H)/P, so random pictures understate sharpness by P lambda_max / tr(H);
  the control is a quadratic with an isotropic spectrum (:func:`quadratic`);
- :func:`rescaling_curvature` -- rescale a ReLU layer by alpha and the next by 1/alpha (same function): the
  filter-normalised slice keeps its curvature, the raw random slice does not (Li et al. 2018);
- :func:`pca_excess` -- the two-component PCA fraction of a trajectory against a random walk's, whose
  expected value is ``8/pi^2 (1 + 1/9) = 0.90`` about the final point (Antognini & Sohl-Dickstein 2018);
- :func:`bulk_and_outliers` -- the exact Hessian spectra of trained MLPs of several widths: the near-zero bulk
  grows with the parameter count, the outliers stay (Sagun et al. 2017); the control sweeps the number of
  classes at one width instead, which moves the outliers.
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks
from labkit.landscape.directions import filter_normalize, hessian_directions, pca_directions, random_directions
from labkit.landscape.surface import Line, interpolate
from labkit.models import ParamSpec, mlp, param_dict

__all__ = ["FLAT", "RANDOM_WALK_TWO", "Barrier", "BulkOutliers", "PCAExcess", "Rescaling", "SliceSharpness",
           "basin_data", "bulk_and_outliers", "pca_excess", "quadratic", "random_walk", "rescaling_curvature",
           "same_basin", "slice_curvature", "slice_sharpness"]

#: the fraction of a long random walk's variance about its final point in its first two principal components:
#: the Brownian-motion covariance min(s, t) has eigenvalues proportional to 1/(k - 1/2)^2, whose sum is pi^2/2
RANDOM_WALK_TWO = 8 / math.pi**2 * (1 + 1 / 9)


def _flat(model: nn.Module) -> torch.Tensor:
    return ParamSpec.of(model).flatten(param_dict(model))


# ---------------------------------------------------------------- 1. same basin


def basin_data(*, seed: int = 0) -> Any:
    """The task of the same-basin experiment: a 4-class Gaussian mixture in 8 dimensions, 256 points, float64."""
    from labkit import data

    return data.gaussian_mixture(n=256, dim=8, classes=4, seed=seed).to(dtype=torch.float64)


@dataclass
class Barrier:
    """The straight line between two solutions and its barrier relative to the larger endpoint loss."""

    line: Line
    endpoint_loss: float

    @property
    def relative(self) -> float:
        """``barrier / max(L(start), L(end))``."""
        return self.line.barrier / self.endpoint_loss

    def holds(self, threshold: float = 0.01) -> bool:
        """No barrier: at most ``threshold`` (1%) of the endpoint loss."""
        return self.relative <= threshold


def same_basin(steps: int = 1000, *, different_init: bool = False, seed: int = 0, resolution: int = 41) -> Barrier:
    """Train a tanh MLP 8-32-4 twice: SGD (batch 8, lr 0.05) and GD (full batch, lr 0.5), ``steps`` each,
    from the same initialisation (``seed``) or, as the control, GD from the initialisation ``seed + 1``;
    return the line between the two solutions on the training data."""
    _checks.positive("steps", steps, integer=True)
    from labkit import train

    ds = basin_data()

    def solution(init: int, batch_size: int | None, lr: float) -> nn.Module:
        model = mlp(8, [32], 4, activation="tanh", seed=init).double()
        train.fit(model, ds, lr=lr, batch_size=batch_size, steps=steps, seed=seed, progress=False)
        return model

    sgd = solution(seed, 8, 0.05)
    gd = solution(seed + 1 if different_init else seed, None, 0.5)
    line = interpolate(sgd, ds, sgd, gd, resolution=resolution, progress=False)
    return Barrier(line, float(max(line.values[0], line.values[-1])))


# ---------------------------------------------------------------- 2. random slices understate sharpness


def slice_curvature(model: nn.Module, data: Any, direction: torch.Tensor, *, loss: Any = "auto",
                    half_width: float = 1e-2) -> float:
    """``d^2/dt^2 L(theta + t u)`` at ``t = 0`` for the unit vector ``u`` along ``direction``: a quadratic fitted
    to a 1-D landscape slice of 9 points on ``[-h, h]`` (``h = half_width``; small, so quartic terms vanish)."""
    u = direction / direction.norm()
    theta = _flat(model)
    line = interpolate(model, data, theta, theta + u, loss=loss, resolution=9, t_range=(-half_width, half_width),
                       progress=False)
    return line.curvature()


@dataclass
class SliceSharpness:
    """Slice curvatures: ``top`` along the top eigenvector, ``random`` along random unit directions, and the
    Hessian's ``lambda_max`` and ``trace / P`` (``mean_eigenvalue``)."""

    top: float
    random: np.ndarray
    lambda_max: float
    mean_eigenvalue: float

    @property
    def understatement(self) -> float:
        """How many times flatter a random slice looks: ``top / mean(random)``."""
        return self.top / float(self.random.mean())

    @property
    def predicted(self) -> float:
        """The theory's factor ``P lambda_max / tr(H)``."""
        return self.lambda_max / self.mean_eigenvalue

    def holds(self, factor: float = 10.0) -> bool:
        """The top slice measures lambda_max (1%), random slices average tr(H)/P (3 standard errors), and random
        slices understate the sharpness more than ``factor`` times (an order of magnitude)."""
        r = self.random
        se = float(r.std(ddof=1) / math.sqrt(len(r)))
        return (abs(self.top / self.lambda_max - 1) < 0.01 and abs(float(r.mean()) - self.mean_eigenvalue) <= 3 * se
                and self.understatement > factor)


def slice_sharpness(model: nn.Module, data: Any, *, loss: Any = "auto", n_random: int = 20,
                    seed: int = 0) -> SliceSharpness:
    """Curvature of the slice along the top Hessian eigenvector and along ``n_random`` random unit directions.

    ``lambda_max`` from :func:`labkit.linalg.top_eigenvalues`, ``tr(H) / P`` from the dense Hessian (teaching
    sizes: a few thousand parameters at most). The slice width is ``0.01 / sqrt(lambda_max)``.
    """
    from labkit import hessian

    _checks.in_range("n_random", n_random, 2, 10_000)
    values, vecs = hessian_directions(model, loss, data, k=1, seed=seed)
    lam = float(values[0])
    h = 1e-2 / math.sqrt(abs(lam))
    top = slice_curvature(model, data, vecs[0], loss=loss, half_width=h)
    dirs = random_directions(model, n_random, seed=seed)
    rand = np.array([slice_curvature(model, data, d, loss=loss, half_width=h) for d in dirs])
    trace = float(torch.diagonal(hessian.dense(model, loss, data)).sum())
    return SliceSharpness(top, rand, lam, trace / ParamSpec.of(model).numel)


def quadratic(spectrum: Any, *, seed: int = 0) -> tuple[nn.Module, Any]:
    """A model and data whose loss is exactly ``(1/2) w^T diag(spectrum) w`` shifted: least squares ``mean_i
    (x_i . w)^2`` with ``x_i = sqrt(P lambda_i / 2) e_i``, so ``H = diag(spectrum)`` everywhere (float64)."""
    lam = torch.as_tensor(spectrum, dtype=torch.float64)
    if lam.ndim != 1 or len(lam) < 2 or bool((lam <= 0).any()):
        raise ValueError(f"spectrum must be >= 2 positive eigenvalues, got {spectrum!r}")
    p = len(lam)
    model = mlp(p, [], 1, bias=False, seed=seed).double()
    x = torch.diag(torch.sqrt(p * lam / 2))
    return model, (x, torch.zeros(p, 1, dtype=torch.float64))


# ---------------------------------------------------------------- 3. why filter normalisation


@dataclass
class Rescaling:
    """Slice curvature along the same (seeded) direction before and after the rescaling by ``alpha``."""

    alpha: float
    normalised: bool
    before: float
    after: float

    @property
    def ratio(self) -> float:
        return self.after / self.before

    def holds(self, tol: float = 0.01) -> bool:
        """Unchanged by a rescaling that does not change the function (1%: the slices' numerical precision)."""
        return abs(self.ratio - 1) < tol


def rescaling_curvature(model: nn.Module, data: Any, alpha: float = 4.0, *, normalise: bool = True,
                        loss: Any = "auto", seed: int = 0, half_width: float = 1e-2) -> Rescaling:
    """Rescale a ReLU MLP's first layer (weights and bias) by ``alpha`` and the second layer's weights by
    ``1/alpha`` (ReLU is positively homogeneous: the function is unchanged) and measure the slice curvature
    along one seeded random direction in both networks, filter-normalised at each (``normalise``) or raw."""
    _checks.positive("alpha", alpha)
    dense = [name for name, p in param_dict(model).items() if p.ndim == 2]
    if len(dense) < 2:
        raise ValueError("rescaling_curvature needs a network with at least two dense layers")
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        first = dense[0].rsplit(".", 1)[0]
        scaled.get_parameter(dense[0]).mul_(alpha)
        if f"{first}.bias" in dict(scaled.named_parameters()):
            scaled.get_parameter(f"{first}.bias").mul_(alpha)
        scaled.get_parameter(dense[1]).div_(alpha)
    d = random_directions(model, 1, seed=seed)[0]
    curv = []
    for net in (model, scaled):
        u = filter_normalize(d, net) if normalise else d
        theta = _flat(net)
        line = interpolate(net, data, theta, theta + u, loss=loss, resolution=9, t_range=(-half_width, half_width),
                           progress=False)
        curv.append(line.curvature())
    return Rescaling(float(alpha), normalise, curv[0], curv[1])


# ---------------------------------------------------------------- 4. what a PCA plane shows


def random_walk(steps: int, dim: int, *, seed: int = 0) -> torch.Tensor:
    """``steps + 1`` snapshots of a Gaussian random walk in ``dim`` dimensions (float64)."""
    g = torch.Generator().manual_seed(_checks.seed("seed", seed))
    walk = torch.cumsum(torch.randn(steps, dim, generator=g, dtype=torch.float64), 0)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), walk])


@dataclass
class PCAExcess:
    """The two-component explained fraction of a trajectory, against a random walk's ``RANDOM_WALK_TWO``."""

    explained: float

    @property
    def residual_ratio(self) -> float:
        """The unexplained variance as a fraction of a random walk's: below 1 means more concentrated."""
        return (1 - self.explained) / (1 - RANDOM_WALK_TWO)

    def holds(self, ratio: float = 0.5) -> bool:
        """Lower-dimensional than a random walk: at most half a random walk's unexplained variance."""
        return self.residual_ratio < ratio


def pca_excess(trajectory: Any) -> PCAExcess:
    """The PCA plane's share of ``trajectory``'s variance (a Trajectory or ``(T, P)`` snapshots)."""
    return PCAExcess(pca_directions(trajectory).explained_total)


# ---------------------------------------------------------------- 5. width scales the bulk, not the outliers

#: "near zero" means |lambda| < FLAT * lambda_max. Gradient descent is stable up to the step 2 / lambda_max; at that
#: step a direction of curvature lambda relaxes by a factor e in lambda_max / (2 lambda) steps, so below
#: lambda_max / 1000 it takes more than 500 steps: flat on the time scale of a training run, which cannot tell it
#: from an exactly flat direction. (Float64 round-off in a dense eigensolver is ~1e-16 lambda_max: far below.)
FLAT = 1e-3


@dataclass
class BulkOutliers:
    """Exact Hessian spectra (descending) of trained MLPs along a sweep of ``swept`` (``"width"`` or
    ``"classes"``): ``settings`` its values, ``params`` the parameter counts P, ``outliers`` the count of each
    spectrum's top eigenvalues above its widest gap (:func:`labkit.hessian.count_outliers` over the top 3k)."""

    swept: str
    settings: list[int]
    params: list[int]
    spectra: list[np.ndarray]
    outliers: list[int]
    flat: float = FLAT

    @property
    def near_zero(self) -> list[int]:
        """How many eigenvalues have ``|lambda| < flat * lambda_max``: the bulk near zero."""
        return [int((np.abs(v) < self.flat * v[0]).sum()) for v in self.spectra]

    def holds(self) -> bool:
        """The bulk grows with P (the near-zero count rises at every step of the sweep) while the outlier count
        stays the same: what Sagun et al. mean by "adding parameters merely scales the bulk"."""
        nz = self.near_zero
        return all(a < b for a, b in itertools.pairwise(nz)) and len(set(self.outliers)) == 1

    def figure(self) -> Any:
        """|lambda| / lambda_max against rank, one line per setting, log scale (floored at 1e-12), the near-zero
        threshold dashed: the outliers are the points left of the widest gap, the bulk the points below the line."""
        from labkit.viz import figures, theme

        fig = theme.figure(f"Exact Hessian spectra by {self.swept} (dashed: near zero; floor 1e-12)",
                           "rank (largest first)", "|eigenvalue| / lambda_max", log_y=True, height=420)
        for s, p, v, n, nz, color in zip(self.settings, self.params, self.spectra, self.outliers, self.near_zero,
                                         figures.palette(len(self.settings))):
            mag = np.maximum(np.sort(np.abs(v))[::-1] / v[0], 1e-12)
            fig.add_scatter(x=np.arange(1, len(mag) + 1), y=mag, mode="lines+markers", marker={"size": 4},
                            line={"color": color},
                            name=f"{self.swept} {s} (P = {p}): {n} outliers, {nz} near zero")
        fig.add_hline(y=self.flat, line={"dash": "dash", "color": theme.REFERENCE})
        fig.update_layout(legend={"x": 0.99, "xanchor": "right", "y": 0.99})
        return fig


def bulk_and_outliers(widths: int | Sequence[int] = (8, 16, 32), classes: int | Sequence[int] = 3, *,
                      loss: str = "mse", steps: int = 2000, lr: float = 0.01, per_class: int = 20,
                      seed: int = 0) -> BulkOutliers:
    """Train a one-hidden-layer ReLU MLP (4 inputs, ``width`` hidden units, ``classes`` outputs) with full-batch
    GD on a ``classes``-class Gaussian mixture (``per_class`` points per class) and take the exact Hessian's
    spectrum, for each width (``widths`` a sequence, ``classes`` one number: the claim) or for each number of
    classes (``classes`` a sequence, one width: the control). Sorted by parameter count.

    The outliers come from the Gauss-Newton part's class structure (Sagun et al.; Papyan: about one per class),
    which the width does not change; every added parameter adds an eigenvalue, and it joins the bulk.
    """
    from labkit.hessian.probes import outlier_count

    args = {"widths": widths, "classes": classes}
    for key, v in args.items():
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, Sequence)) or isinstance(v, str):
            raise TypeError(f"{key} must be an int or a sequence of ints, got {v!r} ({type(v).__name__})")
    many = [name for name, v in args.items() if not isinstance(v, numbers.Integral)]
    if len(many) != 1:
        raise ValueError(f"sweep exactly one of widths and classes (a sequence) and fix the other (an int), got "
                         f"widths={widths!r}, classes={classes!r}")
    name, = many
    fixed = "classes" if name == "widths" else "widths"
    _checks.positive(fixed, args[fixed], integer=True)
    settings = sorted(_checks.positive(f"{name} entry", v, integer=True) for v in args[name])  # type: ignore[union-attr]
    if len(set(settings)) < 2 or len(set(settings)) < len(settings):
        raise ValueError(f"{name} must hold at least two different values, got {args[name]!r}")
    runs = [outlier_count(k, k, loss, "hessian", steps=steps, lr=lr, per_class=per_class, width=w, seed=seed)
            for w, k in ((s, args["classes"]) if name == "widths" else (args["widths"], s) for s in settings)]
    spectra = [v.numpy() for v, _ in runs]
    return BulkOutliers("width" if name == "widths" else "classes", settings, [len(v) for v in spectra], spectra,
                        [n for _, n in runs])
