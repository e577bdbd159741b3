"""Predictive distributions of infinitely wide networks: the NNGP posterior and the NTK gradient-descent ensemble.

An infinitely wide network at initialisation is a Gaussian process with the NNGP kernel ``K``
(one independent GP per output unit). Two ways to condition it on training data ``(X, Y)``:

- **Bayesian inference** (:func:`nngp_posterior`): exact GP regression with observation noise
  ``noise``: mean ``K_*X (K_XX + noise I)^-1 Y``, covariance ``K_** - K_*X (K_XX + noise I)^-1 K_X*``.
- **Gradient descent on MSE** (:func:`gd_ensemble`, Lee et al. 2019, "Wide Neural Networks of Any
  Depth Evolve as Linear Models Under Gradient Descent", NeurIPS, arXiv:1902.06720): every network of
  the ensemble evolves as its linearisation, so the ensemble stays Gaussian. With the NTK ``Theta`` and
  ``T(t) = Theta_XX^-1 (I - exp(-c Theta_XX t))``, ``c = 2 lr / n`` (labkit's MSE, no 1/2, ``t`` in steps
  as in :func:`labkit.ntk.predict`)::

      mean(t) = Theta_*X T(t) Y
      cov(t)  = K_** + Theta_*X T K_XX T^T Theta_X* - (Theta_*X T K_X* + K_*X T^T Theta_X*)

  At ``t = 0`` this is the prior; at ``t = inf`` the mean is kernel regression with the NTK and the
  covariance is *not* the NNGP posterior's (GD-trained ensembles are not Bayesian posteriors).

Both follow neural-tangents' ``predict.gp_inference(get="nngp")`` and
``predict.gradient_descent_mse_ensemble(get="ntk", compute_cov=True)`` (their ``diag_reg`` with
``diag_reg_absolute_scale=True``; their time is ``2 lr t O / learning_rate`` for ``O`` outputs, their loss
being ``0.5 |f - y|^2 / (n O)``). Kernels are given on the training points followed by the test points,
``(n + m, n + m)``, as :func:`labkit.ntk.analytic` returns them on ``torch.cat([x_train, x_test])``::

    nngp, ntk_ = analytic(torch.cat([x_train, x_test]), depth=2)
    bayes = nngp_posterior(nngp, y_train, noise=1e-4)
    gd = gd_ensemble(nngp, ntk_, y_train, t=[10, 100, math.inf], lr=0.5)
    gd.mean, gd.covariance            # (3, m, O), (3, m, m)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from labkit import _checks
from labkit.machine import MAX_MEMORY

__all__ = ["MAX_MEMORY", "Gaussian", "gd_ensemble", "nngp_posterior", "normal_quantile", "predictive_memory"]

Times = float | Sequence[float] | torch.Tensor | None


@dataclass(frozen=True)
class Gaussian:
    """A Gaussian predictive distribution on ``m`` test points, the same for each of ``O`` output columns.

    ``mean`` ``(m, O)`` and ``covariance`` ``(m, m)``, or with a leading time axis ``(T, ...)`` when
    :func:`gd_ensemble` was given several times (``times``).
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    times: torch.Tensor | None = None

    @property
    def variance(self) -> torch.Tensor:
        """The marginal variances, the covariance's diagonal ``(m,)`` (or ``(T, m)``), clamped at 0."""
        return self.covariance.diagonal(dim1=-2, dim2=-1).clamp_min(0)

    def interval(self, level: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
        """The central ``level`` interval of every marginal: ``(lower, upper)``, each shaped like ``mean``."""
        z = normal_quantile(_checks.fraction("level", level))
        half = z * self.variance.sqrt().unsqueeze(-1)
        return self.mean - half, self.mean + half


def normal_quantile(level: float) -> float:
    """The standard normal quantile with central mass ``level``: ``sqrt(2) erfinv(level)``."""
    return math.sqrt(2.0) * float(torch.erfinv(torch.tensor(level, dtype=torch.float64)))


def predictive_memory(n_train: int, n_test: int, *, times: int = 1, outputs: int = 1,
                      dtype: torch.dtype = torch.float64) -> int:
    """Bytes :func:`gd_ensemble` (or, with ``times=1``, :func:`nngp_posterior`) needs at most, up front.

    Two ``(N, N)`` kernels (``N = n_train + n_test``) in ``dtype``, an eigen- or Cholesky decomposition
    of the ``(n, n)`` training block, and per time the ``(m, n)`` filtered cross-kernel, two ``(m, n)``
    products and three ``(m, m)`` covariance terms, plus the ``(m, O)`` mean.
    """
    item = torch.empty((), dtype=dtype).element_size()
    n, m, N = n_train, n_test, n_train + n_test
    return item * (2 * N * N + 4 * n * n + 2 * m * n + times * (3 * m * n + 3 * m * m + m * outputs))


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"


def _check_memory(n: int, m: int, times: int, outputs: int, dtype: torch.dtype, max_memory: int) -> None:
    need = predictive_memory(n, m, times=times, outputs=outputs, dtype=dtype)
    if need <= max_memory:
        return
    fit_t = max(0, times)
    while fit_t > 0 and predictive_memory(n, m, times=fit_t, outputs=outputs, dtype=dtype) > max_memory:
        fit_t //= 2
    hint = f"ask for at most {fit_t} times per call" if fit_t >= 1 else "use fewer test points"
    raise ValueError(
        f"this prediction needs about {_gib(need)} ({n} training and {m} test points, {times} times, {dtype}), "
        f"more than max_memory={_gib(max_memory)}; {hint}, or raise max_memory (bytes)"
    )


def _inputs(kernels: dict[str, torch.Tensor], y_train: torch.Tensor, dtype: torch.dtype,
            max_memory: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, int, int]:
    """Check shapes and cast to ``dtype``: kernels ``(N, N)`` over train then test points, ``y`` ``(n, O)``."""
    _checks.positive("max_memory", max_memory, integer=True)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (float64 by default), got {dtype!r}")
    _checks.tensor("y_train", y_train)
    if y_train.ndim not in (1, 2) or y_train.shape[0] == 0:
        raise ValueError(f"y_train must have shape (n,) or (n, outputs) with n >= 1, got {tuple(y_train.shape)}")
    y = y_train.reshape(y_train.shape[0], -1)
    n = y.shape[0]
    size = None
    for name, k in kernels.items():
        _checks.tensor(name, k)
        if k.ndim != 2 or k.shape[0] != k.shape[1]:
            raise ValueError(f"{name} must be a square (N, N) kernel on the training points followed by the test "
                             f"points, got shape {tuple(k.shape)}")
        if size is not None and k.shape != size:
            raise ValueError(f"the kernels must have the same shape, got {tuple(size)} and {name} {tuple(k.shape)}")
        size = k.shape
    N = size[0]
    if N <= n:
        raise ValueError(f"the kernels are {N} x {N} but y_train has {n} rows: the kernels must cover the {n} training "
                         f"points followed by at least one test point")
    _checks.finite("y_train", y)
    for name, k in kernels.items():
        _checks.finite(name, k)
    return {k: v.to(dtype) for k, v in kernels.items()}, y.to(dtype), n, N - n


def _factor(a: torch.Tensor) -> torch.Tensor | None:
    """The Cholesky factor of ``a``, or None when it fails or a pivot is at rounding level (numerically singular:
    an exactly singular kernel, e.g. with a repeated input, often factorises by luck into garbage)."""
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        return None
    floor = len(a) * torch.finfo(a.dtype).eps * float(a.diagonal().abs().max())
    return chol if float(chol.diagonal().min()) ** 2 > floor else None


def _cholesky(a: torch.Tensor, name: str, knob: str, base: float) -> torch.Tensor:
    """Cholesky factor of ``a``; if it fails, a ValueError naming the smallest ``knob`` that makes it work.

    ``base`` is the value of ``knob`` already on ``a``'s diagonal. The working value is found by
    doubling from the eigenvalue deficit and then bisecting (to within 10%).
    """
    chol = _factor(a)
    if chol is not None:
        return chol
    lam = torch.linalg.eigvalsh(a)
    scale = float(lam.abs().max()) or 1.0

    def works(extra: float) -> bool:
        return _factor(a + extra * torch.eye(len(a), dtype=a.dtype, device=a.device)) is not None

    tiny = scale * torch.finfo(a.dtype).eps
    hi, lo = max(-float(lam[0]), 0.0) + tiny, 0.0
    while not works(hi):
        hi, lo = 2 * hi, hi
    while hi - lo > 0.1 * hi and hi > tiny:  # bisect down to 10%, or to rounding level
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if works(mid) else (mid, hi)
    zero = (a.diagonal() - base).abs() <= scale * 1e-14
    why = (f"; training point {int(zero.nonzero()[0])} has zero kernel variance (a zero input with bias_std=0?)"
           if bool(zero.any()) else "")
    raise ValueError(
        f"{name} ({len(a)} x {len(a)}) is singular or not positive definite (eigenvalues from {float(lam[0]):.3g} "
        f"to {float(lam[-1]):.3g}{why}; a repeated training input also makes a kernel singular): its Cholesky "
        f"factorisation fails. The smallest {knob} that works here is "
        f"about {base + hi:.3g} (pass {knob}={base + hi:.3g} or more; it adds that much to the diagonal)"
    )


def _times(t: Times, dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
    """Times as a 1-D tensor (``None`` is infinity) and whether one scalar time was given."""
    scalar = t is None or isinstance(t, (int, float)) or (isinstance(t, torch.Tensor) and t.ndim == 0)
    if isinstance(t, bool):
        raise TypeError(f"t must be a number of steps >= 0 (or None / math.inf), got {t!r}")
    times = torch.tensor([math.inf], dtype=dtype) if t is None else torch.as_tensor(t, dtype=dtype).reshape(-1)
    if times.numel() == 0 or bool(torch.isnan(times).any()) or bool((times < 0).any()):
        raise ValueError(f"t must be >= 0 (a number of steps, math.inf or None for converged), got {t!r}")
    return times, scalar


def nngp_posterior(kernel: torch.Tensor, y_train: torch.Tensor, *, noise: float = 0.0,
                   dtype: torch.dtype = torch.float64, max_memory: int = MAX_MEMORY) -> Gaussian:
    """The exact GP posterior on the test points given a kernel on ``[train; test]`` and training targets.

    ``kernel`` ``(n + m, n + m)`` (the NNGP kernel for the Bayesian infinitely wide network), ``y_train``
    ``(n,)`` or ``(n, O)``; ``noise`` is the observation-noise variance added to the training block.
    Returns the latent function's posterior (add ``noise`` to the variance for new observations).
    A singular training block raises a ValueError naming the smallest ``noise`` that works.

    One training point, kernel 1 everywhere: the test value is pinned to the target::

        >>> k = torch.ones(2, 2, dtype=torch.float64)
        >>> post = nngp_posterior(k, torch.tensor([3.0]), noise=1.0)
        >>> post.mean, post.covariance  # 1 / (1 + 1) * 3 and 1 - 1 / 2
        (tensor([[1.5000]], dtype=torch.float64), tensor([[0.5000]], dtype=torch.float64))
    """
    _checks.positive("noise", noise, allow_zero=True)
    ks, y, n, m = _inputs({"kernel": kernel}, y_train, dtype, max_memory)
    _check_memory(n, m, 1, y.shape[1], dtype, max_memory)
    k = ks["kernel"]
    kxx = k[:n, :n] + noise * torch.eye(n, dtype=dtype, device=k.device)
    chol = _cholesky(kxx, "the training block of kernel", "noise", noise)
    a = torch.cholesky_solve(k[:n, n:], chol).T  # (m, n) = K_*X (K_XX + noise)^-1
    return Gaussian(a @ y, k[n:, n:] - a @ k[:n, n:])


def gd_ensemble(nngp: torch.Tensor, ntk: torch.Tensor, y_train: torch.Tensor, *, t: Times = None, lr: float = 1.0,
                diag_reg: float = 0.0, discrete: bool = False, dtype: torch.dtype = torch.float64,
                max_memory: int = MAX_MEMORY) -> Gaussian:
    """The ensemble of infinitely wide networks trained by gradient descent on MSE, at time(s) ``t``.

    ``nngp``, ``ntk``: kernels ``(n + m, n + m)`` on ``[train; test]``; ``y_train`` ``(n,)`` or ``(n, O)``;
    ``t`` in steps of gradient descent with learning rate ``lr`` on labkit's MSE (read as gradient flow),
    a number, a sequence, or ``None`` / ``math.inf`` (converged). ``diag_reg`` is added to the NTK's
    training block (ridge-regularised flow). ``discrete=True`` follows gradient descent step by step
    instead of the flow (``1 - exp(-c lam t)`` becomes ``1 - (1 - c lam)^t``; integer ``t``), which is what
    finite networks trained by :func:`labkit.train.fit_many` do at any learning rate. Returns the mean ``(m, O)``
    and covariance ``(m, m)`` of the test outputs over initialisations (with a leading time axis for a sequence
    of times). Finite times use one eigendecomposition (defined for any PSD kernel); ``t = inf`` solves with a Cholesky
    factor and raises a ValueError naming the smallest ``diag_reg`` that works when the NTK is singular.
    """
    _checks.positive("lr", lr)
    _checks.positive("diag_reg", diag_reg, allow_zero=True)
    ks, y, n, m = _inputs({"nngp": nngp, "ntk": ntk}, y_train, dtype, max_memory)
    times, scalar = _times(t, dtype)
    times = times.to(ks["ntk"].device)
    _check_memory(n, m, len(times), y.shape[1], dtype, max_memory)
    k, th = ks["nngp"], ks["ntk"]
    eye = torch.eye(n, dtype=dtype, device=th.device)
    txx, tsx = th[:n, :n] + diag_reg * eye, th[n:, :n]
    kxx, kxs, kss = k[:n, :n], k[:n, n:], k[n:, n:]
    a = torch.empty(len(times), m, n, dtype=dtype, device=th.device)  # per time, Theta_*X T(t)
    finite = torch.isfinite(times)
    if bool(finite.any()):
        ts = times[finite][:, None]
        lam, vec = torch.linalg.eigh((txx + txx.T) / 2)
        lam = lam.clamp_min(0)[None]
        rate = 2.0 * lr / n
        if discrete and bool((ts != ts.round()).any()):
            raise ValueError(f"discrete=True counts whole steps: t must be integers (or inf), got {t!r}")
        # (1 - exp(-rate lam t)) / lam, or (1 - (1 - rate lam)^t) / lam, with its limit rate t where lam = 0
        gone = 1 - torch.pow(1 - rate * lam, ts) if discrete else -torch.expm1(-rate * lam * ts)  # (T, n)
        filt = torch.where(lam > 0, gone / torch.where(lam > 0, lam, torch.ones_like(lam)), rate * ts)
        a[finite] = torch.einsum("mk,tk,jk->tmj", tsx @ vec, filt, vec)
    if not bool(finite.all()):
        chol = _cholesky(txx, "the training block of ntk", "diag_reg", diag_reg)
        a[~finite] = torch.cholesky_solve(tsx.T, chol).T  # Theta_*X Theta_XX^-1
    mean = a @ y
    cross = a @ kxs  # (T, m, m): Theta_*X T K_X*
    cov = kss + a @ kxx @ a.transpose(1, 2) - cross - cross.transpose(1, 2)
    if scalar:
        return Gaussian(mean[0], cov[0])
    return Gaussian(mean, cov, times)
