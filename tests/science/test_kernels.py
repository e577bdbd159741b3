"""Notebook 02's claims, each with a negative control on which the same check fails (seeded, test size).

Thresholds come from the theory, not from the measured numbers (measured values in docs/teaching_parts/02_04.md).
"""

import numpy as np
import torch

from labkit.lessons import ntk as lab
from labkit.lessons import uncertainty


def converges(slope):
    """Empirical -> analytic NTK: error ~ width^-1/2 (Jacot et al.); accept the exponent within +-0.25."""
    return -0.75 < slope < -0.25


def lazy(slope):
    """Kernel change ~ width^-1/2 in the NTK parameterisation (Jacot et al.; Lee et al.): exponent within +-0.25."""
    return -0.75 < slope < -0.25


def feature_learning(slope):
    """The kernel keeps moving at every width: it shrinks at less than half the lazy rate."""
    return slope > -0.25


def close_to_linear(slope):
    """Lee et al. 2019: |f_net - f_lin| = O(width^-1/2); require at least half that rate."""
    return slope < -0.25


def test_empirical_ntk_converges_to_its_own_analytic_kernel():
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    widths = [64, 256, 1024]
    conv = lab.width_convergence(x, widths, depth=2, seeds=2)
    assert converges(conv["slope"]), conv
    # control: the analytic kernel of a depth-3 network is not the limit of depth-2 networks
    wrong = lab.width_convergence(x, widths, depth=2, seeds=2, reference_depth=3)
    assert not converges(wrong["slope"]), wrong


def test_kernel_is_lazy_in_ntk_and_moves_in_mean_field():
    widths = [64, 256, 1024]
    ntk = lab.kernel_change(widths, parameterization="ntk", steps=60, seeds=3, progress=False)
    mf = lab.kernel_change(widths, parameterization="mean_field", steps=60, seeds=3, progress=False)
    assert lazy(ntk["slope"]) and not feature_learning(ntk["slope"]), ntk
    # control: the same checks the other way round
    assert feature_learning(mf["slope"]) and not lazy(mf["slope"]), mf


def test_network_separates_from_its_linearisation_more_at_small_width():
    widths = [32, 128, 512, 2048]
    ntk = lab.linearization_gap(widths, parameterization="ntk", steps=80, seeds=3)
    assert not ntk["diverged"] and close_to_linear(ntk["slope"]), ntk
    # control: mean-field networks leave their linearisation at every width
    mf = lab.linearization_gap(widths, parameterization="mean_field", steps=80, seeds=3)
    assert not mf["diverged"] and not close_to_linear(mf["slope"]), mf


def test_predict_matches_a_trained_wide_network():
    # Lee et al.: the deviation is O(width^-1/2); allow 3x the leading-order scale 1/sqrt(width)
    width = 1024
    threshold = 3 / np.sqrt(width)
    ntk = lab.predict_vs_network(width, parameterization="ntk", steps=100)
    assert not ntk["diverged"] and ntk["error"] < threshold, ntk["error"]
    # control: a mean-field network of the same width learns features; the initial kernel mispredicts it
    mf = lab.predict_vs_network(width, parameterization="mean_field", steps=100)
    assert not mf["diverged"] and mf["error"] > threshold, mf["error"]


def smooth_first(changes):
    """Spectral bias: the top eigenvector has at most one sign change, and they never decrease down the spectrum."""
    return changes[0] <= 1 and changes == sorted(changes)


def test_top_ntk_eigenvectors_are_smooth_and_a_random_kernels_are_not():
    eig = lab.eigenfunctions(n=41, depth=1, k=4)
    assert smooth_first(eig["sign_changes"]), eig["sign_changes"]
    a = torch.randn(41, 41, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    control = lab.sign_changes(torch.linalg.eigh(a @ a.T)[1].flip(1)[:, :4])
    assert not smooth_first(control), control


def test_predict_vs_network_instrument():
    """The comparison itself: with a tiny step the network is its linearisation and GD is the flow (error -> 0)."""
    assert lab.predict_vs_network(64, lr=1e-3, steps=20)["error"] < 1e-4
    wild = lab.predict_vs_network(64, lr=3.0, steps=50)  # 3x the stability limit: diverges, reported as data
    assert wild["diverged"] and wild["error"] == float("inf")


# ---------------------------------------------------------------- error bars (notebook 02, section 5)


def follows_ntk_gd(r):
    """Lee et al. 2019: a trained network deviates from its linearised infinite-width prediction by O(width^-1/2)
    (exponent within +-0.25); the ensemble's mean and variance errors fall at least half that fast."""
    s = r["slopes"]
    return -0.75 < s["deviation"] < -0.25 and s["mean"] < -0.25 and s["variance"] < -0.25


def test_trained_ensembles_approach_the_ntk_gd_prediction_and_mean_field_ones_do_not():
    """The control fails for the claim's reason: mean-field networks are compared with the NTK-GD prediction of their
    own kernels (same width, same time scale), but their kernels vanish like 1/width, so to fit the targets their
    features must move: they leave the linear regime at every width and the deviation does not shrink."""
    widths = [64, 256, 1024]
    ntk_ = uncertainty.ensemble_vs_width(widths, members=16, progress=False)
    assert not ntk_["diverged"] and follows_ntk_gd(ntk_), ntk_
    mf = uncertainty.ensemble_vs_width(widths, parameterization="mean_field", members=16, progress=False)
    assert not mf["diverged"] and not follows_ntk_gd(mf), mf


def calibrated(r):
    """Exact for a teacher from the same prior: only sampling error, 3 standard errors across independent teachers."""
    return abs(r["coverage"] - r["level"]) < 3 * r["se"]


def test_nngp_intervals_cover_teachers_from_their_prior_and_not_from_another():
    """The control fails because the data come from another process: a depth-3 erf network with large weights draws
    rougher functions than the ReLU posterior's intervals allow for, so they hold fewer held-out targets."""
    assert calibrated(uncertainty.calibration())
    other = uncertainty.calibration(teacher=dict(depth=3, activation="erf", weight_std=3.0, bias_std=0.5))
    assert not calibrated(other) and other["coverage"] < 0.8, other["coverage"]


def differs_from_bayes(r):
    """GD ensemble and NNGP posterior variances are equal only when the NTK is proportional to the NNGP kernel."""
    return r["variance_gap"] > 1e-6


def test_gd_ensemble_variance_is_not_the_bayesian_posteriors():
    """The control fails for the claim's reason: training only the readout makes the NTK equal to the NNGP kernel,
    and then gradient descent samples exactly the Bayesian posterior (Lee et al. 2019). The t = inf mean is kernel
    regression with the NTK in both cases, an identity, checked here only as a sanity check, not as evidence."""
    gd = uncertainty.bayes_vs_gd(depth=1)
    assert gd["mean_gap"] < 1e-9
    assert differs_from_bayes(gd)
    assert not differs_from_bayes(uncertainty.bayes_vs_gd(depth=1, readout_only=True))
