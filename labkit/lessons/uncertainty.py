"""Experiments of notebook 02's section on error bars: each returns numbers (for asserts) and a figure (for the reader).

Lesson helpers (like :mod:`labkit.lessons.ntk`), built on the public :func:`labkit.ntk.train_ensemble`,
:func:`labkit.ntk.gd_ensemble`, :func:`labkit.ntk.nngp_posterior` and :func:`labkit.ntk.coverage`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from labkit import _checks
from labkit.ntk.analytic import analytic
from labkit.ntk.calibration import coverage, sample_prior
from labkit.ntk.dynamics import predict
from labkit.ntk.ensemble import train_ensemble
from labkit.ntk.posterior import gd_ensemble, nngp_posterior, normal_quantile

__all__ = ["bayes_vs_gd", "calibration", "ensemble_vs_width", "grid_task"]

DT = torch.float64


def _slope(x: Sequence[float], y: Sequence[float]) -> float:
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def grid_task(n: int = 8, m: int = 25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` training inputs evenly on [-2, 2] with targets ``sin(2x)``, and ``m`` test inputs on [-3, 3] (float64)."""
    x = torch.linspace(-2, 2, n, dtype=DT).reshape(-1, 1)
    return x, torch.sin(2 * x), torch.linspace(-3, 3, m, dtype=DT).reshape(-1, 1)


def _theory_kernels(x: torch.Tensor, parameterization: str, width: int, depth: int) -> tuple[torch.Tensor, ...]:
    """Infinite-width (NNGP, NTK) on ``x`` in the units of this parameterisation at this width.

    NTK parameterisation (``bias_std`` 1): :func:`analytic` itself. Mean-field (readout ``1/width``, no readout
    bias, unit scales): the same recursion with ``sigma_w = sigma_b = 1``, minus the readout bias term 1, divided
    by the width: at infinite width its kernels vanish, which is why such networks cannot stay lazy.
    """
    if parameterization == "ntk":
        return analytic(x, depth=depth, bias_std=1.0)
    k, th = analytic(x, depth=depth, weight_std=1.0, bias_std=1.0)
    return (k - 1) / width, (th - 1) / width


def ensemble_vs_width(widths: Sequence[int], *, parameterization: str = "ntk", depth: int = 1, members: int = 16,
                      steps: Sequence[int] = (10, 30, 100), lr: float = 0.25, seed: int = 0,
                      progress: bool = True) -> dict[str, Any]:
    """Train an ensemble per width on :func:`grid_task` and compare it with the NTK-GD prediction of its kernels.

    ``lr`` is a fraction of the largest stable step ``n / lambda_max`` of the infinite-width NTK (in the
    parameterisation's own units, so the theory's time scale is the same at every width). The prediction
    for each member is coupled to its own initial function (:meth:`Ensemble.linearized`: the same draws,
    so the ensemble's sampling noise cancels). Returns per width: ``deviation`` (RMS over members, test
    points and times of ``f - g``, relative to the RMS distance training moved the prediction ``g - f_0``),
    ``mean_error`` and ``variance_error`` (relative RMS differences of the ensemble's mean and variance from
    those of the coupled prediction), their log-log ``slopes``, ``diverged`` and a figure of the widest
    ensemble (mean and 90% band at the last step) against :func:`gd_ensemble`'s.
    """
    _checks.choice("parameterization", parameterization, ["ntk", "mean_field"])
    x, y, xt = grid_task()
    n = len(x)
    xx = torch.cat([x, xt])
    dev, mean_err, var_err, diverged, last = [], [], [], 0, None
    for w in widths:
        k, th = _theory_kernels(xx, parameterization, w, depth)
        step = lr * n / float(torch.linalg.eigvalsh(th[:n, :n])[-1])
        ens = train_ensemble(x, y, xt, width=w, depth=depth, members=members, steps=steps, lr=step,
                             parameterization=parameterization, bias_std=1.0, seed=seed, progress=progress)
        g = ens.linearized(th, y, lr=step)  # (T, M, m, 1)
        f = ens.outputs
        dev.append(float(((f - g).pow(2).nanmean() / (g - ens.initial_test[None]).pow(2).mean()).sqrt()))
        mean_err.append(float((f.nanmean(1) - g.mean(1)).norm() / g.mean(1).norm()))
        var_err.append(float((f.var(1) - g.var(1)).norm() / g.var(1).norm()))
        diverged += ens.diverged
        last = (ens, k, th, step)
    ens, k, th, step = last
    theory = gd_ensemble(k, th, y, t=ens.steps[-1], lr=step, discrete=True)
    from labkit.viz import theme
    from labkit.viz.figures import intervals

    z = normal_quantile(0.9)
    fig = intervals(xt, theory.mean, *theory.interval(0.9), name="NTK-GD theory",
                    title=f"{parameterization}, width {widths[-1]}, {members} networks after {ens.steps[-1]} steps",
                    points=(x, y))
    sd = ens.covariance[-1].diagonal().clamp_min(0).sqrt()
    mu = ens.mean[-1, :, 0]
    intervals(xt, mu, mu - z * sd, mu + z * sd, name="trained ensemble", fig=fig, color=theme.COLORS[1])
    return {"widths": list(widths), "deviation": dev, "mean_error": mean_err, "variance_error": var_err,
            "slopes": {"deviation": _slope(widths, dev), "mean": _slope(widths, mean_err),
                       "variance": _slope(widths, var_err)},
            "diverged": diverged, "figure": fig}


