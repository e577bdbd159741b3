"""Training in the kernel regime: kernel gradient flow in closed form, and linearised networks.

With labkit's MSE ``L = (1/n) sum_i sum_o (f_i,o - y_i,o)^2`` (no 1/2) and gradient descent
``theta <- theta - lr grad L`` read as the flow ``d theta/dt = -lr grad L`` (``t`` counts steps),
the training outputs of a linear model in its parameters (a linearised network, or an
infinitely wide one) obey ``df/dt = -(2 lr / n) Theta (f - y)``. With ``Theta = V diag(l) V^T``::

    f_t(X)  = f_0(X)  + V (1 - exp(-2 lr l t / n)) V^T (y - f_0(X))
    f_t(x*) = f_0(x*) + Theta(x*, X) V diag((1 - exp(-2 lr l t / n)) / l) V^T (y - f_0(X))

so one eigendecomposition gives the whole time series; ``t -> inf`` is ridgeless kernel
regression ``Theta(x*, X) Theta^+ (y - f_0)`` (Lee et al. 2019, "Wide Neural Networks of Any
Depth Evolve as Linear Models Under Gradient Descent", NeurIPS, arXiv:1902.06720).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import jvp

from labkit import _checks
from labkit.linalg.operators import check_symmetric
from labkit.models import ParamSpec, call, param_dict

__all__ = ["Linearized", "linearize", "predict"]


def _as_kernel(k: torch.Tensor, name: str, n_rows: int | None, n_cols: int) -> torch.Tensor:
    """Accept ``(a, b)`` or a full ``(a, b, O, O)`` kernel; return ``(a, b)`` or ``(a O, b O)``."""
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(k).__name__}")
    if k.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (a, b) or (a, b, out, out), got {tuple(k.shape)}")
    if k.shape[1] != n_cols or (n_rows is not None and k.shape[0] != n_rows):
        want = f"({n_rows if n_rows is not None else 'n_test'}, {n_cols}, ...)"
        raise ValueError(f"{name} has shape {tuple(k.shape)}; expected {want} to match the training kernel")
    if k.ndim == 4:
        a, b, o, _ = k.shape
        k = k.permute(0, 2, 1, 3).reshape(a * o, b * o)
    return k


def predict(
    k_train_train: torch.Tensor,
    k_test_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    t: float | Sequence[float] | torch.Tensor | None = None,
    lr: float = 1.0,
    loss: str = "mse",
    f_train: torch.Tensor | None = None,
    f_test: torch.Tensor | None = None,
    rcond: float = 1e-10,
) -> torch.Tensor:
    """Test predictions of kernel gradient flow on MSE at time(s) ``t`` (``None``: converged).

    Kernels are either per output unit, ``(n, n)`` and ``(m, n)``, applied to every output
    column (as :func:`labkit.ntk.analytic` gives), or full, ``(n, n, O, O)`` and ``(m, n, O, O)``
    (as ``empirical(..., output="full")`` gives; exact for a linearised network). ``y_train``:
    ``(n, O)``. ``f_train``/``f_test``: outputs at ``t = 0`` (default zero, the infinite-width mean).
    Returns ``(m, O)``, or ``(len(t), m, O)`` for a sequence of times. Eigenvalues below
    ``rcond * max`` count as zero (their directions never move).

    One training point with kernel 2 and target 1: the output relaxes as ``1 - exp(-2 lr K t / n)``.

    >>> k = torch.tensor([[2.0]], dtype=torch.float64); y = torch.tensor([[1.0]], dtype=torch.float64)
    >>> predict(k, k, y, t=[0.0, 0.25, 1e9])[:, 0, 0]
    tensor([0.0000, 0.6321, 1.0000], dtype=torch.float64)
    """
    _checks.choice("loss", loss, ["mse"])
    _checks.positive("lr", lr)
    if not isinstance(y_train, torch.Tensor) or y_train.ndim not in (1, 2):
        raise ValueError(f"y_train must be a tensor (n, out), got {getattr(y_train, 'shape', type(y_train))}")
    y = y_train.reshape(y_train.shape[0], -1)
    n, o = y.shape
    full = k_train_train.ndim == 4
    ktt = _as_kernel(k_train_train, "k_train_train", n, n)
    kxt = _as_kernel(k_test_train, "k_test_train", None, n)
    if full != (k_test_train.ndim == 4):
        raise ValueError("k_train_train and k_test_train must both be per-output (2-D) or both full (4-D)")
    dtype = ktt.dtype
    m = k_test_train.shape[0]
    y = y.to(dtype)
    f0 = torch.zeros_like(y) if f_train is None else f_train.reshape(n, -1).to(dtype)
    g0 = torch.zeros(m, o, dtype=dtype, device=y.device) if f_test is None else f_test.reshape(m, -1).to(dtype)
    resid = (y - f0).reshape(-1, 1) if full else y - f0  # (n O, 1) or (n, O)
    _checks.finite("k_train_train", ktt)
    lam, vec = torch.linalg.eigh(check_symmetric("k_train_train", ktt))
    keep = lam > rcond * lam.abs().max().clamp_min(torch.finfo(dtype).tiny)
    lam, vec = lam[keep], vec[:, keep]
    proj = vec.T @ resid  # residual in the eigenbasis
    if t is None:
        weights = (1.0 / lam)[None]
        times = None
    else:
        times = torch.as_tensor(t, dtype=dtype, device=lam.device).reshape(-1)
        if torch.any(times < 0) or not torch.all(torch.isfinite(times)):
            raise ValueError(f"t must be finite and >= 0, got {t!r}")
        # (1 - exp(-2 lr l t / n)) / l, the time-dependent filter of each eigendirection
        weights = -torch.expm1(-2.0 * lr * lam[None] * times[:, None] / n) / lam[None]
    out = torch.einsum("mk,sk,ko->smo", kxt @ vec, weights, proj)
    out = out.reshape(out.shape[0], m, o) + g0
    scalar = t is None or isinstance(t, (int, float)) or (isinstance(t, torch.Tensor) and t.ndim == 0)
    return out[0] if scalar else out


class Linearized(nn.Module):
    """``f_lin(x; theta) = f(x; theta_0) + J(x; theta_0) (theta - theta_0)``, one jvp per forward.

    Trainable parameters are ``theta`` (a flat vector, ``ParamSpec`` order), initialised at
    ``theta_0``; the base network is a frozen copy. Train it with ``labkit.train.fit``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        base = copy.deepcopy(model)
        self.spec = ParamSpec.of(base)
        theta0 = self.spec.flatten(param_dict(base)).clone()
        for p in base.parameters():
            p.requires_grad_(False)
        self.base = base
        self.register_buffer("theta0", theta0)
        self.theta = nn.Parameter(theta0.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p0 = self.spec.unflatten(self.theta0)
        dp = self.spec.unflatten(self.theta - self.theta0)
        f0, df = jvp(lambda p: call(self.base, p, x), (p0,), (dp,))  # f(theta_0), J (theta - theta_0)
        return f0 + df


def linearize(model: nn.Module) -> Linearized:
    """The first-order Taylor expansion of ``model`` around its current parameters (a new module)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return Linearized(model)
