"""Notebook 04's claims on the real network, each with a negative control on which the same check fails.

Setup: the notebook's teacher-student regression (8 inputs, 16 teacher units, label noise 0.1) and a tanh MLP
with 32 hidden units, at the notebook's fast size. Measured values: docs/teaching_parts/02_04.md.
"""

import numpy as np
import pytest

import labkit
from labkit import batchsize as bsz

TARGET = 0.02  # eval loss; the label-noise floor is 0.01


def make_model(seed):
    return labkit.models.mlp(8, [32], 1, activation="tanh", seed=seed)


@pytest.fixture(scope="module")
def data():
    return labkit.data.teacher_student(n=512, dim=8, teacher_width=16, noise=0.1, seed=0)


def sweep(data):
    return bsz.steps_to_target(make_model, data, target=TARGET, batch_sizes=[2, 8, 32, 128, 512],
                               lrs=list(np.geomspace(0.02, 0.64, 6)), max_steps=2000, eval_every=2, progress=False)


# McCandlish et al.: S = S_min (1 + B_crit / B) has log-log slope -B_crit / (B + B_crit): below -0.8 for
# B < B_crit / 4 and above -0.2 for B > 4 B_crit. We accept the two ends within 0.25 of -1 and of 0.
def perfect_scaling(slope):
    return slope < -0.75


def max_parallelism(slope):
    return slope > -0.25


@pytest.fixture(scope="module")
def measured(data):
    sw = sweep(data)
    trained = make_model(0)
    labkit.train.fit(trained, data, lr=0.3, steps=5000, eval_every=1, progress=False,
                     callbacks=[lambda info: info.metrics.get("loss", np.inf) <= TARGET])
    return {"sweep": sw, "fit": sw.tradeoff(), "at_init": bsz.noise_scale(make_model(0), "mse", data).b_simple,
            "at_target": bsz.noise_scale(trained, "mse", data).b_simple}


def test_three_regimes_by_slope(measured):
    s = measured["sweep"].slopes()
    assert measured["sweep"].best()["reached"].all()
    assert perfect_scaling(s[0]) and not max_parallelism(s[0]), s
    assert max_parallelism(s[-1]) and not perfect_scaling(s[-1]), s


def test_no_perfect_scaling_without_gradient_noise(data):
    """Control: one example repeated, every batch gives the full-batch gradient; steps cannot fall with B."""
    s = sweep(bsz.sweep.repeat_example(data)).slopes()
    assert not perfect_scaling(s[0]), s


def test_b_crit_against_the_noise_scale(measured):
    """McCandlish et al.'s B_crit ~ B_simple at the target (within 4x) fails on this task: assert what is measured.

    The noise scale grows ~1000x during the run; B_crit lies between its values at the start and at the target.
    """
    b_crit, start, end = measured["fit"].b_crit, measured["at_init"], measured["at_target"]
    assert not (end / 4 < b_crit < 4 * end), (b_crit, end)
    assert start < b_crit < end, (start, b_crit, end)


def test_linear_rule_holds_below_b_crit_and_diverges_above(data, measured):
    b_crit = measured["fit"].b_crit
    base_batch, lr = 2, 0.02
    below = bsz.rules.compare_rule(make_model, data, base_batch=base_batch, k=4, lr=lr, steps=1600)
    above = bsz.rules.compare_rule(make_model, data, base_batch=base_batch, k=32, lr=lr, steps=1600)
    assert 4 * base_batch < b_crit < 32 * base_batch, b_crit
    # the linear rule: same loss at equal examples, within 10%; beyond B_crit the k-times lr is unstable
    assert below["gap"] < 0.1 and not below["diverged"], below["gap"]
    assert above["diverged"] and not above["gap"] < 0.1


def test_the_rule_depends_on_the_optimiser(data):
    """Goyal et al.'s linear rule for SGD, Malladi et al.'s square-root rule (lr, betas, eps) for Adam, at k = 4.

    Each optimiser is the other's control: the rule that tracks the base run better for one loses for the other.
    """
    gap = {(opt, rule): bsz.rules.compare_rule(make_model, data, base_batch=2, k=4, lr=lr, steps=1600, rule=rule,
                                                 optimizer=opt)["gap"]
           for opt, lr, rules in (("sgd", 0.02, ("linear", "sqrt")), ("adam", 2e-3, ("linear", "adam_sqrt")))
           for rule in rules}
    assert gap["sgd", "linear"] < gap["sgd", "sqrt"], gap
    assert gap["adam", "adam_sqrt"] < gap["adam", "linear"], gap


def test_label_noise_inflates_the_noise_scale_near_the_loss_floor():
    """Candidate for the B_crit / B_simple gap: with label noise 0.1 (floor 0.01) tr(Sigma) stays finite while |G|^2
    vanishes near the target 0.02, so B_simple there is >= 2x that of the same task without label noise (measured:
    7049 vs 1416). Control: at initialisation, far from the floor, label noise changes B_simple by < 2x (8.2 vs 7.9):
    it is the nearness to the noise floor, not the noise itself, that inflates the estimate."""

    def b_simple(noise, to_target):
        d = labkit.data.teacher_student(n=512, dim=8, teacher_width=16, noise=noise, seed=0)
        m = make_model(0)
        if to_target:
            labkit.train.fit(m, d, lr=0.3, steps=5000, eval_every=1, progress=False,
                             callbacks=[lambda info: info.metrics.get("loss", np.inf) <= TARGET])
        return bsz.noise_scale(m, "mse", d).b_simple

    assert b_simple(0.1, True) >= 2 * b_simple(0.0, True)
    assert not b_simple(0.1, False) >= 2 * b_simple(0.0, False)