TEACHER = {"depth": 1, "activation": "relu", "bias_std": 1.0}


def calibration(teacher: Mapping[str, Any] = TEACHER, model: Mapping[str, Any] = TEACHER, *, draws: int = 200,
                n: int = 12, m: int = 40, noise: float = 0.01, level: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """Coverage of the NNGP posterior's central ``level`` intervals on held-out points of teacher functions.

    ``draws`` teachers from the NNGP prior of the architecture ``teacher`` (keyword arguments of
    :func:`labkit.ntk.analytic`) on ``n`` training inputs evenly on [-2, 2] and ``m`` held-out random inputs
    in the same range, observed with noise of variance ``noise``; the posterior of the architecture ``model``
    with the same noise. Returns ``coverage`` (mean over draws), ``se`` (its standard error across the
    independent draws), ``per_draw`` and a figure of the first draw's intervals.
    """
    _checks.positive("draws", draws, integer=True)
    if draws < 2:
        raise ValueError(f"draws must be >= 2 (a standard error needs two), got {draws}")
    x = torch.linspace(-2, 2, n, dtype=DT).reshape(-1, 1)
    xt = torch.rand(m, 1, generator=torch.Generator().manual_seed(seed + 1), dtype=DT) * 4 - 2
    xx = torch.cat([x, xt])
    f = sample_prior(analytic(xx, **teacher)[0], draws, seed=seed)  # (n + m, draws)
    obs = f + math.sqrt(noise) * torch.randn(f.shape, generator=torch.Generator().manual_seed(seed + 2), dtype=DT)
    post = nngp_posterior(analytic(xx, **model)[0], obs[:n], noise=noise)  # every draw is one output column
    per_draw = coverage(post, obs[n:], level=level, noise=noise)  # (draws,)
    from labkit.viz.figures import intervals

    band = normal_quantile(level) * (post.variance + noise).sqrt()  # intervals of a new noisy observation
    fig = intervals(xt, post.mean[:, 0], post.mean[:, 0] - band, post.mean[:, 0] + band, name="NNGP posterior",
                    points=(x, obs[:n, 0]), truth=(xt, obs[n:, 0]),
                    title=f"{level:.0%} intervals, teacher {dict(teacher)}")
    return {"coverage": float(per_draw.mean()), "se": float(per_draw.std() / math.sqrt(draws)),
            "per_draw": per_draw, "level": level, "figure": fig}


def bayes_vs_gd(depth: int = 1, *, readout_only: bool = False, n: int = 8, m: int = 25) -> dict[str, Any]:
    """At ``t = inf``: the NTK-GD ensemble against kernel regression with the NTK and against the NNGP posterior.

    Returns ``mean_gap`` (max |GD mean - ntk.predict(t=None)|, an identity: zero up to rounding),
    ``variance_gap`` (relative RMS difference between the GD ensemble's variance and the NNGP posterior's),
    both predictions and a figure. ``readout_only=True`` trains only the last layer, whose NTK is the NNGP
    kernel itself: then gradient descent gives exactly the Bayesian posterior (Lee et al. 2019).
    """
    x, y, xt = grid_task(n, m)
    k, th = analytic(torch.cat([x, xt]), depth=depth, bias_std=1.0)
    if readout_only:
        th = k  # the readout weights' share of the NTK is the NNGP kernel of the last hidden layer
    gd = gd_ensemble(k, th, y)
    bayes = nngp_posterior(k, y)
    ridge = predict(th[:n, :n], th[n:, :n], y)
    gap = float((gd.variance - bayes.variance).norm() / bayes.variance.norm())
    from labkit.viz.figures import intervals

    fig = intervals(xt, bayes.mean, *bayes.interval(0.9), name="NNGP posterior (Bayes)", points=(x, y),
                    title=f"t = inf, depth {depth}{', readout only' if readout_only else ''}: GD ensemble vs Bayes")
    intervals(xt, gd.mean, *gd.interval(0.9), name="NTK-GD ensemble", fig=fig)
    return {"mean_gap": float((gd.mean - ridge).abs().max()), "variance_gap": gap, "gd": gd, "bayes": bayes,
            "figure": fig}
