"""Are the error bars right? Coverage of central predictive intervals, and teachers drawn from a kernel's prior.

A predictive distribution is calibrated when its central ``level`` intervals hold a fraction
``level`` of held-out targets. For the NNGP posterior (:func:`labkit.ntk.nngp_posterior`) this
holds exactly when the targets are drawn from the same prior with the same observation noise:
then each held-out target minus the posterior mean is N(0, posterior variance + noise).
"""

from __future__ import annotations

import math

import torch

from labkit import _checks
from labkit.ntk.posterior import Gaussian

__all__ = ["coverage", "sample_prior"]


def coverage(prediction: Gaussian, y: torch.Tensor, *, level: float = 0.9, noise: float = 0.0) -> torch.Tensor:
    """Fraction of targets ``y`` inside the central ``level`` intervals, per output column ``(O,)``.

    ``y`` ``(m,)`` or ``(m, O)`` held-out targets at the prediction's test points; ``noise`` (the
    observation-noise variance) widens the intervals to those of a new noisy observation. A
    prediction with a time axis gives ``(T, O)``.

    >>> g = Gaussian(torch.zeros(4, 1, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    >>> coverage(g, torch.tensor([0.1, -1.0, 1.5, 3.0]), level=0.9)  # 1.645-sigma intervals hold 3 of 4
    tensor([0.7500], dtype=torch.float64)
    """
    if not isinstance(prediction, Gaussian):
        raise TypeError(f"prediction must be a labkit.ntk.Gaussian, got {type(prediction).__name__}")
    _checks.tensor("y", y)
    _checks.positive("noise", noise, allow_zero=True)
    level = _checks.fraction("level", level)
    m = prediction.mean.shape[-2]
    if y.shape[0] != m or y.ndim > 2:
        raise ValueError(f"y must have shape ({m},) or ({m}, outputs) to match the prediction's {m} test points, got "
                         f"{tuple(y.shape)}")
    y = y.reshape(m, -1).to(prediction.mean.dtype)
    z = math.sqrt(2.0) * float(torch.erfinv(torch.tensor(level, dtype=torch.float64)))
    sd = (prediction.variance + noise).sqrt().unsqueeze(-1)  # (..., m, 1)
    inside = (y - prediction.mean).abs() <= z * sd
    return inside.to(prediction.mean.dtype).mean(-2)


def sample_prior(kernel: torch.Tensor, draws: int = 1, *, seed: int = 0) -> torch.Tensor:
    """``draws`` functions from the Gaussian process ``N(0, kernel)`` on the kernel's points: ``(N, draws)``.

    Drawn as ``V sqrt(lam) z`` from the eigendecomposition, so a singular kernel (repeated points, a
    low-rank kernel) is fine; eigenvalues below ``-1e-8`` of the largest mean the kernel is not a
    covariance, a ValueError.
    """
    _checks.tensor("kernel", kernel)
    _checks.positive("draws", draws, integer=True)
    seed = _checks.seed("seed", seed)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square (N, N) matrix, got shape {tuple(kernel.shape)}")
    k = kernel.to(torch.float64)
    _checks.finite("kernel", k)
    lam, vec = torch.linalg.eigh((k + k.T) / 2)
    if float(lam[0]) < -1e-8 * max(float(lam[-1]), 0.0) or float(lam[-1]) < 0:
        raise ValueError(f"kernel is not positive semi-definite (smallest eigenvalue {float(lam[0]):.3g}, largest "
                         f"{float(lam[-1]):.3g}): it is not the covariance of any Gaussian process")
    g = torch.Generator().manual_seed(seed)
    return vec @ (lam.clamp_min(0).sqrt()[:, None] * torch.randn(len(k), draws, generator=g, dtype=k.dtype))
