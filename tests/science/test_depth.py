"""Notebook 05's claims at test size, each with the negative control that must fail (fixed seeds).

Thresholds come from the mean-field theory (see notebooks/05_signal_propagation.ipynb for the reasons).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from labkit import data, signal


def _slope_ok(measured: float, sw2: float) -> bool:
    want = math.log(sw2 / 2)  # ReLU: q_{l+1} = (sigma_w^2 / 2) q_l
    return abs(measured - want) <= (0.05 * abs(want) if sw2 != 2 else 0.05 * math.log(1.5))


def test_relu_log_second_moment_slope_and_tanh_control():
    for sw2 in (1.5, 2.0, 3.0):
        run = signal.propagate(50, 256, activation="relu", sigma_w2=sw2, seeds=32, backward=False)
        assert _slope_ok(signal.log_slope(run.q.mean((0, 2))), sw2)
    for sw2 in (1.5, 3.0):  # control: tanh saturates at q*, it does not follow log(sigma_w^2 / 2)
        run = signal.propagate(50, 256, activation="tanh", sigma_w2=sw2, seeds=32, backward=False)
        assert not _slope_ok(signal.log_slope(run.q.mean((0, 2))), sw2)


def test_tanh_ordered_and_chaotic_follow_the_iterated_maps():
    last = {}
    for name, sw2 in (("ordered", 1.0), ("chaotic", 4.0)):
        run = signal.propagate(30, 256, activation="tanh", sigma_w2=sw2, sigma_b2=0.05, c0=0.5, seeds=128,
                               backward=False)
        th = run.theory()
        assert np.max(np.abs(run.q.mean((0, 2)) / th.q - 1)) < 0.05
        assert np.max(np.abs(run.c.mean(0) - th.c)) < 0.03
        last[name] = run.c[:, -1].mean()
    assert last["ordered"] > 0.99
    assert not last["chaotic"] > 0.99  # control


def test_trainable_depth_follows_the_correlation_depth_scale():
    blobs = data.gaussian_mixture(n=128, dim=8, classes=4, seed=0)
    critical = float(signal.critical_sigma_w2(0.05, "tanh"))
    grid = signal.trainability(blobs, depths=[4, 40], sigma_w2=[0.8, critical, 10.0], sigma_b2=0.05, width=32,
                               lr=0.03, steps=200)
    assert 40 > 6 * grid.xi_c[0] and 40 > 6 * grid.xi_c[2] and 6 * grid.xi_c[1] > 400

    def only_critical_trains(acc):
        return acc[1] >= 0.8 and acc[0] < 0.5 and acc[2] < 0.5

    assert only_critical_trains(grid.accuracy[1])
    assert not only_critical_trains(grid.accuracy[0]) and np.all(grid.accuracy[0] >= 0.8)  # control: shallow


def test_ntk_spread_grows_with_depth_for_gaussian_not_orthogonal():
    x = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    rel = {}
    for init in ("gaussian", "orthogonal"):
        for L in (4, 16):
            k = signal.propagate(L, 32, activation="tanh", sigma_w2=1.0, inputs=x, seeds=200, init=init).ntk
            rel[init, L] = k.var() / k.mean() ** 2
    assert rel["gaussian", 16] >= 2 * rel["gaussian", 4]
    assert not rel["orthogonal", 16] >= 2 * rel["orthogonal", 4]  # control


def test_residual_branch_scaling_depth_limit_and_commuting_limits():
    def run(L, n, seeds, branch, seed=0):
        return signal.propagate(L, n, activation="relu", sigma_w2=2.0, branch=branch, seeds=seeds, seed=seed,
                                backward=False)

    # the per-block law (not merely "> 1e3": 2^63 is predicted) is its own test below
    q = {L: run(L, 64, 2048, "1/sqrt(depth)", seed=L).q[:, -1].mean(-1) for L in (256, 512)}
    se = math.hypot(*(v.std() / math.sqrt(len(v)) / v.mean() for v in q.values()))
    assert se < 0.015 and abs(q[512].mean() / q[256].mean() - 1) < 0.03
    width_first = signal.iterate(512, 1.0, 0.5, 2.0, 0.0, "relu", "1/sqrt(depth)").c[-1]
    gap = {n: abs(run(512, n, 512, "1/sqrt(depth)").c[:, -1].mean() - width_first) for n in (16, 256)}
    assert gap[256] < 0.01
    assert not gap[16] < 0.01  # control: the narrow network's 1/n correction


def test_residual_length_grows_by_1_plus_a_squared_per_block():
    """ReLU at sigma_w^2 = 2: each residual block multiplies the length by 1 + a^2 (E[relu^2] = q/2), so depth 64
    gives 2^63 at a = 1. Per-block factor within 2% of 1 + a^2 at a = 1 and 0.5. Control: tanh at the same sigma_w^2
    and a, whose branch adds a bounded amount (E[tanh^2] < q/2), fails the same check (1.077 and 1.051 per block)."""

    def per_block(branch, activation):
        q = signal.propagate(64, 64, activation=activation, sigma_w2=2.0, branch=branch, seeds=16,
                             backward=False).q.mean((0, 2))
        return (q[-1] / q[0]) ** (1 / (len(q) - 1))

    def follows(activation):
        return all(abs(per_block(b, activation) / (1 + a * a) - 1) < 0.02 for a, b in ((1, "1"), (0.5, 0.5)))

    assert follows("relu")
    assert not follows("tanh")


def test_output_kurtosis_times_width_is_constant():
    """An identity, kept as a regression test of the sampler and not counted as evidence: output_kurtosis draws the
    n i.i.d. terms v_j phi(h_j) directly, so kappa * n = 15 holds by construction up to sampling error."""
    target = signal.kurtosis_theory("relu")  # 15
    k = {n: signal.output_kurtosis(n, 200_000, "relu", seed=n)[0] for n in (8, 16, 32, 64)}
    kn = np.array([v * n for n, v in k.items()])
    assert np.all(np.abs(kn / target - 1) < 0.15)
    raw = np.array(list(k.values()))
    assert not np.all(np.abs(raw / raw.mean() - 1) < 0.15)  # control: kurtosis itself is not constant
