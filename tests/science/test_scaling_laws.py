"""Science: toy scaling laws and their controls (notebook 08, seed catalog check 18).

Random-feature ridgeless regression on Gaussian data with spectrum i^-(1 + alpha); thresholds from
the theory (exponent -alpha, the exact 1/D law) with the catalog's tolerance 0.15.
"""

import numpy as np
import pytest

from labkit import data
from labkit import scaling as S

N_GRID = [8, 16, 32, 64, 128, 256]


def exponent_matches(n, loss, alpha):
    """The claim: log-log slope of L(N) within 0.15 of -alpha, and one power law over the range."""
    return abs(S.slope(n, loss)[0] + alpha) < 0.15 and not S.power_law_check(n, loss).rejected


@pytest.mark.parametrize(("alpha", "M"), [(0.5, 20_000), (1.0, 4000)])
def test_loss_against_features_has_the_spectrum_exponent(alpha, M):
    lam, t = S.spectrum(M, alpha)
    loss = S.rf_simulate(N_GRID, [None], lam, t, seeds=range(4))[..., 0].mean(0)
    assert exponent_matches(N_GRID, loss, alpha)


def test_flat_spectrum_control_has_no_exponent_to_pass_on():
    """Control for the exponent claim: a flat spectrum (lambda_i = 1) with M = 20 000 >> N has no power-law decay to
    pass on, so L(N) is flat (slope ~0) and the slope check fails for alpha = 0.5 and 1. It fails on the slope, not
    on the halves test: a flat line is one power law (exponent 0) and power_law_check does not reject it."""
    lam, t = S.spectrum(20_000, -1.0)
    loss = S.rf_simulate(N_GRID, [None], lam, t, seeds=range(4))[..., 0].mean(0)
    assert not any(exponent_matches(N_GRID, loss, a) for a in (0.5, 1.0))
    assert not S.power_law_check(N_GRID, loss).rejected


def test_halves_test_detects_the_end_of_the_spectrum():
    """What power_law_check rejects: a genuine alpha = 0.5 spectrum cut at M = 400, whose loss drops off as N nears M
    (halves -0.43 / -1.20). Control: the same spectrum with M = 20 000, out of reach of N <= 256, is not rejected."""
    cut = S.rf_simulate(N_GRID, [None], *S.spectrum(400, 0.5), seeds=range(4))[..., 0].mean(0)
    assert S.power_law_check(N_GRID, cut).rejected
    full = S.rf_simulate(N_GRID, [None], *S.spectrum(20_000, 0.5), seeds=range(4))[..., 0].mean(0)
    assert not S.power_law_check(N_GRID, full).rejected


def one_over_d(d, excess):
    """The claim: L(D) - L_inf falls as 1/D (slope -1 within 0.15)."""
    return abs(S.slope(d, excess)[0] + 1) < 0.15


def test_variance_limited_regime_matches_the_exact_ridgeless_law():
    """L_inf (1 + N/(D - N - 1)) within 5% at every D from 40 (N = 16) up. Control: the leading-order N/D law fails
    the same 5% check at D = 40 (16/23 against 16/40: 21% apart), so the check resolves the -N-1 that makes the
    formula exact; at D >= 200 the two laws differ by < 5% and a check there could not tell them apart."""
    lam, t = S.spectrum(4000, 1.0)
    ds = [40, 50, 100, 200, 400, 800, 1600, 3200]
    sim = S.rf_simulate([16], [*ds, None], lam, t, seeds=range(20))[:, 0, :]
    mean, l_inf = sim[:, :-1].mean(0), sim[:, -1].mean()
    formula = S.rf_loss_ridgeless(l_inf, 16, np.array(ds))
    assert np.all(np.abs(mean / formula - 1) < 0.05)
    assert not abs(mean[0] / (l_inf * (1 + 16 / 40)) - 1) < 0.05  # control: N/D at D = 40
    assert one_over_d(ds[2:], (mean - l_inf)[2:])


def test_control_resolution_limited_in_data_is_not_one_over_d():
    """With infinitely many features the data are the bottleneck: L(D) ~ D^-alpha, not 1/D (alpha = 0.5)."""
    lam, t = S.spectrum(8000, 0.5)
    ds = [16, 32, 64, 128, 256]
    loss = S.rf_simulate_kernel(ds, lam, t, seeds=range(4)).mean(0)
    assert not one_over_d(ds, loss)
    assert abs(S.slope(ds, loss)[0] + 0.5) < 0.15  # the regimes swap: the spectrum's exponent, in D


def falls_with_size(sweep):
    """The claim for a real network: L(N) = a N^-b + c with the 90% bootstrap interval of b above 0.15.

    0.15 is the exponent tolerance used throughout: an exponent not resolved from 0 to within it is no size law.
    """
    fit = S.fit_power_law(sweep.params, sweep.final_loss(), bootstrap=200, seed=0)
    return fit.a > 0 and fit.ci["b"][0] > 0.15


@pytest.fixture(scope="module")
def teacher():
    ds = data.teacher_student(n=3072, dim=8, teacher_width=32, noise=0.0, seed=0)
    return ds[:1024], ds[1024:]


def test_mlp_teacher_student_loss_falls_as_a_power_law_of_size(teacher):
    sweep = S.mlp_sweep(*teacher, [1, 2, 4, 8, 16, 32, 64], steps=500, seeds=(0,))
    assert falls_with_size(sweep)
    assert sweep.frontier().scales()  # loss slope -0.65, size slope 0.60: larger budgets go to larger networks


@pytest.fixture(scope="module")
def shuffled_sweep(teacher):
    """Targets permuted across inputs: nothing to learn (one sweep shared by the two controls below)."""
    train, test = teacher
    perm = np.random.default_rng(0).permutation(len(train))
    shuffled = data.Dataset(train.inputs, train[perm].targets, "regression")
    return S.mlp_sweep(shuffled, test, [1, 2, 4, 8, 16, 32, 64], steps=500, seeds=(0,))


def test_control_shuffled_targets_give_no_size_law(shuffled_sweep):
    """Nothing to learn, so width cannot help and the claim's check fails."""
    assert not falls_with_size(shuffled_sweep)


def test_control_shuffled_targets_have_no_compute_frontier(shuffled_sweep):
    """The frontier claim (best loss falls with compute, best size grows with it) on shuffled targets: compute buys
    nothing when there is nothing to learn, so the loss slope is ~0 (-0.01) and the check fails, although the
    frontier still hops to larger sizes (size slope 0.35): why "size[-1] > size[0]" alone proved nothing."""
    front = shuffled_sweep.frontier()
    assert front.size[-1] > front.size[0] and not front.scales()
