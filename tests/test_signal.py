"""labkit.signal: the mean-field maps against closed forms, and the measurement against the maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkit import signal
from labkit.ntk.analytic import _erf, _relu

Q = np.array([0.05, 0.3, 1.0, 4.0])
C = torch.tensor([-0.95, -0.3, 0.0, 0.5, 0.9, 0.999], dtype=torch.float64)


def test_qmap_relu_and_linear_are_exact():
    # ReLU: E[relu(u)^2] = q/2 exactly (symmetric nodes); identity: E[u^2] = q
    assert np.allclose(signal.qmap(Q, 2.0, 0.1, "relu").numpy(), Q + 0.1, rtol=1e-12)
    assert np.allclose(signal.qmap(Q, 1.5, 0.2, "identity").numpy(), 1.5 * Q + 0.2, rtol=1e-12)


@pytest.mark.parametrize("q", [0.5, 2.0])
def test_covmap_matches_arccos_and_erf_closed_forms(q):
    t = torch.tensor(q, dtype=torch.float64)
    erf = signal.covmap(q, q, C * q, 1.0, 0.0, "erf")
    assert torch.allclose(erf, _erf(C * q, t, t)[0], atol=1e-7)  # smooth: spectral accuracy
    relu = signal.covmap(q, q, C * q, 1.0, 0.0, "relu")
    assert torch.allclose(relu, _relu(C * q, t, t)[0], rtol=0, atol=1e-3 * q)  # kinks on rays: 2nd order in angle
    lin = signal.covmap(q, q, C * q, 1.3, 0.1, "identity")
    assert torch.allclose(lin, 1.3 * C * q + 0.1, atol=1e-10)


def test_chi_closed_forms():
    # ReLU: chi_1 = sigma_w^2 / 2 exactly; chi_c = sigma_w^2 (pi - arccos c) / (2 pi)
    assert signal.chi(2.0, 0.3, "relu") == pytest.approx(1.0, abs=1e-12)
    assert signal.chi(3.0, 0.0, "relu", q=1.0) == pytest.approx(1.5, abs=1e-12)
    c = C.numpy()[:-1]
    want = 2 * (math.pi - np.arccos(c)) / (2 * math.pi)
    assert np.allclose(signal.chi(2.0, 0.0, "relu", c=c, q=1.0), want, atol=1e-2)
    # erf: E[erf'(u1) erf'(u2)] = 4/pi / sqrt((1 + 2q)^2 - 4 q^2 c^2)
    q = 0.7
    want = 4 / math.pi / np.sqrt((1 + 2 * q) ** 2 - 4 * q**2 * c**2)
    assert np.allclose(signal.chi(1.0, 0.0, "erf", c=c, q=q), want, rtol=1e-6)
    assert signal.chi(1.0, 0.0, "erf", q=q) == pytest.approx(4 / math.pi / math.sqrt(1 + 4 * q), rel=1e-8)


def test_fixed_points_and_criticality():
    # tanh, sigma_b = 0: q* = 0 below sigma_w^2 = 1 and c* = 0 above it (odd activation, no bias)
    q, c = signal.fixed_point([0.5, 3.0], 0.0, "tanh")
    assert q[0] < 1e-10 and q[1] > 0.5
    assert abs(c[1]) < 1e-6
    # at the fixed point the map returns it
    q, c = signal.fixed_point(2.5, 0.1, "tanh")
    assert float(signal.qmap(q, 2.5, 0.1, "tanh")) == pytest.approx(float(q), rel=1e-9)
    # ReLU lengths explode above sigma_w^2 = 2 (with sigma_b > 0: a finite fixed point below)
    q, _ = signal.fixed_point([1.5, 2.5], 0.1, "relu", correlation=False)
    assert q[0] == pytest.approx(0.1 / (1 - 0.75), rel=1e-6) and np.isinf(q[1])
    # order-to-chaos line: ReLU at 2 for any bias; tanh at 1 for sigma_b = 0 and above 1 for sigma_b > 0
    line = signal.critical_sigma_w2([0.0, 0.05], "tanh")
    assert line[0] == pytest.approx(1.0, rel=2e-2) and line[1] > 1.3
    assert signal.chi(line[1], 0.05, "tanh") == pytest.approx(1.0, abs=1e-6)
    assert signal.critical_sigma_w2(0.3, "relu") == pytest.approx(2.0, rel=1e-6)


def test_depth_scales_diverge_at_criticality():
    crit = float(signal.critical_sigma_w2(0.05, "tanh"))
    _, xi_c = signal.depth_scales([0.5 * crit, 0.97 * crit, 1.03 * crit, 2 * crit], 0.05, "tanh")
    assert xi_c[1] > 5 * xi_c[0] and xi_c[2] > 5 * xi_c[3]
    # ordered phase with sigma_b = 0: chi_1 = sigma_w^2 (q* = 0, tanh'(0) = 1), so xi_c = -1/log sigma_w^2
    _, xi = signal.depth_scales(0.5, 0.0, "tanh")
    assert float(xi) == pytest.approx(-1 / math.log(0.5), rel=1e-6)


def test_iterate_linear_and_residual_closed_forms():
    th = signal.iterate(6, q0=1.0, c0=0.4, sigma_w2=1.5, sigma_b2=0.0, activation="identity")
    assert np.allclose(th.q, 1.5 ** np.arange(1, 7)) and np.allclose(th.c, 0.4)
    # residual ReLU with branch 1/sqrt(L), sigma_w^2 = 2: q_{l+1} = q_l (1 + 1/L)
    L = 32
    th = signal.iterate(L, q0=1.0, sigma_w2=2.0, activation="relu", branch="1/sqrt(depth)")
    assert np.allclose(th.q, (1 + 1 / L) ** np.arange(L))


def test_propagate_matches_theory_and_sampling_paths_agree():
    kw = dict(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, seeds=32)
    fast = signal.propagate(12, 128, backward=False, **kw)       # Gram-matrix sampling
    full = signal.propagate(12, 128, backward=True, seed=1, **kw)  # explicit weights
    th = fast.theory()
    for run in (fast, full):
        assert np.allclose(run.q.mean((0, 2)), th.q, rtol=0.05)
        assert np.allclose(run.c.mean(0), th.c, atol=0.03)
    assert full.grad_sq.shape == (32, 12) and full.ntk.shape == (32,)


def test_ntk_is_the_squared_parameter_gradient():
    # depth 2, one input: compare propagate's NTK with autograd on an explicit NTK-parameterised net
    x = torch.randn(1, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    run = signal.propagate(2, 7, activation="tanh", sigma_w2=1.7, sigma_b2=0.2, inputs=x, seeds=1, seed=4)
    g = torch.Generator().manual_seed(4)
    torch.randn(2, 5, generator=g)  # propagate's default inputs consume no draws when inputs are given
    g = torch.Generator().manual_seed(4)
    sw, sb = math.sqrt(1.7), math.sqrt(0.2)
    t1 = torch.randn(1, 7, 5, generator=g, dtype=torch.float64)
    b1 = torch.randn(1, 1, 7, generator=g, dtype=torch.float64)
    t2 = torch.randn(1, 7, 7, generator=g, dtype=torch.float64)
    b2 = torch.randn(1, 1, 7, generator=g, dtype=torch.float64)
    v = torch.randn(1, 7, generator=g, dtype=torch.float64)
    theta = [t.clone().requires_grad_() for t in (t1, b1, t2, b2, v)]

    def f(t1, b1, t2, b2, v):
        h = x @ (sw * t1[0] / math.sqrt(5)).T + sb * b1[0]
        h = torch.tanh(h) @ (sw * t2[0] / math.sqrt(7)).T + sb * b2[0]
        return (torch.tanh(h) @ v[0]).sum() * sw / math.sqrt(7)

    grads = torch.autograd.grad(f(*theta), theta)
    assert run.ntk[0] == pytest.approx(sum(float(g.square().sum()) for g in grads), rel=1e-10)


def test_kurtosis_theory_relu_is_15():
    assert signal.kurtosis_theory("relu") == pytest.approx(15.0, rel=1e-10)
    assert signal.kurtosis_theory("identity") == pytest.approx(6.0, rel=1e-10)  # 3 * 3 - 3


def test_log_slope_and_bad_input():
    assert signal.log_slope(np.exp(0.3 * np.arange(10))) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="activation"):
        signal.qmap(1.0, activation="swish")
    with pytest.raises(ValueError, match="init"):
        signal.propagate(3, 8, init="xavier")
    with pytest.raises(ValueError, match="depth"):
        signal.propagate(0, 8)
    with pytest.raises(ValueError, match="inputs"):
        signal.propagate(3, 8, inputs=torch.zeros(4))


def test_layer_stats_against_a_manual_pass():
    from labkit import models

    net = models.mlp(4, [6, 5], 3, norm="batch", seed=0).double()
    x = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    st = signal.layer_stats(net, x, seed=2)
    with torch.no_grad():
        h1 = net[0](x)
    assert st.second_moment[0] == pytest.approx(float(h1.square().mean()))
    assert st.variance[0] == pytest.approx(float(h1.var(0, unbiased=False).mean()))
    assert st.mean_sq[0] == pytest.approx(float(h1.mean(0).square().mean()))
    f = net(x)
    g = torch.randn(f.shape, generator=torch.Generator().manual_seed(2)).double()
    (gw,) = torch.autograd.grad((f * g).sum() / 10, net[-1].weight)
    assert st.grad_norm[-1] == pytest.approx(float(gw.norm()))
    assert len(st.names) == 3 and st.blocks["variance"].size == 0
    res = signal.layer_stats(models.resmlp(4, 6, 3, 2, seed=0).double(), x)
    assert res.blocks["variance"].shape == (3,)
    with pytest.raises(ValueError, match="x must be"):
        signal.layer_stats(net, torch.zeros(4))


def test_norm_models_with_per_example_probes_fall_back_or_refuse():
    from labkit import models, ntk

    x = torch.randn(6, 3)
    for norm in ("layer", "weight"):  # no structure: the generic torch.func path gives the NTK
        net = models.mlp(3, [8], 2, norm=norm, seed=0)
        assert ntk.empirical(net, x).shape == (6, 6)
    with pytest.raises(ValueError, match="per-example probes"):  # batch norm has no per-example NTK
        ntk.empirical(models.mlp(3, [8], 2, norm="batch", seed=0), x)


def test_trainability_grid_shapes():
    from labkit import data

    blobs = data.gaussian_mixture(n=32, dim=4, classes=2, seed=0)
    r = signal.trainability(blobs, depths=[2], sigma_w2=[0.5, 2.0], width=8, steps=5)
    assert r.accuracy.shape == (1, 2) and r.xi_c.shape == (2,) and np.all(r.accuracy <= 1)


def test_figures_hold_finite_data():
    import plotly.graph_objects as go

    from labkit import data, models
    from labkit.viz.propagation import phase_figure

    run = signal.propagate(6, 32, activation="tanh", sigma_w2=1.5, sigma_b2=0.05, seeds=4, backward=False)
    fig = run.figure()
    assert isinstance(fig, go.Figure) and len(fig.data) == 6  # band + median per panel, theory per panel
    sw2, sb2 = np.array([0.5, 1.5, 3.0]), np.array([0.0, 0.1])
    fig = phase_figure(sw2, sb2, signal.chi(sw2[None], sb2[:, None]), signal.critical_sigma_w2(sb2))
    assert np.all(np.isfinite(np.asarray(fig.data[0].z, dtype=float)))
    blobs = data.gaussian_mixture(n=16, dim=3, classes=2, seed=0)
    assert isinstance(signal.trainability(blobs, [2], [1.0], width=4, steps=2).figure(), go.Figure)
    st = signal.layer_stats(models.resmlp(3, 8, 4, 2, seed=0), torch.randn(16, 3))
    assert len(st.spp_figure().data) == 2


def test_trainability_needs_an_activation_name():
    from labkit import data

    with pytest.raises(TypeError, match="activation name"):
        signal.trainability(data.gaussian_mixture(n=8, dim=2, seed=0), [1], [1.0], activation=torch.tanh)
