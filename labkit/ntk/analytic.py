"""Closed-form infinite-width NNGP and NTK kernels of fully connected networks.

Convention (NTK parameterisation, Jacot et al. 2018; the same as neural-tangents'
``stax.serial(*[stax.Dense(w, W_std, b_std, parameterization="ntk"), act] * depth,
stax.Dense(out, W_std, b_std, parameterization="ntk"))``, and what
``labkit.models.mlp(d, [width] * depth, out, activation, parameterization="ntk",
weight_std=W_std, bias_std=b_std)`` converges to as ``width -> inf``). Every layer computes
``z = sigma_w / sqrt(fan_in) * h W^T + sigma_b * b`` with N(0, 1) parameters, ``h = phi(z)``.
The kernels of one output unit follow the recursion (``d`` = input dimension)::

    K_1(x, x')  = sigma_w^2 x.x'/d + sigma_b^2                 Theta_1 = K_1
    K_{l+1}     = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2        (u, v) ~ N(0, K_l on {x, x'})
    Theta_{l+1} = K_{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta_l

``depth`` is the number of hidden layers; the returned kernels are ``K_{depth+1}`` and
``Theta_{depth+1}`` (per output unit: ``empirical(..., output="trace") / out`` converges to it).
Gaussian expectations in closed form: ReLU by the arc-cosine kernels (Cho & Saul 2009,
"Kernel Methods for Deep Learning", NeurIPS), erf by Williams (1997, "Computing with
Infinite Networks", NeurIPS). Every other activation of :data:`labkit.models.ACTIVATIONS`
(or any elementwise torch function) by a 2-D Gaussian quadrature (:func:`gaussian_expectations`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from labkit import _checks
from labkit.ntk.quadrature import DERIVATIVES, ORDER, activation_pair, angle, gaussian_expectations

__all__ = ["ACTIVATIONS", "CLOSED_FORMS", "METHODS", "analytic"]

ACTIVATIONS = tuple(DERIVATIVES)  # every name of labkit.models.ACTIVATIONS
CLOSED_FORMS = ("relu", "erf")
METHODS = ("auto", "closed_form", "quadrature")


def _relu(k12: torch.Tensor, k11: torch.Tensor, k22: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] (arc-cosine kernels of degree 1 and 0).

    A zero variance (a zero input with ``bias_std=0``) means ``u = 0`` almost surely: then
    ``relu(u) = 0`` and ``relu'(0) = 0`` (autograd's convention), so both expectations are 0,
    the exact value, where the angle formula would give 0/0. The angle is
    ``atan2(sqrt(k11 k22 - k12^2), k12)`` (:func:`labkit.ntk.quadrature.angle`): exact on the diagonal.
    """
    k11, k22, k12 = torch.broadcast_tensors(k11, k22, k12)
    norm = torch.sqrt(k11 * k22)
    live = norm > 0
    theta = angle(k11, k22, k12)
    value = (torch.sqrt((k11 * k22 - k12**2).clamp_min(0)) + (math.pi - theta) * k12) / (2 * math.pi)
    return torch.where(live, value, torch.zeros_like(value)), torch.where(live, (math.pi - theta) / (2 * math.pi),
                                                                          torch.zeros_like(theta))


