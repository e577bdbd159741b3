"""Curvature claims of 01_hessian_spectrum, each with a negative control on which the same check must fail."""

import math

import pytest
import torch

from labkit import edge, hessian
from labkit.data import gaussian_mixture
from labkit.hessian import probes
from labkit.lessons import edge as lesson
from labkit.models import mlp

# ------------------------------------------------------------------ edge of stability (Cohen et al. 2021)


def test_sharpness_rises_to_two_over_lr():
    """lr = 0.05: 2/lr = 40 is well above the initial sharpness (~23), so reaching it is progressive sharpening."""
    probe, hist = lesson.demo_run("sgd", 0.05, 800, 8)
    eos = edge.at_edge(probe.series("sharpness"), 2 / 0.05)
    assert not hist.diverged
    assert eos.holds, eos


def test_edge_of_stability_control_small_lr_never_gets_there():
    """lr/20: 2/lr = 800, far above anything this network reaches in the budget: the same check fails."""
    probe, _ = lesson.demo_run("sgd", 0.0025, 400, 8)
    eos = edge.at_edge(probe.series("sharpness"), 2 / 0.0025)
    assert eos.start < edge.START_BELOW and not eos.holds, eos


def test_at_edge_rejects_a_run_that_starts_at_the_threshold():
    """The old hollow check: a sharpness already at 2/lr from step 0 must not count as progressive sharpening."""
    assert not edge.at_edge([20.5] * 30, 20.0).holds
    assert edge.at_edge([10.0] * 5 + [20.2] * 25, 20.0).holds
    with pytest.raises(ValueError, match="at least 3"):
        edge.at_edge([1.0, 2.0], 2.0)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_momentum_threshold_is_2_plus_2beta_over_lr(beta):
    """Heavy ball m = beta m + g; p -= lr m on lambda x^2 / 2 is stable iff lr lambda < 2 + 2 beta.

    Control: 3% above the threshold diverges; 3% below converges (and 38/lr, the old text, is far off)."""
    lam, lr = 1.0, 1.0
    thr = edge.threshold(lr, "momentum" if beta else "sgd")
    if beta:
        from labkit.optim import MOMENTUM

        beta = MOMENTUM  # the optimiser's own value
        assert math.isclose(thr, (2 + 2 * beta) / lr)

    def final(curv):
        x, m = 1.0, 0.0
        for _ in range(2000):
            m = beta * m + curv * x
            x -= lr * m
        return abs(x)

    assert final(0.97 * thr * lam) < 1e-3
    assert final(1.03 * thr * lam) > 1e3


# ------------------------------------------------------------------ outliers: the output layer, not the data


@pytest.mark.parametrize("loss, extra", [("cross_entropy", -1), ("mse", 0)])
def test_outliers_at_init_follow_the_output_layer(loss, extra):
    """At a uniform-softmax init the count is k_out - 1 (CE) or k_out (MSE), whatever the data's classes.

    Control: the data-classes hypothesis (count = C - 1 or C) fails on 2 classes with 6 outputs, and
    data without any class structure (separation 0) give the same count."""
    for classes, outputs, sep in ((2, 6, 3.0), (3, 6, 0.0), (4, 4, 3.0)):
        _, count = probes.outlier_count(classes, outputs, loss, separation=sep)
        assert count == outputs + extra, (classes, outputs, sep, count)
    _, count = probes.outlier_count(2, 6, loss)
    assert count != 2 + extra  # the "k classes -> k - 1 outliers" reading of the data is wrong here


def test_training_removes_the_output_layer_count():
    """After training (the softmax is no longer uniform) the count leaves k_out - 1; control: untrained."""
    trained = [probes.outlier_count(c, 6, separation=2.0, steps=1000, per_class=20)[1] for c in (2, 3, 4, 5)]
    untrained = [probes.outlier_count(c, 6, separation=2.0, per_class=20)[1] for c in (2, 3, 4, 5)]
    assert all(c < 5 for c in trained), trained
    assert not all(c < 5 for c in untrained), untrained
    # What is measured at this size: the count does not follow the data's C - 1 (it is 1-2 for C = 2..5).
    assert trained != [1, 2, 3, 4], trained


