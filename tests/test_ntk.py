"""labkit.ntk against exact references in float64: explicit Jacobian loops, quadrature, ODE integration."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn

from labkit import linalg, ntk
from labkit.models import ParamSpec, cnn, mlp, param_dict
from labkit.train import fit

DT = torch.float64


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # every test's random inputs are reproducible


def _jacobian_loop(model, x):
    """J (n, O, P) by one autograd.grad call per example and output (the simplest reference)."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for xi in x:
        out = model(xi.unsqueeze(0)).reshape(-1)
        rows.append(torch.stack([
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[a], params, retain_graph=True)])
            for a in range(out.numel())
        ]))
    return torch.stack(rows)


class WithNorm(nn.Module):
    """A LayerNorm (not a linear layer) between two linear layers: structured falls back for its parameters."""

    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(3, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.norm(self.a(x))))


MODELS = {
    "mlp_ntk": (lambda: mlp(3, [7, 5], 2, activation="tanh", parameterization="ntk", bias_std=0.5, seed=0), (3,)),
    "cnn": (lambda: cnn(image_size=6, channels=2, num_classes=3, width=3, activation="tanh", seed=0), (2, 6, 6)),
    "layernorm": (WithNorm, (3,)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_all_methods_equal_explicit_jacobian_product(name):
    make, shape = MODELS[name]
    torch.manual_seed(1)
    model = make().double()
    for p in model.parameters():
        p.data.add_(0.1 * torch.randn_like(p))  # generic values (cnn zero-initialises biases)
    x1, x2 = torch.randn(4, *shape, dtype=DT), torch.randn(3, *shape, dtype=DT)
    j1, j2 = _jacobian_loop(model, x1), _jacobian_loop(model, x2)
    want_full = torch.einsum("iap,jbp->ijab", j1, j2)
    want_sym = torch.einsum("iap,jbp->ijab", j1, j1)
    for method in ntk.METHODS:
        full = ntk.empirical(model, x1, x2, method=method, output="full")
        torch.testing.assert_close(full, want_full, rtol=0, atol=1e-10)
        trace = ntk.empirical(model, x1, x2, method=method, output="trace")
        torch.testing.assert_close(trace, full.diagonal(dim1=2, dim2=3).sum(-1), rtol=0, atol=1e-10)
        sym = ntk.empirical(model, x1, method=method, output="trace")
        torch.testing.assert_close(sym, want_sym.diagonal(dim1=2, dim2=3).sum(-1), rtol=0, atol=1e-10)
        if method != "auto":  # row blocks of two
            chunked = ntk.empirical(model, x1, method=method, output="full", chunk_size=2)
            torch.testing.assert_close(chunked, want_sym, rtol=0, atol=1e-10)
    assert ntk.choose_method(model, x1) in ("jacobian", "ntk_vp", "structured")


def test_auto_picks_structured_for_wide_mlp():
    model = mlp(16, [128, 128], 10, seed=0)
    x = torch.randn(64, 16)
    assert ntk.choose_method(model, x) == "structured"
    assert ntk.choose_method(model, x, output="full") == "structured"


@pytest.mark.parametrize("output", ["full", "trace"])
def test_operator_matches_dense_kernel(output):
    model = mlp(3, [6], 2, activation="tanh", seed=0).double()
    x = torch.randn(5, 3, dtype=DT)
    op = ntk.NTKOperator(model, x, output=output)
    assert isinstance(op, linalg.LinearOperator)
    dense = linalg.to_dense(op)
    k = ntk.empirical(model, x, output=output)
    if output == "full":
        k = k.permute(0, 2, 1, 3).reshape(10, 10)
    torch.testing.assert_close(dense, k, rtol=1e-12, atol=1e-12)


def test_ntk_eigenvalues_equal_gauss_newton():
    """(2/n) J J^T and the Gauss-Newton matrix (2/n) J^T J of labkit's MSE share their nonzero eigenvalues."""
    from labkit.hessian import GaussNewtonOperator

    model = mlp(2, [4], 2, activation="tanh", seed=0).double()  # 22 parameters, 2 * 6 = 12 outputs
    x, y = torch.randn(6, 2, dtype=DT), torch.randn(6, 2, dtype=DT)
    k = ntk.empirical(model, x, output="full").permute(0, 2, 1, 3).reshape(12, 12)
    ntk_eigs = torch.linalg.eigvalsh(2.0 / 6 * k).flip(0)
    gn = linalg.to_dense(GaussNewtonOperator(model, "mse", (x, y)))
    gn_eigs = torch.linalg.eigvalsh(gn).flip(0)
    torch.testing.assert_close(gn_eigs[:12], ntk_eigs, rtol=1e-10, atol=1e-12)
    assert gn_eigs[12:].abs().max() < 1e-12
    # the same against the dense definition, independent of the curvature code
    j = _jacobian_loop(model, x).reshape(12, -1)
    torch.testing.assert_close(torch.linalg.eigvalsh(2.0 / 6 * j.T @ j).flip(0)[:12], ntk_eigs, rtol=1e-10,
                               atol=1e-12)


# ---------------------------------------------------------------- infinite width


def _gauss2(f, k11, k12, k22):
    """E[f(u, v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]) by adaptive quadrature (u = a s, v = b s + c t)."""
    a = math.sqrt(k11)
    b, c = k12 / a, math.sqrt(max(k22 - k12**2 / k11, 0.0))
    dens = lambda t, s: math.exp(-(s * s + t * t) / 2) / (2 * math.pi) * f(a * s, b * s + c * t)  # noqa: E731
    return integrate.dblquad(dens, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-12)[0]


def _relu_pieces(k11, k12, k22):
    # restrict to u > 0 (s > 0) and v > 0 (t > -b s / c): smooth integrands on the exact domain
    a = math.sqrt(k11)
    b, c = k12 / a, math.sqrt(k22 - k12**2 / k11)
    g = lambda t, s: math.exp(-(s * s + t * t) / 2) / (2 * math.pi)  # noqa: E731
    lo = lambda s: -b * s / c  # noqa: E731
    kw = dict(epsabs=1e-13, epsrel=1e-12)
    value = integrate.dblquad(lambda t, s: g(t, s) * (a * s) * (b * s + c * t), 0, 14, lo, 14, **kw)[0]
    deriv = integrate.dblquad(g, 0, 14, lo, 14, **kw)[0]
    return value, deriv


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_analytic_depth1_matches_numerical_integration(activation):
    x = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.8, -1.1]], dtype=DT)
    sw, sb = 1.3, 0.4
    nngp, theta = ntk.analytic(x, depth=1, activation=activation, weight_std=sw, bias_std=sb)
    k1 = (sw**2 * x @ x.T / 3 + sb**2).numpy()
    k11, k12, k22 = k1[0, 0], k1[0, 1], k1[1, 1]
    if activation == "relu":
        value, deriv = _relu_pieces(k11, k12, k22)
    else:
        value = _gauss2(lambda u, v: math.erf(u) * math.erf(v), k11, k12, k22)
        deriv = _gauss2(lambda u, v: 4 / math.pi * math.exp(-u * u - v * v), k11, k12, k22)
    want_nngp = sw**2 * value + sb**2
    want_ntk = want_nngp + sw**2 * deriv * k1[0, 1]
    assert nngp[0, 1].item() == pytest.approx(want_nngp, rel=1e-9, abs=1e-12)
    assert theta[0, 1].item() == pytest.approx(want_ntk, rel=1e-9, abs=1e-12)
    # symmetric, and the x2 form agrees with the x1-only form
    torch.testing.assert_close(theta, theta.T)
    torch.testing.assert_close(ntk.analytic(x[:1], x, depth=1, activation=activation, weight_std=sw,
                                            bias_std=sb)[1], theta[:1])


