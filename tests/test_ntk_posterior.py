"""Predictive distributions of wide networks, the quadrature kernels and trained ensembles, against dense references.

Every reference is written out here: matrix inverses and exponentials, an RK4 integration of the linearised
ensemble's mean and covariance, the closed-form arc-cosine / erf expectations, Monte Carlo over wide random
networks, and separate ``fit`` runs for the ensemble trainer.
"""

import math

import pytest
import torch

from labkit import ntk
from labkit.models import ACTIVATIONS, mlp
from labkit.ntk import analytic, coverage, gd_ensemble, nngp_posterior, train_ensemble
from labkit.ntk.calibration import sample_prior
from labkit.ntk.quadrature import DERIVATIVES, activation_pair, gaussian_expectations
from labkit.train import fit

DT = torch.float64


def _task(n=7, m=5, d=2, out=2, depth=2, seed=0, activation="relu"):
    g = torch.Generator().manual_seed(seed)
    x, xt = torch.randn(n, d, generator=g, dtype=DT), torch.randn(m, d, generator=g, dtype=DT)
    y = torch.randn(n, out, generator=g, dtype=DT)
    k, th = analytic(torch.cat([x, xt]), depth=depth, activation=activation, bias_std=0.5)
    return k, th, y, n


# ---------------------------------------------------------------- NNGP posterior


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_nngp_posterior_matches_the_dense_formula(noise):
    k, _, y, n = _task()
    inv = torch.linalg.inv(k[:n, :n] + noise * torch.eye(n, dtype=DT))
    post = nngp_posterior(k, y, noise=noise)
    torch.testing.assert_close(post.mean, k[n:, :n] @ inv @ y, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(post.covariance, k[n:, n:] - k[n:, :n] @ inv @ k[:n, n:], rtol=1e-9, atol=1e-10)


def test_nngp_posterior_is_float64_and_takes_1d_targets():
    k, _, y, n = _task()
    post = nngp_posterior(k.float(), y[:, 0].float(), noise=0.01)
    assert post.mean.dtype == DT and post.mean.shape == (k.shape[0] - n, 1)


def test_interval_and_variance():
    g = ntk.Gaussian(torch.zeros(2, 1, dtype=DT), torch.diag(torch.tensor([4.0, 1.0], dtype=DT)))
    lo, hi = g.interval(0.95)
    torch.testing.assert_close(hi[:, 0], 1.959963984540054 * torch.tensor([2.0, 1.0], dtype=DT))
    torch.testing.assert_close(lo, -hi)
    with pytest.raises(ValueError, match="level"):
        g.interval(1.5)


# ---------------------------------------------------------------- gradient-descent ensemble


def _dense_gd(k, th, y, n, t, lr):
    """Mean and covariance with T = Theta^-1 (I - expm(-c Theta t)) from torch.linalg.matrix_exp and inv."""
    c = 2 * lr / n
    txx = th[:n, :n]
    if math.isinf(t):
        tt = torch.linalg.inv(txx)
    else:
        tt = torch.linalg.inv(txx) @ (torch.eye(n, dtype=DT) - torch.linalg.matrix_exp(-c * t * txx))
    a = th[n:, :n] @ tt
    cov = k[n:, n:] + a @ k[:n, :n] @ a.T - a @ k[:n, n:] - k[n:, :n] @ a.T
    return a @ y, cov


@pytest.mark.parametrize("t", [0.0, 3.0, 40.0, math.inf])
def test_gd_ensemble_matches_the_dense_formula(t):
    k, th, y, n = _task()
    got = gd_ensemble(k, th, y, t=t, lr=0.3)
    mean, cov = _dense_gd(k, th, y, n, t, 0.3)
    torch.testing.assert_close(got.mean, mean, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(got.covariance, cov, rtol=1e-8, atol=1e-9)


def test_gd_ensemble_at_several_times_at_once_and_at_zero_is_the_prior():
    k, th, y, n = _task()
    many = gd_ensemble(k, th, y, t=[0, 5, 50, math.inf], lr=0.5)
    assert many.mean.shape == (4, k.shape[0] - n, 2) and many.covariance.shape == (4, k.shape[0] - n, k.shape[0] - n)
    torch.testing.assert_close(many.covariance[0], k[n:, n:])
    assert float(many.mean[0].abs().max()) == 0.0
    for i, t in enumerate([0, 5, 50, math.inf]):
        one = gd_ensemble(k, th, y, t=t, lr=0.5)
        torch.testing.assert_close(many.mean[i], one.mean, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(many.covariance[i], one.covariance, rtol=1e-9, atol=1e-10)
    # t = inf through the Cholesky solve equals a very late time through the eigendecomposition
    late = gd_ensemble(k, th, y, t=1e9, lr=0.5)
    torch.testing.assert_close(late.mean, many.mean[-1], rtol=1e-7, atol=1e-8)


def _rk4_linearised(k, th, y, n, t, lr, steps=4000):
    """Integrate the ensemble of linear models: d mu/dt = -c Theta[:, X] (mu_X - y), dC/dt = -c (A C + C A^T)."""
    c = 2 * lr / n
    big = k.shape[0]
    a = torch.zeros(big, big, dtype=DT)
    a[:, :n] = th[:, :n]  # the flow moves every output along Theta(., X) by the training residual
    ymat = torch.zeros(big, y.shape[1], dtype=DT)
    ymat[:n] = y

    def rhs(mu, cov):
        pm = torch.zeros_like(mu)
        pm[:n] = mu[:n] - y
        return -c * th[:, :n] @ pm[:n], -c * (a @ cov + cov @ a.T)

    mu, cov = torch.zeros(big, y.shape[1], dtype=DT), k.clone()
    h = t / steps
    for _ in range(steps):
        k1 = rhs(mu, cov)
        k2 = rhs(mu + h / 2 * k1[0], cov + h / 2 * k1[1])
        k3 = rhs(mu + h / 2 * k2[0], cov + h / 2 * k2[1])
        k4 = rhs(mu + h * k3[0], cov + h * k3[1])
        mu = mu + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        cov = cov + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return mu[n:], cov[n:, n:]


def test_gd_ensemble_matches_integrating_the_linearised_dynamics():
    k, th, y, n = _task(n=5, m=3, depth=1)
    t, lr = 20.0, 0.2
    mean, cov = _rk4_linearised(k, th, y, n, t, lr)
    got = gd_ensemble(k, th, y, t=t, lr=lr)
    torch.testing.assert_close(got.mean, mean, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(got.covariance, cov, rtol=1e-7, atol=1e-8)


def test_discrete_gd_ensemble_matches_iterating_the_linear_map():
    k, th, y, n = _task(n=5, m=3, depth=1)
    lr, steps = 0.4, 12
    c = 2 * lr / n
    big = k.shape[0]
    step = torch.eye(big, dtype=DT)
    step[:, :n] -= c * th[:, :n]  # f <- f - c Theta(., X) (f_X - y)
    mu, cov = torch.zeros(big, 2, dtype=DT), k.clone()
    for _ in range(steps):
        mu = step @ mu
        mu += c * th[:, :n] @ y
        cov = step @ cov @ step.T
    got = gd_ensemble(k, th, y, t=steps, lr=lr, discrete=True)
    torch.testing.assert_close(got.mean, mu[n:], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got.covariance, cov[n:, n:], rtol=1e-9, atol=1e-10)


def test_gd_ensemble_with_the_nngp_as_its_ntk_is_the_bayesian_posterior():
    """Training only the readout: the NTK is the NNGP kernel and t = inf gives exactly the GP posterior."""
    k, _, y, _ = _task()
    gd, bayes = gd_ensemble(k, k, y), nngp_posterior(k, y)
    torch.testing.assert_close(gd.mean, bayes.mean, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(gd.covariance, bayes.covariance, rtol=1e-7, atol=1e-8)


def test_gd_ensemble_singular_ntk_finite_time_is_defined_and_inf_names_the_diag_reg_that_works():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g, dtype=DT)
    x = torch.cat([x, x[:1]])  # a repeated training input
    xt = torch.randn(3, 2, generator=g, dtype=DT)
    k, th = analytic(torch.cat([x, xt]), depth=1)
    y = torch.randn(6, 1, generator=g, dtype=DT)
    assert torch.isfinite(gd_ensemble(k, th, y, t=10.0).covariance).all()
    with pytest.raises(ValueError, match=r"smallest diag_reg that works here is about ([0-9.e+-]+)") as err:
        gd_ensemble(k, th, y)
    import re

    works = float(re.search(r"pass diag_reg=([0-9.e+-]+)", str(err.value)).group(1))
    assert torch.isfinite(gd_ensemble(k, th, y, diag_reg=works).mean).all()
    with pytest.raises(ValueError, match="smallest noise"):
        nngp_posterior(k, y)


def test_zero_input_without_bias_is_named():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-0.3, 1.0], [0.2, 0.2]], dtype=DT)
    k, _ = analytic(x, depth=1, bias_std=0.0)
    with pytest.raises(ValueError, match="training point 0 has zero kernel variance"):
        nngp_posterior(k, torch.ones(3, dtype=DT))


def test_bad_arguments_give_clear_errors():
    k, th, y, n = _task()
    with pytest.raises(ValueError, match="square"):
        nngp_posterior(k[:, :-1], y)
    with pytest.raises(ValueError, match="at least one test point"):
        nngp_posterior(k[:n, :n], y)
    with pytest.raises(ValueError, match="same shape"):
        gd_ensemble(k, th[:-1, :-1], y)
    with pytest.raises(ValueError, match="y_train must have shape"):
        gd_ensemble(k, th, y[None])
    with pytest.raises(TypeError, match=r"y_train must be a torch\.Tensor"):
        gd_ensemble(k, th, y.tolist())
    for bad in (-1.0, [1.0, -2.0], float("nan")):
        with pytest.raises(ValueError, match="t must be >= 0"):
            gd_ensemble(k, th, y, t=bad)
    with pytest.raises(ValueError, match="whole steps"):
        gd_ensemble(k, th, y, t=2.5, discrete=True)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        nngp_posterior(k, y, noise=-1.0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        gd_ensemble(k, th, y, lr=0.0)
    bad = k.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="nngp"):
        gd_ensemble(bad, th, y)


def test_memory_estimate_and_refusal():
    k, th, y, n = _task()
    m = k.shape[0] - n
    need = ntk.predictive_memory(n, m, times=3, outputs=2)
    assert need == 8 * (2 * (n + m) ** 2 + 4 * n * n + 2 * m * n + 3 * (3 * m * n + 3 * m * m + 2 * m))
    with pytest.raises(ValueError, match=r"more than max_memory.*ask for at most 1 times"):
        gd_ensemble(k, th, y, t=[1, 2, 3], max_memory=ntk.predictive_memory(n, m, times=2, outputs=2) - 1)
    with pytest.raises(ValueError, match="use fewer test points"):
        nngp_posterior(k, y, max_memory=100)


# ---------------------------------------------------------------- quadrature kernels


CASES = [(1.0, 1.0, 0.3), (2.5, 0.7, -1.0), (3.0, 3.0, 3.0), (1.2, 1.2, -1.2), (0.01, 3.0, 0.1), (2.0, 0.0, 0.0),
         (4.0, 3.0, -2.0), (1.0, 2.0, 1.4)]


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_quadrature_expectations_match_the_closed_forms(activation):
    from labkit.ntk.analytic import _EXPECT

    k11, k22, k12 = (torch.tensor(c, dtype=DT) for c in zip(*CASES))
    phi, dphi = activation_pair(activation)
    value, deriv = gaussian_expectations(phi, dphi, k11, k22, k12)
    want_v, want_d = _EXPECT[activation](k12, k11, k22)
    torch.testing.assert_close(value, want_v, rtol=0, atol=1e-10)
    if activation == "erf":
        torch.testing.assert_close(deriv, want_d, rtol=0, atol=1e-10)
    else:  # relu'(0) = 0 on the zero-variance case, where the closed form's convention agrees
        torch.testing.assert_close(deriv, want_d, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth", [1, 3])
def test_quadrature_kernels_match_the_closed_form_kernels(activation, depth):
    g = torch.Generator().manual_seed(depth)
    x, x2 = torch.randn(9, 3, generator=g, dtype=DT), torch.randn(4, 3, generator=g, dtype=DT)
    x[0] = 0.0
    for args in ((x,), (x, x2)):
        closed = analytic(*args, depth=depth, activation=activation, bias_std=0.5)
        quad = analytic(*args, depth=depth, activation=activation, bias_std=0.5, method="quadrature")
        for a, b in zip(closed, quad):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(DERIVATIVES))
def test_named_derivatives_match_autograd(name):
    z = torch.linspace(-4, 4, 101, dtype=DT).requires_grad_()
    (grad,) = torch.autograd.grad(ACTIVATIONS[name](z).sum(), z)
    torch.testing.assert_close(DERIVATIVES[name](z.detach()), grad, rtol=1e-12, atol=1e-12)


def test_a_callable_activation_gives_the_named_kernel():
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    named = analytic(x, depth=2, activation="tanh")
    custom = analytic(x, depth=2, activation=lambda z: torch.tanh(z))
    for a, b in zip(named, custom):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="method='closed_form' exists"):
        analytic(x, depth=1, activation="tanh", method="closed_form")


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_quadrature_kernels_match_monte_carlo_over_wide_networks(activation):
    """NNGP: output covariance over seeds and many readout units; NTK: mean empirical NTK per output."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=DT)
    k, th = analytic(x, depth=2, activation=activation, bias_std=0.5)
    seeds, width, outs = 12, 1024, 64
    nngp_draws, ntk_draws = [], []
    for s in range(seeds):
        net = mlp(3, [width] * 2, outs, activation, parameterization="ntk", bias_std=0.5, seed=s).double()
        with torch.no_grad():
            f = net(x)  # (n, outs): outs draws sharing the hidden layers
        nngp_draws.append(f @ f.T / outs)
        small = mlp(3, [width] * 2, 1, activation, parameterization="ntk", bias_std=0.5, seed=100 + s).double()
        ntk_draws.append(ntk.empirical(small, x))
    for est, want in ((torch.stack(nngp_draws), k), (torch.stack(ntk_draws), th)):
        mean, se = est.mean(0), est.std(0) / math.sqrt(seeds)
        z = (mean - want).abs() / se
        assert float(z.max()) < 4.5, (activation, z)  # 25 entries: 4.5 standard errors, plus O(1/width) bias
        # a control: the erf kernel is not the tanh/gelu network's, and the same check tells
    k_other = analytic(x, depth=2, activation="erf", bias_std=0.5)[0]
    est = torch.stack(nngp_draws)
    assert float(((est.mean(0) - k_other).abs() / (est.std(0) / math.sqrt(seeds))).max()) > 4.5


# ---------------------------------------------------------------- calibration helpers


def test_coverage_counts_targets_inside_the_intervals():
    g = ntk.Gaussian(torch.zeros(4, 2, dtype=DT), torch.eye(4, dtype=DT))
    y = torch.tensor([[0.0, 2.0], [1.0, 2.0], [-1.7, 0.0], [1.6, 0.0]], dtype=DT)
    torch.testing.assert_close(coverage(g, y, level=0.9), torch.tensor([0.75, 0.5], dtype=DT))
    # with observation noise of variance 3 the intervals double: every target is inside
    torch.testing.assert_close(coverage(g, y, level=0.9, noise=3.0), torch.tensor([1.0, 1.0], dtype=DT))
    with pytest.raises(ValueError, match="y must have shape"):
        coverage(g, y[:3])


def test_sample_prior_has_the_kernel_as_covariance():
    k, _, _, _ = _task(n=4, m=2)
    draws = 20000
    f = sample_prior(k, draws, seed=0)
    emp = f @ f.T / draws
    se = torch.sqrt((k.diagonal()[:, None] * k.diagonal()[None] + k**2) / draws)
    assert float(((emp - k).abs() / se).max()) < 4.5
    with pytest.raises(ValueError, match="not positive semi-definite"):
        sample_prior(-torch.eye(3, dtype=DT), seed=0)


# ---------------------------------------------------------------- trained ensembles


def test_train_ensemble_records_what_separate_fits_give():
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(6, 2, generator=g, dtype=DT), torch.randn(4, 2, generator=g, dtype=DT)
    y = torch.randn(6, 1, generator=g, dtype=DT)
    ens = train_ensemble(x, y, xt, width=16, members=3, steps=[0, 3, 7], lr=0.05, seed=5, progress=False)
    assert ens.outputs.shape == (3, 3, 4, 1) and ens.steps == [0, 3, 7] and ens.diverged == 0
    for i in range(3):
        for j, s in enumerate(ens.steps):
            net = mlp(2, [16], 1, "relu", parameterization="ntk", seed=5 + i).double()
            with torch.no_grad():
                torch.testing.assert_close(ens.initial_test[i], net(xt))
            if s:
                fit(net, (x, y), loss="mse", lr=0.05, steps=s, progress=False)
            with torch.no_grad():
                torch.testing.assert_close(ens.outputs[j, i], net(xt), rtol=1e-10, atol=1e-12)
    f = ens.outputs[-1, :, :, 0]
    torch.testing.assert_close(ens.covariance[-1], torch.cov(f.T), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ens.mean[-1, :, 0], f.mean(0))


def test_ensemble_linearized_is_each_members_linear_prediction():
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(5, 1, generator=g, dtype=DT), torch.randn(3, 1, generator=g, dtype=DT)
    y = torch.randn(5, 1, generator=g, dtype=DT)
    ens = train_ensemble(x, y, xt, width=8, members=2, steps=[4], lr=0.1, progress=False)
    _, th = analytic(torch.cat([x, xt]), depth=1)
    got = ens.linearized(th, y, lr=0.1)
    c = 2 * 0.1 / 5
    step = torch.eye(5, dtype=DT) - c * th[:5, :5]
    tt = torch.linalg.inv(th[:5, :5]) @ (torch.eye(5, dtype=DT) - torch.linalg.matrix_power(step, 4))
    for i in range(2):
        want = ens.initial_test[i] + th[5:, :5] @ tt @ (y - ens.initial_train[i])
        torch.testing.assert_close(got[0, i], want, rtol=1e-9, atol=1e-10)


def test_train_ensemble_bad_inputs():
    x = torch.zeros(3, 1, dtype=DT)
    with pytest.raises(ValueError, match="members must be >= 2"):
        train_ensemble(x, x, x, width=4, members=1)
    with pytest.raises(ValueError, match="same d"):
        train_ensemble(x, x, torch.zeros(3, 2, dtype=DT), width=4)
    with pytest.raises(ValueError, match="parameterization"):
        train_ensemble(x, x, x, width=4, parameterization="standard")


def test_intervals_figure():
    from labkit import viz

    fig = viz.intervals([2, 0, 1], [0, 1, 2], [-1, 0, 1], [1, 2, 3], points=([0.5], [1.0]), truth=([1.5], [2.0]))
    assert len(fig.data) == 4 and list(fig.data[1].x) == [0, 1, 2]
    with pytest.raises(ValueError, match="one value per x"):
        viz.intervals([0, 1], [0], [0], [0])
