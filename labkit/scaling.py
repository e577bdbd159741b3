"""Scaling laws in miniature: fit power laws honestly, and a solvable model that produces them.

**Fitting** (:func:`fit_power_law`): ``L(x) = a x^-b + c`` by least squares on relative
residuals (what a log-log plot shows), profiled over ``b``, with pair-bootstrap intervals.
:func:`slope` is the plain log-log line; :func:`power_law_check` rejects a power law when
the two halves of the range need slopes that differ by more than twice the tolerance.

**The random-feature model** (after Bahri, Dyer, Kaplan, Lee, Sharma 2021, "Explaining
Neural Scaling Laws", arXiv:2102.06701, and Maloney, Roberts, Sully 2022, "A Solvable
Model of Neural Scaling Laws", arXiv:2210.16859): Gaussian data ``x`` in ``M`` dimensions
with covariance ``diag(lam)``, ``lam_i = i^-(1 + alpha)``; a linear target ``y = w . x``
with ``E w_i^2 = i^-beta`` (so the target's power at mode ``i`` is ``t_i = lam_i i^-beta``);
``N`` random features ``phi = F x`` (``F`` Gaussian); ridgeless least squares on ``D``
samples.

- infinite data, resolution-limited in ``N``: ``L_inf(N) = sum_i t_i kappa / (lam_i + kappa)``
  with ``kappa`` solving ``sum_i lam_i / (lam_i + kappa) = N`` (the deterministic equivalent
  of a random projection; ~ ``N^-(alpha + beta)``): :func:`rf_loss_infinite_data`;
- finite data at fixed ``N``, variance-limited in ``D``: the features are Gaussian and the
  part of ``y`` they cannot express is independent Gaussian noise of variance ``L_inf``, so
  ordinary least squares gives exactly ``E L = L_inf (1 + N / (D - N - 1))`` for
  ``D > N + 1``: :func:`rf_loss_ridgeless`;
- :func:`rf_simulate` draws the model and measures it (used to check both, and for the
  regimes the formulas do not cover, e.g. ``N > D``).

**Compute-optimal frontier** (:func:`frontier`): from loss curves of models of several sizes,
the best loss reachable with each compute budget, and the size that reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labkit import _checks, _deprecated
from labkit.machine import MAX_MEMORY

__all__ = ["Frontier", "PowerLawCheck", "PowerLawFit", "SizeSweep", "fit_power_law", "frontier", "live_plot",
           "loglog_slope", "mlp_sweep", "power_law_check", "rf_loss_infinite_data", "rf_loss_ridgeless", "rf_problem",
           "rf_simulate", "rf_simulate_kernel", "slope", "spectrum"]


# ---------------------------------------------------------------- fitting


def _xy(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"need at least 3 points to fit a power law, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise ValueError("x and y must be finite and positive (a power law lives on a log-log plot)")
    return x, y


def loglog_slope(x: Any, y: Any) -> tuple[Any, Any]:
    """The one log-log slope: least squares of ``log y`` on ``log x``, and its standard error (NaN with 2 points).

    ``y`` is ``(n,)`` (floats returned) or ``(n, k)``: ``k`` columns fitted at once (arrays returned), as the
    per-layer slopes of :func:`labkit.mup.slopes`. ``x`` is checked; a non-positive ``y`` gives NaN (undefined);
    :func:`slope` also checks ``y``.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or len(x) < 2 or len(y) != len(x) or not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"x must be at least 2 finite values > 0 with one y (row) each, got x of shape {x.shape} "
                         f"and y of shape {y.shape}")
    lx, ly = np.log(x), np.log(y)
    A = np.stack([lx, np.ones_like(lx)], 1)
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    r = ly - A @ coef
    dof = len(lx) - 2
    var = (r * r).sum(0) / dof if dof > 0 else np.full(np.shape(coef[0]), np.nan)
    se = np.sqrt(var * np.linalg.inv(A.T @ A)[0, 0])
    if ly.ndim == 1:
        return float(coef[0]), float(se)
    return coef[0], se