def _erf(k12: torch.Tensor, k11: torch.Tensor, k22: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[erf(u) erf(v)] = 2/pi asin(2 k12 / sqrt((1+2k11)(1+2k22))); E[erf' erf'] = 4/pi det(I + 2K)^(-1/2)."""
    a = (1 + 2 * k11) * (1 + 2 * k22)
    value = 2 / math.pi * torch.arcsin((2 * k12 / torch.sqrt(a)).clamp(-1.0, 1.0))
    return value, 4 / math.pi / torch.sqrt(a - 4 * k12**2)


_EXPECT = {"relu": _relu, "erf": _erf}


def _symmetric(expect: Callable, k: torch.Tensor, diag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``expect`` on the upper triangle of a symmetric kernel (with diagonal ``diag``), mirrored."""
    i, j = torch.triu_indices(len(k), len(k), device=k.device)
    v, d = expect(k[i, j], diag[i], diag[j])
    value, deriv = k.new_empty(k.shape), k.new_empty(k.shape)
    value[i, j], value[j, i], deriv[i, j], deriv[j, i] = v, v, d, d
    return value, deriv


def analytic(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    depth: int,
    activation: str | Callable[[torch.Tensor], torch.Tensor] = "relu",
    weight_std: float | None = None,
    bias_std: float = 0.1,
    parameterization: str = "ntk",
    method: str = "auto",
    order: int = ORDER,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Infinite-width ``(nngp, ntk)`` kernels ``(n1, n2)`` of an MLP with ``depth`` hidden layers.

    Defaults match :func:`labkit.models.mlp` (``weight_std`` sqrt(2) for ReLU, 1 otherwise;
    ``bias_std`` 0.1). ``activation``: a name of :data:`labkit.models.ACTIVATIONS` or an elementwise
    torch function (its derivative by autograd). ``method``: ``"closed_form"`` (ReLU, erf),
    ``"quadrature"`` (any activation; ``order`` radial nodes, see :func:`gaussian_expectations`)
    or ``"auto"`` (closed form where there is one). Computed in the inputs' dtype (use float64
    for comparisons). A network with no hidden layer is linear: both kernels are
    ``sigma_w^2 x.x'/d + sigma_b^2``::

        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> analytic(x, depth=0, weight_std=2.0, bias_std=1.0)[1]
        tensor([[3., 1.],
                [1., 3.]], dtype=torch.float64)
    """
    if not callable(activation):
        _checks.choice("activation", activation, ACTIVATIONS)
    _checks.choice("parameterization", parameterization, ["ntk"])
    _checks.choice("method", method, METHODS)
    _checks.in_range("order", order, 4, 1024)
    closed = activation in CLOSED_FORMS if isinstance(activation, str) else False
    if method == "closed_form" and not closed:
        raise ValueError(f"method='closed_form' exists for activation in {list(CLOSED_FORMS)}, got "
                         f"activation={activation!r}; use method='quadrature' (or 'auto')")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int >= 0 (number of hidden layers), got {depth!r}")
    if depth < 0:
        raise ValueError(f"depth must be an int >= 0 (number of hidden layers), got {depth!r}")
    sw = (math.sqrt(2.0) if activation == "relu" else 1.0) if weight_std is None else weight_std
    _checks.positive("weight_std", sw)
    _checks.positive("bias_std", bias_std, allow_zero=True)
    for name, x in (("x1", x1), ("x2", x2)):
        if x is not None and (not isinstance(x, torch.Tensor) or x.ndim != 2):
            raise ValueError(f"{name} must be a 2-D tensor (n, features), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    for name, x in (("x1", x1), ("x2", x2)):
        if x is not None:
            _checks.finite(name, x)
    if x2 is not None and x2.shape[1] != x1.shape[1]:
        raise ValueError(f"x2 has {x2.shape[1]} features but x1 has {x1.shape[1]}; they must match")
    if not x1.is_floating_point():
        x1 = x1.double()
    same = x2 is None  # symmetric: one triangle is computed, the diagonal equals k11 exactly
    x2 = x1 if x2 is None else x2.to(x1.dtype)
    d = x1.shape[1]
    sw2, sb2 = float(sw) ** 2, float(bias_std) ** 2
    k = sw2 * (x1 @ x2.T) / d + sb2  # (n1, n2)
    k11 = sw2 * x1.square().sum(1) / d + sb2  # diagonals, (n1,) and (n2,)
    k22 = sw2 * x2.square().sum(1) / d + sb2
    theta = k
    if closed and method != "quadrature":
        expect = _EXPECT[activation]
    else:
        phi, dphi = activation_pair(activation)

        def expect(k12: torch.Tensor, k11: torch.Tensor, k22: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return gaussian_expectations(phi, dphi, k11, k22, k12, order=order)

    if same:
        k.diagonal().copy_(k11)
    for _ in range(depth):
        if same:
            value, deriv = _symmetric(expect, k, k11)
            d11 = d22 = value.diagonal().clone()
        else:
            value, deriv = expect(k, k11[:, None], k22[None, :])
            d11 = expect(k11, k11, k11)[0]
            d22 = expect(k22, k22, k22)[0]
        k = sw2 * value + sb2
        theta = k + sw2 * deriv * theta
        k11, k22 = sw2 * d11 + sb2, sw2 * d22 + sb2
    return k, theta