# ------------------------------------------------------------------ outliers live in G (when R is small)


def test_outliers_live_in_gauss_newton_when_residual_is_small():
    """Uniform-softmax init, 5 classes: ||R|| is small against G's outlier gap, and H's top-4 subspace is G's.

    Control: the tanh model of the notebook's first section at init: ||R|| is as large as the outliers."""
    ds = gaussian_mixture(50, 4, 5, 3.0, seed=0).to(dtype=torch.float64)
    m = mlp(4, [16], 5, "relu", seed=0).double()
    with torch.no_grad():
        m[-1].weight.mul_(0.01)
        m[-1].bias.zero_()
    holds = probes.gauss_newton_outliers(m, "cross_entropy", ds, k=4)
    assert holds.residual_small and holds.overlap > 0.9, holds

    ds3 = gaussian_mixture(120, dim=4, classes=3, seed=0).to(dtype=torch.float64)
    m3 = mlp(4, [16], 3, activation="tanh", seed=0).double()
    fails = probes.gauss_newton_outliers(m3, "cross_entropy", ds3, k=2)
    assert not fails.residual_small, fails


# ------------------------------------------------------------------ mini-batch Hessians (Granziol et al.)


def test_batch_sharpness_decreases_with_batch_size():
    """lambda_max(H_B) falls as B grows (significant over 8 draws per size). Control: a data set of one
    example repeated, where every batch Hessian is the full one: the same check fails."""
    ds = gaussian_mixture(120, dim=4, classes=3, seed=0).to(dtype=torch.float64)
    model = mlp(4, [16], 3, activation="tanh", seed=0).double()
    sizes = [4, 16, 64]
    bs = hessian.batch_sharpness(model, "cross_entropy", ds, batch_sizes=sizes, n_batches=8, seed=0)
    assert bs.decreases, (bs.mean, bs.full, bs.trend())
    same = ds[torch.zeros(len(ds), dtype=torch.long)]
    ctrl = hessian.batch_sharpness(model, "cross_entropy", same, batch_sizes=sizes, n_batches=8, seed=0)
    assert not ctrl.decreases, (ctrl.mean, ctrl.full, ctrl.trend())


# ------------------------------------------------------------------ the instruments behind these checks


def test_trend_matches_scipy_linregress_and_skips_noiseless_sizes():
    from scipy import stats

    bs = probes.BatchSharpness([4, 16, 64, 120], [[3.0, 3.4, 2.9], [2.8, 3.0, 2.7], [2.6, 2.75, 2.7], [2.5] * 3], 2.5)
    ref = stats.linregress(torch.log(torch.tensor([4.0] * 3 + [16.0] * 3 + [64.0] * 3)).numpy(),
                           [3.0, 3.4, 2.9, 2.8, 3.0, 2.7, 2.6, 2.75, 2.7])
    slope, t = bs.trend()
    assert slope == pytest.approx(ref.slope) and t == pytest.approx(ref.slope / ref.stderr)


def test_gauss_newton_outliers_when_r_is_zero():
    """A linear model with MSE has H = G exactly: overlap 1, ||R|| = 0, and the check holds."""
    ds = gaussian_mixture(40, dim=5, classes=2, seed=1).to(dtype=torch.float64)
    data = (ds.inputs, torch.nn.functional.one_hot(ds.targets, 2).double())
    lin = torch.nn.Sequential(torch.nn.Linear(5, 2)).double()
    r = probes.gauss_newton_outliers(lin, "mse", data, k=2)
    assert r.residual < 1e-10 and r.overlap == pytest.approx(1.0, abs=1e-8) and r.residual_small
    with pytest.raises(ValueError, match="k must be below"):
        probes.gauss_newton_outliers(lin, "mse", data, k=12)


def test_outlier_count_rejects_fewer_outputs_than_classes():
    with pytest.raises(ValueError, match="outputs"):
        probes.outlier_count(5, 3)