def slope(x: Any, y: Any) -> tuple[float, float]:
    """Slope of the least-squares line through ``(log x, log y)`` and its standard error (3 points or more)."""
    x, y = _xy(x, y)
    return loglog_slope(x, y)


@dataclass
class PowerLawFit:
    """``y = a x^-b + c`` fitted to ``(x, y)``; ``ci`` maps ``"a"``, ``"b"``, ``"c"`` to bootstrap intervals."""

    a: float
    b: float
    c: float
    x: np.ndarray
    y: np.ndarray
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.9
    bootstrap: np.ndarray | None = field(default=None, repr=False)

    def __call__(self, x: Any) -> np.ndarray:
        return self.a * np.asarray(x, dtype=float) ** -self.b + self.c

    @property
    def rel_residuals(self) -> np.ndarray:
        """``(fit - y) / y`` at the data points."""
        return (self(self.x) - self.y) / self.y

    def __str__(self) -> str:
        def iv(k: str) -> str:
            lo, hi = self.ci.get(k, (np.nan, np.nan))
            return f" [{lo:.3g}, {hi:.3g}]" if k in self.ci else ""

        return (f"L = {self.a:.3g}{iv('a')} x^-{self.b:.3f}{iv('b')} + {self.c:.3g}{iv('c')}"
                + (f"  ({self.level:.0%} bootstrap intervals)" if self.ci else ""))


def _fit_ac(x: np.ndarray, y: np.ndarray, b: np.ndarray, offset: bool) -> tuple[np.ndarray, ...]:
    """For each exponent in ``b``: the best ``a >= 0, c >= 0`` on relative residuals, and their squared sum."""
    u = x[None, :] ** -b[:, None] / y[None, :]  # (B, n): model a u + c v should equal 1
    v = np.broadcast_to(1.0 / y, u.shape)
    if offset:
        suu, svv, suv = (u * u).sum(1), (v * v).sum(1), (u * v).sum(1)
        su, sv = u.sum(1), v.sum(1)
        det = suu * svv - suv**2
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (su * svv - sv * suv) / det
            c = (sv * suu - su * suv) / det
        bad = ~(np.isfinite(a) & np.isfinite(c)) | (c < 0) | (a < 0)
    else:
        a, c, bad = np.zeros(len(b)), np.zeros(len(b)), np.ones(len(b), dtype=bool)
    # where the unconstrained solution leaves the feasible set: best of c = 0 and a = 0 alone
    a0 = np.clip(u.sum(1) / (u * u).sum(1), 0, None)
    c0 = np.clip(v.sum(1) / (v * v).sum(1), 0, None) if offset else np.zeros(len(b))
    e_a0 = ((a0[:, None] * u - 1) ** 2).sum(1)
    e_c0 = ((c0[:, None] * v - 1) ** 2).sum(1)
    use_a = e_a0 <= e_c0
    a = np.where(bad, np.where(use_a, a0, 0.0), a)
    c = np.where(bad, np.where(use_a, 0.0, c0), c)
    err = ((a[:, None] * u + c[:, None] * v - 1) ** 2).sum(1)
    return a, c, err


def _fit_once(x: np.ndarray, y: np.ndarray, offset: bool, b_range: tuple[float, float]) -> tuple[float, float, float]:
    grid = np.linspace(*b_range, 161)
    a, c, err = _fit_ac(x, y, grid, offset)
    i = int(np.argmin(err))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(32):  # golden-section refinement of the profile around the best grid point
        m1, m2 = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        e = _fit_ac(x, y, np.array([m1, m2]), offset)[2]
        lo, hi = (lo, m2) if e[0] <= e[1] else (m1, hi)
    b = np.array([0.5 * (lo + hi)])
    a, c, _ = _fit_ac(x, y, b, offset)
    return float(a[0]), float(b[0]), float(c[0])


