"""Exercises of notebook 02 (neural tangent kernel): checkers against labkit.ntk on fresh seeded cases."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from labkit import ntk
from labkit.exercises._core import Wrong, call_student, exercise, expect_close

__all__: list[str] = []


def _two_layer(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    d, m = 2 + seed % 3, 5 + seed
    W, b, v = (torch.randn(m, d, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64),
               torch.randn(m, generator=g, dtype=torch.float64))
    x1, x2 = torch.randn(4, d, generator=g, dtype=torch.float64), torch.randn(3, d, generator=g, dtype=torch.float64)
    return W, b, v, x1, x2


def two_layer_reference(W: torch.Tensor, b: torch.Tensor, v: torch.Tensor, x1: torch.Tensor,
                        x2: torch.Tensor) -> torch.Tensor:
    """labkit's empirical NTK of ``f(x) = v . relu(W x + b)`` (an nn.Sequential with these weights)."""
    net = nn.Sequential(nn.Linear(W.shape[1], W.shape[0]), nn.ReLU(), nn.Linear(W.shape[0], 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(W)
        net[0].bias.copy_(b)
        net[2].weight.copy_(v.reshape(1, -1))
    return ntk.empirical(net, x1, x2, method="jacobian")


@exercise(
    "ntk.two_layer_kernel",
    title="The empirical NTK of a two-layer ReLU network, by hand",
    hints=[
        "Theta(x, x') = sum over all parameters p of df(x)/dp * df(x')/dp. Group the sum by parameter: v, W, b.",
        "df/dv = relu(W x + b); df/db = v * relu'(W x + b); df/dW = outer(v * relu'(W x + b), x).",
        "The W block of the kernel is (s1 s2^T) * (x1 x2^T), with s = v * relu'(W x + b) for each input, "
        "the b block is s1 s2^T and the v block is h1 h2^T with h = relu(W x + b).",
    ],
)
def _two_layer_kernel(fn: object) -> None:
    for seed in range(3):
        W, b, v, x1, x2 = _two_layer(seed)
        got = call_student(fn, W.clone(), b.clone(), v.clone(), x1.clone(), x2.clone())
        want = two_layer_reference(W, b, v, x1, x2)
        h1, h2 = torch.relu(x1 @ W.T + b), torch.relu(x2 @ W.T + b)
        s1, s2 = v * (x1 @ W.T + b > 0), v * (x2 @ W.T + b > 0)
        parts = {"the readout weights v": h1 @ h2.T, "the hidden weights W": (s1 @ s2.T) * (x1 @ x2.T),
                 "the hidden biases b": s1 @ s2.T}
        try:
            np.asarray(got.detach() if isinstance(got, torch.Tensor) else got, dtype=float)
        except (TypeError, ValueError):
            raise Wrong(f"return the kernel as a (n1, n2) tensor, got {type(got).__name__}") from None
        expect_close(got, want, rtol=1e-8, atol=1e-10, what="your kernel",
                     mistakes=[(want - part, f"the contribution of {name} is missing") for name, part in parts.items()])


@exercise(
    "ntk.decay_steps",
    title="How fast is an eigendirection of the kernel learned?",
    hints=[
        "With labkit's MSE (mean over examples of the summed squared error, no 1/2) the outputs obey "
        "df/dt = -(2 lr / n) Theta (f - y) under gradient flow (t counts steps).",
        "Along an eigenvector of Theta with eigenvalue lam the residual decays like exp(-2 lr lam t / n). "
        "(Exact discrete gradient descent multiplies it by 1 - 2 lr lam / n per step; that answer is accepted too.)",
    ],
)
def _decay_steps(fn: object) -> None:
    # 2 lr lam / n is 0.06, 0.016 and 0.057: the gradient-flow and discrete answers differ by 0.8-3%,
    # far more than the tolerance, so each case tells which one the student gave.
    answers = []
    for lam, n, lr in [(3.0, 10, 0.1), (0.5, 64, 1.0), (20.0, 7, 0.02)]:
        got = call_student(fn, lam, n, lr)
        if isinstance(got, (int, float)) and any(math.isclose(got, c / (lr * lam), rel_tol=1e-6) for c in (0.5, 1.0)):
            raise Wrong("your answer does not depend on n: labkit's MSE averages over the n examples, which slows "
                        "the flow by a factor n")
        flow, discrete = n / (2 * lr * lam), decay_steps_reference(lam, n, lr, discrete=True)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise Wrong(f"return a number of steps, got {type(got).__name__}") from None
        if math.isclose(value, discrete, rel_tol=1e-6):
            answers.append("discrete")
            continue
        answers.append("flow")
        expect_close(got, flow, rtol=1e-6, what=f"decay_steps({lam}, {n}, {lr})")
    if len(set(answers)) > 1:
        raise Wrong("your answers mix the gradient-flow and the discrete-step formulas: pick one")


@exercise(
    "ntk.kernel_regression",
    title="Where gradient flow ends: ridgeless kernel regression",
    hints=[
        "At t -> infinity the training residual is zero along every direction with a nonzero eigenvalue.",
        "f(x*) = Theta(x*, X) Theta(X, X)^{-1} y: solve a linear system rather than forming the inverse.",
    ],
)
def _kernel_regression(fn: object) -> None:
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x, xt = torch.randn(6 + seed, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g,
                                                                                      dtype=torch.float64)
        y = torch.randn(len(x), 1, generator=g, dtype=torch.float64)
        _, k = ntk.analytic(torch.cat([x, xt]), depth=1 + seed % 2)
        n = len(x)
        got = call_student(fn, k[:n, :n].clone(), k[n:, :n].clone(), y.clone())
        want = ntk.predict(k[:n, :n], k[n:, :n], y)
        if isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got, y[: len(got)]):
            raise Wrong("your predictions repeat the training targets: predict the test points with k_test_train")
        expect_close(got, want, rtol=1e-6, atol=1e-9, what="your test predictions")


def decay_steps_reference(lam: float, n: int, lr: float, discrete: bool = False) -> float:
    """Steps for the residual along eigenvalue ``lam`` to shrink by a factor e.

    Gradient flow: ``n / (2 lr lam)``. Discrete gradient descent (``discrete=True``) multiplies the
    residual by ``1 - 2 lr lam / n`` per step: ``-1 / log|1 - 2 lr lam / n|`` (infinite when it never shrinks).
    """
    if lam <= 0:
        return math.inf
    if not discrete:
        return n / (2 * lr * lam)
    factor = abs(1 - 2 * lr * lam / n)
    return -1 / math.log(factor) if 0 < factor < 1 else (0.0 if factor == 0 else math.inf)


def _posterior_case(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x, xt = torch.randn(5 + seed, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g,
                                                                                  dtype=torch.float64)
    y = torch.randn(len(x), 1, generator=g, dtype=torch.float64)
    k, _ = ntk.analytic(torch.cat([x, xt]), depth=1 + seed % 2)
    return k, y, len(x)


@exercise(
    "ntk.gp_posterior",
    title="The Bayesian answer: the NNGP posterior mean and covariance",
    hints=[
        "Condition the joint Gaussian of (f(X) + noise, f(x*)) on the training targets.",
        "mean = K(x*, X) (K(X, X) + noise I)^{-1} y; covariance = K(x*, x*) - K(x*, X) (K(X, X) + noise I)^{-1} "
        "K(X, x*). Use torch.linalg.solve (or a Cholesky factor) rather than an inverse.",
    ],
)
def _gp_posterior(fn: object) -> None:
    for seed, noise in ((0, 0.1), (1, 0.01), (2, 0.5)):
        k, y, n = _posterior_case(seed)
        got = call_student(fn, k[:n, :n].clone(), k[n:, :n].clone(), k[n:, n:].clone(), y.clone(), noise)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Wrong(f"return a pair (mean, covariance), got {type(got).__name__}")
        want = ntk.nngp_posterior(k, y, noise=noise)
        no_noise = ntk.nngp_posterior(k, y, noise=1e-12)
        expect_close(got[0], want.mean, rtol=1e-6, atol=1e-9, what="your posterior mean",
                     mistakes=[(no_noise.mean, "your mean ignores the noise: add noise * I to K(X, X)")])
        expect_close(got[1], want.covariance, rtol=1e-6, atol=1e-9, what="your posterior covariance",
                     mistakes=[(k[n:, n:], "that is the prior covariance K(x*, x*): subtract what the data explain"),
                               (no_noise.covariance, "your covariance ignores the noise: add noise * I to K(X, X)"),
                               (k[n:, n:] - want.covariance, "that is what the data explain, K(x*, X) (K + noise)^-1 "
                                "K(X, x*): the posterior covariance is the prior minus it")])


@exercise(
    "ntk.coverage",
    title="Are the error bars right? The coverage of central intervals",
    hints=[
        "The central interval with mass `level` of N(mean, var) is mean +- z sqrt(var), with z the standard "
        "normal quantile of (1 + level) / 2.",
        "z = sqrt(2) * erfinv(level) (torch.erfinv or scipy.special.erfinv); count |y - mean| <= z * std.",
    ],
)
def _coverage(fn: object) -> None:
    g = torch.Generator().manual_seed(0)
    for level in (0.9, 0.5, 0.99):
        mean = torch.randn(400, generator=g, dtype=torch.float64)
        var = torch.rand(400, generator=g, dtype=torch.float64) + 0.1
        y = mean + 1.2 * var.sqrt() * torch.randn(400, generator=g, dtype=torch.float64)
        got = call_student(fn, mean.clone(), var.clone(), y.clone(), level)
        pred = ntk.Gaussian(mean[:, None], torch.diag(var))
        want = float(ntk.coverage(pred, y, level=level)[0])
        one_sigma = float(((y - mean).abs() <= var.sqrt()).double().mean())
        z = math.sqrt(2) * float(torch.erfinv(torch.tensor(level, dtype=torch.float64)))
        with_var = float(((y - mean).abs() <= z * var).double().mean())
        expect_close(got, want, rtol=0, atol=1e-12, what=f"your coverage at level {level}",
                     mistakes=[(one_sigma, "you counted one-standard-deviation intervals; the central interval of "
                                "mass `level` is z standard deviations wide"),
                               (with_var, "you multiplied z by the variance: intervals are z standard deviations")])