def test_analytic_depth0_is_linear_kernel():
    x = torch.randn(4, 5, dtype=DT)
    nngp, theta = ntk.analytic(x, depth=0, weight_std=2.0, bias_std=0.5)
    torch.testing.assert_close(theta, 4.0 * x @ x.T / 5 + 0.25)
    torch.testing.assert_close(nngp, theta)


# Settings where the finite-width fluctuations at width 2048 stay below 5% for every depth 1-4.
CONVERGENCE = {"relu": dict(weight_std=1.0, bias_std=1.0), "erf": dict(weight_std=1.0, bias_std=0.5)}


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_empirical_converges_to_analytic_like_inverse_sqrt_width(activation):
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=DT)
    widths = [64, 128, 256, 512, 1024, 2048]
    seeds = range(4)
    for depth in (1, 2, 3, 4):
        _, theta = ntk.analytic(x, depth=depth, activation=activation, **CONVERGENCE[activation])
        errors = []
        for w in widths:
            errs = []
            for s in seeds:
                net = mlp(4, [w] * depth, 1, activation, parameterization="ntk", seed=100 * depth + s,
                          **CONVERGENCE[activation]).double()
                k = ntk.empirical(net, x, method="structured")
                errs.append(float((k - theta).norm() / theta.norm()))
            errors.append(np.mean(errs))
        slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
        assert -0.65 <= slope <= -0.35, f"{activation} depth {depth}: slope {slope:.3f}, errors {errors}"
        assert errors[-1] < 0.05, f"{activation} depth {depth}: error {errors[-1]:.3f} at width 2048"