def fit_power_law(
    x: Any,
    y: Any,
    *,
    offset: bool = True,
    bootstrap: int = 200,
    level: float = 0.9,
    b_range: tuple[float, float] = (0.0, 4.0),
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``y = a x^-b + c`` (``a, c >= 0``; ``c = 0`` with ``offset=False``) on relative residuals.

    For each ``b`` the best ``(a, c)`` is a 2x2 least-squares problem, so the fit is a
    1-D search over ``b`` in ``b_range`` (grid, then golden section): no starting guess,
    no local minima in ``(a, c)``. ``bootstrap`` resamples the points with replacement
    (seeded) and refits; ``ci`` holds the central ``level`` percentile intervals.

    >>> fit = fit_power_law([1, 2, 4, 8, 16], [3.0 * v ** -0.5 + 0.1 for v in [1, 2, 4, 8, 16]], bootstrap=0)
    >>> round(fit.a, 3), round(fit.b, 3), round(fit.c, 3)
    (3.0, 0.5, 0.1)
    """
    x, y = _xy(x, y)
    _checks.in_range("bootstrap", bootstrap, 0, 100_000)
    if not 0 < level < 1:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    if not (len(b_range) == 2 and 0 <= b_range[0] < b_range[1]):
        raise ValueError(f"b_range must be (low, high) with 0 <= low < high, got {b_range!r}")
    a, b, c = _fit_once(x, y, offset, b_range)
    fit = PowerLawFit(a, b, c, x, y, level=level)
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(bootstrap):
            idx = rng.integers(0, len(x), len(x))
            if np.unique(x[idx]).size < 3:
                continue
            draws.append(_fit_once(x[idx], y[idx], offset, b_range))
        fit.bootstrap = np.array(draws)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        fit.ci = {k: tuple(float(v) for v in np.percentile(fit.bootstrap[:, i], q)) for i, k in enumerate("abc")}
    return fit


@dataclass
class PowerLawCheck:
    """Does ``(x, y)`` look like one power law? Slopes of the whole range and of its two halves."""

    slope: float
    slope_low: float
    slope_high: float
    tol: float

    @property
    def rejected(self) -> bool:
        """True when the halves' slopes differ by more than ``2 tol`` (each may be off by ``tol``)."""
        return abs(self.slope_low - self.slope_high) > 2 * self.tol


def power_law_check(x: Any, y: Any, tol: float = 0.15) -> PowerLawCheck:
    """Fit log-log lines to the lower and upper halves of the range (in ``log x``) and compare slopes.

    A power law has one slope everywhere. If each half's slope is allowed an error of
    ``tol`` (the tolerance of the exponent claims), two halves of one power law differ by at
    most ``2 tol``; a larger difference rejects the power law. Needs >= 3 points per half.
    """
    x, y = _xy(x, y)
    _checks.positive("tol", tol)
    lx = np.log(x)
    mid = 0.5 * (lx.min() + lx.max())
    low, high = lx <= mid, lx >= mid
    if low.sum() < 3 or high.sum() < 3:
        raise ValueError("power_law_check needs at least 3 points in each half of the log range")
    return PowerLawCheck(slope(x, y)[0], slope(x[low], y[low])[0], slope(x[high], y[high])[0], tol)


# ---------------------------------------------------------------- the random-feature model


def spectrum(M: int, alpha: float, beta: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Data variances ``lam_i = i^-(1 + alpha)`` and target powers ``t_i = lam_i i^-beta``, ``i = 1 .. M``.

    ``alpha = -1`` gives a flat spectrum (all ``lam_i = 1``): no power law (the control).
    """
    _checks.positive("M", M, integer=True)
    i = np.arange(1, M + 1, dtype=float)
    lam = i ** -(1.0 + alpha)
    return lam, lam * i**-beta


def _kappa(lam: np.ndarray, n: float) -> float:
    """Solve ``sum lam / (lam + kappa) = n`` for ``kappa > 0`` (bisection in log kappa)."""
    if not 0 < n < len(lam):
        raise ValueError(f"N must be between 0 and the number of modes {len(lam)} (exclusive), got {n}")
    lo, hi = np.log(lam.min()) - 60, np.log(lam.max()) + 60
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if (lam / (lam + np.exp(mid))).sum() > n:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def rf_loss_infinite_data(N: Sequence[int] | int, lam: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Expected test loss with ``N`` random features and infinite data (deterministic equivalent).

    ``L = sum_i t_i kappa / (lam_i + kappa)``, ``sum_i lam_i / (lam_i + kappa) = N``: the
    features see the top ~``N`` modes and miss the tail, so a power-law spectrum gives
    ``L ~ N^-(alpha + beta)`` (Maloney et al. 2022; Bahri et al. 2021's resolution-limited regime).
    """
    lam, t = np.asarray(lam, dtype=float), np.asarray(t, dtype=float)
    ns = np.atleast_1d(np.asarray(N, dtype=float))
    out = np.array([(t * (k / (lam + k))).sum() for k in (_kappa(lam, n) for n in ns)])
    return out if np.ndim(N) else out[0]


def rf_loss_ridgeless(L_inf: Any, N: Any, D: Any) -> np.ndarray:
    """Expected ridgeless least-squares loss, ``N`` Gaussian features, ``D`` samples: ``L_inf (1 + N / (D - N - 1))``.

    Exact for ``D > N + 1`` (the mean of an inverse Wishart); NaN otherwise. ``L - L_inf``
    falls as ``N / D``: the variance-limited regime of Bahri et al.
    """
    L_inf, N, D = (np.asarray(v, dtype=float) for v in (L_inf, N, D))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(D > N + 1, L_inf * (1 + N / (D - N - 1)), np.nan)
    return out if out.ndim else float(out)


@dataclass
class RFProblem:
    """One draw of the random-feature model, reduced to the ``N_max`` features.

    ``A = F diag(lam) F^T`` (feature covariance), ``beta_star[N]`` the best coefficients of the
    first ``N`` features, ``L_inf[N]`` their loss with infinite data (exact for this ``F``).
    """

    A: torch.Tensor
    b: torch.Tensor  # F diag(lam) w
    total: float  # w^T diag(lam) w: the loss of predicting 0

    def population(self, N: int) -> tuple[torch.Tensor, float]:
        """``(beta_star, L_inf)`` for the first ``N`` features."""
        beta = torch.linalg.solve(self.A[:N, :N], self.b[:N])
        return beta, float(self.total - self.b[:N] @ beta)


@_deprecated.keyword_only("seed")
def rf_problem(N_max: int, lam: np.ndarray, t: np.ndarray, *, seed: int = 0) -> RFProblem:
    """Draw ``F`` (``N_max x M``, iid N(0, 1)) and the target ``w`` (``w_i^2`` mean ``t_i / lam_i``)."""
    lam_t = torch.as_tensor(np.asarray(lam, dtype=float))
    g = torch.Generator().manual_seed(int(seed))
    M = len(lam_t)
    _checks.in_range("N_max", N_max, 1, M - 1)
    w = torch.randn(M, generator=g, dtype=torch.float64) * torch.sqrt(torch.as_tensor(np.asarray(t)) / lam_t)
    F = torch.randn(N_max, M, generator=g, dtype=torch.float64)
    FL = F * lam_t
    return RFProblem(FL @ F.T, FL @ w, float((w * lam_t * w).sum()))


def rf_simulate(
    N: Sequence[int] | int,
    D: Sequence[int | None] | int | None,
    lam: np.ndarray,
    t: np.ndarray,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3),
) -> np.ndarray:
    """Measured test loss of ridgeless random-feature regression, ``(len(seeds), len(N), len(D))``.

    Per seed one :func:`rf_problem`; features nested (``N`` uses the first ``N`` rows of
    ``F``). ``D=None`` is infinite data (the exact population fit). For finite ``D`` the
    samples are drawn in feature space: ``phi ~ N(0, A_N)`` and ``y = beta_star . phi + e`` with
    ``e ~ N(0, L_inf)`` independent, which is exactly the model's distribution (Gaussian
    ``x``); the fit is least squares (minimum norm when ``N >= D``) and the loss is exact:
    ``L_inf + (beta - beta_star)^T A_N (beta - beta_star)``.
    """
    ns = [int(n) for n in np.atleast_1d(N)]
    ds = list(D) if isinstance(D, (list, tuple, np.ndarray)) else [D]
    out = np.empty((len(seeds), len(ns), len(ds)))
    for s, seed in enumerate(seeds):
        prob = rf_problem(max(ns), lam, t, seed=seed)
        g = torch.Generator().manual_seed(10_000 + int(seed))
        for i, n in enumerate(ns):
            beta_star, l_inf = prob.population(n)
            A = prob.A[:n, :n]
            chol = torch.linalg.cholesky(A)
            for j, d in enumerate(ds):
                if d is None:
                    out[s, i, j] = l_inf
                    continue
                phi = torch.randn(int(d), n, generator=g, dtype=torch.float64) @ chol.T
                y = phi @ beta_star + np.sqrt(max(l_inf, 0.0)) * torch.randn(int(d), generator=g, dtype=torch.float64)
                beta = torch.linalg.pinv(phi) @ y
                err = beta - beta_star
                out[s, i, j] = l_inf + float(err @ A @ err)
    return out


def rf_simulate_kernel(D: Sequence[int], lam: np.ndarray, t: np.ndarray, *, seeds: Sequence[int] = (0, 1, 2, 3)
                       ) -> np.ndarray:
    """Measured loss with infinitely many features (ridgeless regression on ``x`` itself), ``(len(seeds), len(D))``.

    Minimum-norm interpolation of ``D`` samples in ``M`` dimensions, loss exact given the
    fit: ``(w - beta)^T diag(lam) (w - beta)``. Resolution-limited in ``D``: ~ ``D^-(alpha + beta)``,
    the mirror image of :func:`rf_loss_infinite_data` in ``N``.
    """
    lam_t = torch.as_tensor(np.asarray(lam, dtype=float))
    out = np.empty((len(seeds), len(D)))
    for s, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        w = torch.randn(len(lam_t), generator=g, dtype=torch.float64) * torch.sqrt(
            torch.as_tensor(np.asarray(t)) / lam_t)
        for j, d in enumerate(D):
            x = torch.randn(int(d), len(lam_t), generator=g, dtype=torch.float64) * lam_t.sqrt()
            beta = x.T @ torch.linalg.solve(x @ x.T, x @ w)  # minimum-norm interpolant
            err = w - beta
            out[s, j] = float((err * lam_t * err).sum())
    return out


# ---------------------------------------------------------------- compute-optimal frontier


@dataclass
class Frontier:
    """The lower envelope of loss against compute over runs of several sizes.

    ``compute[j]`` is a budget, ``loss[j]`` the best loss any run reached with at most that
    compute, ``size[j]`` the size of the run that reached it.
    """

    compute: np.ndarray
    loss: np.ndarray
    size: np.ndarray

    def loss_slope(self) -> tuple[float, float]:
        """Log-log slope of the frontier loss against compute (and its standard error)."""
        return slope(self.compute, self.loss)

    def size_slope(self) -> tuple[float, float]:
        """Log-log slope of the compute-optimal size against compute."""
        return slope(self.compute, self.size)

    def scales(self, tol: float = 0.15) -> bool:
        """The frontier claim: the best loss falls with compute and the best size grows with it, both log-log
        slopes resolved from 0 by more than ``tol`` (the exponent tolerance used throughout). Either alone can
        hold by chance: on noise the frontier may still hop to larger sizes while its loss stays flat."""
        return bool(self.loss_slope()[0] < -tol and self.size_slope()[0] > tol)


def frontier(runs: Sequence[tuple[float, Any, Any]], points: int = 30) -> Frontier:
    """Compute-optimal frontier from ``runs = [(size, compute_curve, loss_curve), ...]``.

    Each run's loss curve is made monotone (the best loss so far: one can always stop
    early); for ``points`` log-spaced budgets between the smallest budget every run has
    reached and the largest budget any run reached, the frontier keeps the best run.
    """
    if not runs:
        raise ValueError("runs is empty: give (size, compute, loss) for at least one run")
    curves = []
    for k, run in enumerate(runs):
        if len(run) != 3:
            raise ValueError(f"runs[{k}] must be (size, compute, loss), got {len(run)} items")
        size, c, l_ = run
        c, l_ = np.asarray(c, dtype=float), np.asarray(l_, dtype=float)
        if c.shape != l_.shape or c.ndim != 1 or c.size == 0:
            raise ValueError(f"runs[{k}]: compute and loss must be 1-D arrays of the same length")
        l_ = np.fmin.accumulate(np.where(np.isfinite(l_), l_, np.inf))
        curves.append((float(size), c, l_))
    lo = max(c[0] for _, c, _ in curves)
    hi = max(c[-1] for _, c, _ in curves)
    grid = np.geomspace(lo, hi, points)
    best = np.full((len(curves), points), np.inf)
    for k, (_, c, l_) in enumerate(curves):
        idx = np.searchsorted(c, grid, side="right") - 1  # last point within the budget
        ok = idx >= 0
        best[k, ok] = l_[idx[ok]]
    arg = best.argmin(0)
    return Frontier(grid, best[arg, np.arange(points)], np.array([curves[k][0] for k in arg]))


# ---------------------------------------------------------------- live log-log figures


def live_plot(panels: Any, x_title: str = "step", *, log_x: bool = True, log_y: Any = True, **kwargs: Any) -> Any:
    """A :class:`labkit.viz.LivePlot` on log-log axes, its x axes titled ``x_title`` (for scaling curves):
    ``LivePlot(panels, x_title=x_title, log_x=log_x, log_y=log_y, ...)``, the one live-plot factory."""
    from labkit.viz import LivePlot

    return LivePlot(panels, x_title=x_title, log_x=log_x, log_y=log_y, **kwargs)


# ---------------------------------------------------------------- a real network: MLP teacher-student


@dataclass
class SizeSweep:
    """Test-loss curves of MLPs of several widths: ``loss[i, j]`` for ``widths[i]`` at ``steps[j]`` (seed mean)."""

    widths: np.ndarray
    params: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    n_train: int

    def compute(self, i: int) -> np.ndarray:
        """Training FLOPs of width ``i`` at each of ``steps``: ~6 per parameter per example (full batch)."""
        return 6.0 * self.params[i] * self.n_train * np.maximum(self.steps, 1)

    def final_loss(self) -> np.ndarray:
        """The best test loss each width reached (early stopping allowed)."""
        return np.nanmin(self.loss, axis=1)

    def frontier(self, points: int = 30) -> Frontier:
        """Compute-optimal frontier over the widths (size = parameter count)."""
        return frontier([(self.params[i], self.compute(i), self.loss[i]) for i in range(len(self.widths))], points)


def mlp_sweep(
    train: Any,
    test: Any,
    widths: Sequence[int],
    *,
    steps: int = 2000,
    lr: float = 1e-2,
    seeds: Sequence[int] = (0, 1),
    eval_every: int | None = None,
    progress: bool = True,
    executor: Any = None,
    max_memory: int = MAX_MEMORY,
) -> SizeSweep:
    """Train one-hidden-layer tanh MLPs of each width full batch with Adam; record their test loss.

    One :func:`labkit.train.fit_many` call per width trains its seeds together; the curve
    is the mean over seeds of the test MSE, every ``eval_every`` steps (default ``steps // 50``).
    """
    from labkit.models import mlp
    from labkit.train import fit_many

    if not widths:
        raise ValueError("widths is empty")
    dim, out = train.inputs.shape[1], train.targets.shape[1]
    curves, sizes = [], []
    for w in widths:
        _checks.positive("width", w, integer=True)
        hs = fit_many(lambda seed, w=w: mlp(dim, [w], out, activation="tanh", seed=seed), train, loss="mse",
                      hparams={"seed": list(seeds)}, optimizer="adam", lr=lr, steps=steps, eval_data=test,
                      eval_every=eval_every or max(1, steps // 50), progress=progress, executor=executor,
                      max_memory=max_memory)
        curves.append(np.nanmean([h.eval["loss"] for h in hs], axis=0))
        sizes.append(dim * w + w + w * out + out)
        eval_steps = np.asarray(hs[0].eval_steps)
    return SizeSweep(np.asarray(widths), np.asarray(sizes, dtype=float), eval_steps, np.asarray(curves), len(train))
