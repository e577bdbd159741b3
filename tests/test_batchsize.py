"""labkit.batchsize against exact references: per-sample loops, closed forms on linear regression."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import labkit
from labkit.batchsize import (
    b_noise,
    fit_tradeoff,
    noise_scale,
    per_example_grads,
    per_example_sq_norms,
)
from labkit.models import ParamSpec, mlp


def _loop_grads(model, loss, x, y):
    """Reference: one autograd backward per example."""
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        out = model(x[i : i + 1])
        labkit.losses.resolve(loss, "classification" if not y.is_floating_point() else "regression")(
            out, y[i : i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(rows)


@pytest.mark.parametrize("param", ["standard", "ntk"])
def test_per_example_grads_match_loop(param):
    g = torch.Generator().manual_seed(0)
    model = mlp(4, [6, 5], 3, activation="tanh", parameterization=param, seed=1).double()
    x = torch.randn(9, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (9,), generator=g)
    ref = _loop_grads(model, "auto", x, y)
    for chunk in (None, 4):
        got = per_example_grads(model, "auto", (x, y), chunk_size=chunk)
        assert got.shape == (9, ParamSpec.of(model).numel)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(per_example_sq_norms(model, "auto", (x, y)), ref.square().sum(1), rtol=0, atol=1e-10)


class _Odd(nn.Module):
    """A layer labkit.structure does not know: forces the per_example_grads fallback."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([0.7, -1.2], dtype=torch.float64))

    def forward(self, x):
        return torch.tanh(x * self.scale)


@pytest.mark.parametrize("kind", ["linear_seq", "positions", "fallback", "cnn"])
def test_sq_norms_match_materialised(kind):
    g = torch.Generator().manual_seed(1)
    if kind == "linear_seq":
        model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
        x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    elif kind == "positions":  # a sequence input: the weight gradient sums over positions
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Flatten(), nn.Linear(8, 2)).double()
        x = torch.randn(7, 2, 3, generator=g, dtype=torch.float64)
    elif kind == "fallback":
        model = nn.Sequential(nn.Linear(3, 2), _Odd()).double()
        x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    else:
        model = labkit.models.cnn(4, 1, 2, width=2, seed=0).double()
        x = torch.randn(7, 16, generator=g, dtype=torch.float64)
    y = torch.randn(7, 2, generator=g, dtype=torch.float64)
    ref = _loop_grads(model, "mse", x, y).square().sum(1)
    torch.testing.assert_close(per_example_sq_norms(model, "mse", (x, y)), ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- linear regression closed forms


def _linreg(n=48, d=4, seed=0):
    """y = X w* + noise, model f(x) = w^T x with w != w*: g_i = 2 r_i x_i, H = (2/n) X^T X."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_star = torch.randn(d, generator=g, dtype=torch.float64)
    y = X @ w_star + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
    r = X @ model.weight[0].detach() - y
    gi = 2 * r[:, None] * X  # (n, d)
    G = gi.mean(0)
    Sigma = gi.T @ gi / n - torch.outer(G, G)  # divisor-n convention
    H = 2 * X.T @ X / n
    exact = dict(tr=float(Sigma.trace()), g2=float(G @ G), b_noise=float((H * Sigma).sum() / (G @ H @ G)))
    return model, (X, y[:, None]), exact


def test_per_example_noise_scale_exact():
    model, data, exact = _linreg()
    ns = noise_scale(model, "mse", data)
    assert math.isclose(ns.trace_cov, exact["tr"], rel_tol=1e-10)  # float64 round-off only
    assert math.isclose(ns.grad_sq_norm, exact["g2"], rel_tol=1e-10)
    assert math.isclose(ns.b_simple, exact["tr"] / exact["g2"], rel_tol=1e-10)
    assert ns.b_simple_stderr == 0 and ns.method == "per_example" and ns.n == 48


def test_b_noise_closed_form():
    model, data, exact = _linreg()
    assert math.isclose(b_noise(model, "mse", data, chunk_size=20), exact["b_noise"], rel_tol=1e-10)
    # a subsample of examples is an estimate; with all examples it is exact again
    assert math.isclose(b_noise(model, "mse", data, examples=48, seed=3), exact["b_noise"], rel_tol=1e-10)
    # negative control: a subsample is not exact
    assert not math.isclose(b_noise(model, "mse", data, examples=12, seed=3), exact["b_noise"], rel_tol=1e-3)


@pytest.mark.parametrize("replacement", [False, True])
def test_two_batch_estimators_unbiased(replacement):
    model, data, exact = _linreg()
    ns = noise_scale(model, "mse", data, method="two_batch", batch_sizes=(3, 24), n_samples=4000,
                     replacement=replacement, seed=0)
    assert abs(ns.trace_cov - exact["tr"]) < 3 * ns.trace_cov_stderr
    assert abs(ns.grad_sq_norm - exact["g2"]) < 3 * ns.grad_sq_norm_stderr
    assert abs(ns.b_simple - exact["tr"] / exact["g2"]) < 3 * ns.b_simple_stderr + 1e-3 * ns.b_simple
    assert ns.trace_cov_stderr < 0.1 * exact["tr"]  # the test has power


def test_two_batch_stderr_is_honest():
    model, data, _ = _linreg()
    runs = [noise_scale(model, "mse", data, method="two_batch", batch_sizes=(4, 16), n_samples=20, seed=s)
            for s in range(60)]
    for part in ("trace_cov", "grad_sq_norm"):
        spread = np.std([getattr(r, part) for r in runs], ddof=1)
        claimed = np.mean([getattr(r, f"{part}_stderr") for r in runs])
        assert 0.7 < spread / claimed < 1.4, (part, spread, claimed)


def test_fit_tradeoff_recovers_parameters_from_noisy_points():
    b = 2.0 ** np.arange(0, 13, 0.5)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        s = 400 * (1 + 50 / b) * (1 + 0.01 * rng.standard_normal(b.size))
        e = b * s * (1 + 0.01 * rng.standard_normal(b.size))
        t = fit_tradeoff(s, e)
        assert abs(t.s_min / 400 - 1) < 0.02
        assert abs(t.e_min / 20000 - 1) < 0.02
        assert abs(t.b_crit / 50 - 1) < 0.02
        assert t.r2 > 0.99
    assert t.figure().data  # draws


def test_fit_tradeoff_drops_unreached_and_needs_three_points():
    s = np.array([300.0, 160.0, np.nan, 60.0])
    t = fit_tradeoff(s, s * np.array([1, 2, 4, 8]))
    assert len(t.steps) == 3
    with pytest.raises(ValueError, match="at least 3"):
        fit_tradeoff([1.0, np.nan, 2.0], [1.0, 2.0, np.inf])
    with pytest.raises(ValueError, match="same length"):
        fit_tradeoff([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- bad input


def test_two_batch_bad_inputs():
    model, data, _ = _linreg()
    with pytest.raises(ValueError, match="small < big"):
        noise_scale(model, "mse", data, method="two_batch", batch_sizes=(16, 16))
    with pytest.raises(ValueError, match="small < big"):
        noise_scale(model, "mse", data, method="two_batch", batch_sizes=(32, 8))
    with pytest.raises(ValueError, match="larger than the dataset"):
        noise_scale(model, "mse", data, method="two_batch", batch_sizes=(8, 100))
    with pytest.raises(ValueError, match="needs batch_sizes"):
        noise_scale(model, "mse", data, method="two_batch")
    with pytest.raises(ValueError, match="method='exact' is not supported"):
        noise_scale(model, "mse", data, method="exact")