# ---------------------------------------------------------------- kernel regression dynamics


def _problem(seed=0, n=8, m=5, o=2):
    g = torch.Generator().manual_seed(seed)
    x, xt = torch.randn(n, 3, generator=g, dtype=DT), torch.randn(m, 3, generator=g, dtype=DT)
    y = torch.randn(n, o, generator=g, dtype=DT)
    _, k = ntk.analytic(torch.cat([x, xt]), depth=2, activation="erf")
    return k[:n, :n], k[n:, :n], y


def test_predict_converged_is_ridgeless_regression():
    ktt, kxt, y = _problem()
    got = ntk.predict(ktt, kxt, y)
    torch.testing.assert_close(got, kxt @ torch.linalg.solve(ktt, y), rtol=1e-9, atol=1e-10)
    # train predictions interpolate; a very long time equals the limit
    torch.testing.assert_close(ntk.predict(ktt, ktt, y), y, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ntk.predict(ktt, kxt, y, t=1e9), got, rtol=1e-8, atol=1e-8)
    # a singular (rank-deficient) kernel: pseudo-inverse, i.e. the minimum-norm interpolant
    feats = torch.randn(8, 3, dtype=DT)
    k_low = feats @ feats.T
    torch.testing.assert_close(ntk.predict(k_low, k_low[:3], y), k_low[:3] @ torch.linalg.pinv(k_low) @ y,
                               rtol=1e-7, atol=1e-8)


def test_predict_finite_time_matches_ode_integration():
    ktt, kxt, y = _problem(1)
    n, lr = len(y), 0.3
    f0, g0 = 0.1 * torch.ones_like(y), torch.zeros(kxt.shape[0], 2, dtype=DT)
    kt, kx, yy = ktt.numpy(), kxt.numpy(), y.numpy()

    def rhs(t, z):  # d/dt [f_train, f_test] = -(2 lr / n) [K, K_xX] (f_train - y)
        f = z[: n * 2].reshape(n, 2)
        r = f - yy
        return np.concatenate([-(2 * lr / n) * (kt @ r).ravel(), -(2 * lr / n) * (kx @ r).ravel()])

    times = [0.0, 0.5, 2.0, 7.0]
    sol = integrate.solve_ivp(rhs, (0, 7.0), np.concatenate([f0.numpy().ravel(), g0.numpy().ravel()]),
                              t_eval=times, rtol=1e-11, atol=1e-12, method="DOP853")
    got = ntk.predict(ktt, kxt, y, t=times, lr=lr, f_train=f0, f_test=g0)
    assert got.shape == (4, kxt.shape[0], 2)
    want = torch.from_numpy(sol.y[n * 2:].T.reshape(4, -1, 2))
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(ntk.predict(ktt, kxt, y, t=2.0, lr=lr, f_train=f0, f_test=g0), got[2])


def test_linearized_network_trained_by_fit_tracks_predict():
    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 10, dtype=DT).reshape(-1, 1)
    y = torch.sin(2 * x)
    xt = torch.linspace(-2.5, 2.5, 7, dtype=DT).reshape(-1, 1)
    net = mlp(1, [256], 1, parameterization="ntk", bias_std=0.5, seed=0).double()
    lin = ntk.linearize(net)
    torch.testing.assert_close(lin(xt), net(xt))
    k_all = ntk.empirical(net, torch.cat([x, xt]), output="full")
    lr, steps = 0.02, 300
    f0, g0 = net(x).detach(), net(xt).detach()
    fit(lin, (x, y), loss="mse", lr=lr, steps=steps, progress=False)
    want = ntk.predict(k_all[:10, :10], k_all[10:, :10], y, t=steps, lr=lr, f_train=f0, f_test=g0)
    got = lin(xt).detach()
    moved = (want - g0).norm()
    assert moved > 0.1  # training did something
    assert (got - want).norm() < 0.02 * moved  # gradient descent vs gradient flow differ by O(lr)


# ---------------------------------------------------------------- kernel movement


def test_kernel_distance_and_tracker():
    k = torch.randn(5, 5, dtype=DT)
    k = k @ k.T
    assert ntk.kernel_distance(k, 3.0 * k) == pytest.approx(0.0, abs=1e-14)
    assert ntk.kernel_distance(torch.eye(2, dtype=DT), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=DT)) == 1.0
    assert ntk.relative_change(2 * k, k) == pytest.approx(1.0)
    net = mlp(2, [32], 1, seed=0).double()
    x = torch.randn(16, 2, dtype=DT)
    tracker = ntk.KernelTracker(x[:6], every=5, k=3)
    fit(net, (x, x[:, :1] * x[:, 1:]), loss="mse", lr=0.1, steps=20, callbacks=[tracker], progress=False)
    assert tracker.steps == [0, 5, 10, 15, 20]
    assert tracker.change[0] == 0.0 and tracker.distance[0] == pytest.approx(0.0, abs=1e-14)
    assert tracker.change[-1] > 0
    assert tracker.change[-1] == pytest.approx(ntk.relative_change(ntk.empirical(net, x[:6]), tracker.initial))
    assert tracker.eigenvalues[0].shape == (3,)
    assert tracker.figure().data


# ---------------------------------------------------------------- bad input


def test_bad_inputs():
    net = mlp(3, [4], 2, seed=0)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="x2 has features"):
        ntk.empirical(net, x, torch.randn(2, 5))
    with pytest.raises(ValueError, match="method='fast'"):
        ntk.empirical(net, x, method="fast")
    with pytest.raises(ValueError, match="output='diag'"):
        ntk.empirical(net, x, output="diag")
    with pytest.raises(ValueError, match="does not accept"):
        ntk.empirical(net, torch.randn(4, 5))
    with pytest.raises(TypeError, match=r"x1 must be a torch\.Tensor"):
        ntk.empirical(net, [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="activation='swish'"):
        ntk.analytic(x, depth=1, activation="swish")
    with pytest.raises(ValueError, match="x2 has 5 features"):
        ntk.analytic(x, torch.randn(2, 5), depth=1)
    with pytest.raises(ValueError, match="depth must be"):
        ntk.analytic(x, depth=-1)
    ktt, kxt, y = _problem()
    with pytest.raises(ValueError, match="t must be finite and >= 0"):
        ntk.predict(ktt, kxt, y, t=-1.0)
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        ntk.predict(ktt, kxt, y, loss="cross_entropy")
    with pytest.raises(ValueError, match="k_test_train has shape"):
        ntk.predict(ktt, kxt[:, :3], y)
    with pytest.raises(ValueError, match="k1 and k2 must have the same shape"):
        ntk.kernel_distance(ktt, kxt)
    with pytest.raises(ValueError, match="every must be > 0"):
        ntk.KernelTracker(x, every=0)


def test_float32_and_param_spec_order():
    net = mlp(3, [8], 2, seed=0)
    x = torch.randn(4, 3)
    k = ntk.empirical(net, x)
    assert k.dtype == torch.float32 and k.shape == (4, 4)
    lin = ntk.linearize(net)
    assert lin.theta.numel() == ParamSpec.of(net).numel
    assert list(param_dict(lin)) == ["theta"]


def test_docstring_examples():
    import doctest
    import sys

    for name in ("labkit.ntk.empirical", "labkit.ntk.analytic"):
        result = doctest.testmod(sys.modules[name])
        assert result.attempted > 0 and result.failed == 0, name
