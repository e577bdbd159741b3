"""Steps-to-target sweeps (against separate fits), the noise-scale tracker, scaling rules and the NQM."""

from __future__ import annotations

import math

import numpy as np
import pytest

import labkit
from labkit.batchsize import (
    NQM,
    NoiseScaleTracker,
    first_reached,
    noise_scale,
    scale_adam,
    scale_beta2,
    scale_ema,
    scale_lr,
    steps_to_target,
    warmup,
)
from labkit.train import fit

DATA = labkit.data.teacher_student(n=64, dim=3, teacher_width=4, noise=0.1, seed=0)


def make_model(seed):
    return labkit.models.mlp(3, [6], 1, activation="tanh", seed=seed).double()


def test_steps_to_target_equals_separate_fits():
    kw = dict(batch_sizes=[4, 16], target=0.02, lrs=[0.05, 0.4], seeds=[0, 1], max_steps=40)
    sweep = steps_to_target(make_model, DATA, progress=False, **kw)
    assert len(sweep.rows) == 8
    reached = 0
    for row in sweep.rows:
        h = fit(make_model(row["seed"]), DATA, lr=row["lr"], batch_size=row["batch_size"], seed=row["seed"],
                steps=40, eval_every=1, progress=False)
        assert row["steps"] == first_reached(h, 0.02), row
        assert row["reached"] == (row["steps"] is not None)
        reached += row["reached"]
        if row["reached"]:
            assert row["examples"] == row["steps"] * row["batch_size"]
    assert 0 < reached < 8  # the case mixes reached and not reached trials
    full = steps_to_target(make_model, DATA, progress=False, stop_early=False, keep_histories=True, **kw)
    assert [r["steps"] for r in full.rows] == [r["steps"] for r in sweep.rows]
    assert all(h.steps == 40 for h in full.histories)
    best = sweep.best()
    assert list(best["batch_size"]) == [4, 16]
    assert "Sweep(" in repr(sweep) and sweep.figure().data and sweep.lr_figure().data


def test_never_reached_is_not_max_steps():
    sweep = steps_to_target(make_model, DATA, batch_sizes=[8], target=1e-9, lrs=[0.1], max_steps=5, progress=False)
    (row,) = sweep.rows
    assert row["reached"] is False and row["steps"] is None and row["examples"] is None
    best = sweep.best()
    assert not best["reached"][0] and math.isnan(best["steps"][0])


def test_accuracy_target_and_lr_rule():
    data = labkit.data.gaussian_mixture(n=48, dim=2, classes=2, separation=4.0, seed=0)
    sweep = steps_to_target(lambda s: labkit.models.mlp(2, [4], 2, seed=s).double(), data, batch_sizes=[4, 16],
                            target=0.9, metric="accuracy", lrs=[0.1], lr_rule="linear", max_steps=10, progress=False)
    assert [r["lr"] for r in sweep.rows] == [0.1, pytest.approx(0.4)]
    assert sweep.rows[0]["reached"]  # well separated: 90% accuracy within 10 steps


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(batch_sizes=[16, 8]), ValueError, "strictly increasing"),
        (dict(batch_sizes=[8, 8]), ValueError, "strictly increasing"),
        (dict(batch_sizes=[8, 128]), ValueError, "between 1 and 64"),
        (dict(metric="accuracy"), ValueError, "classification task"),
        (dict(metric="error"), ValueError, "metric='error'"),
        (dict(lrs=[]), TypeError, "non-empty"),
        (dict(lrs=[0.1, -1.0]), ValueError, "lrs\\[1\\]"),
        (dict(lr_rule="cubic"), ValueError, "lr_rule"),
    ],
)
def test_steps_to_target_bad_inputs(kwargs, error, match):
    args = dict(batch_sizes=[4, 8], target=0.1, lrs=[0.1], max_steps=2, progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        steps_to_target(make_model, DATA, **args)


# ---------------------------------------------------------------- tracker


def test_tracker_records_exact_noise_scale_and_ema_of_parts():
    model = make_model(0)
    start = noise_scale(make_model(0), "mse", DATA)
    tracker = NoiseScaleTracker(every=5)
    fit(model, DATA, lr=0.1, steps=11, callbacks=[tracker], progress=False)
    assert tracker.steps == [0, 5, 10]
    assert math.isclose(tracker.b_simple[0], start.b_simple, rel_tol=1e-12)
    # two-batch: b_simple is the ratio of the (bias-corrected) EMAs of the parts, not an EMA of ratios
    tb = NoiseScaleTracker(every=2, method="two_batch", batch_sizes=(4, 16), n_samples=4, smoothing=0.5)
    fit(make_model(1), DATA, lr=0.1, steps=6, callbacks=[tb], progress=False)
    tr = [r.trace_cov for r in tb.raw]
    g2 = [r.grad_sq_norm for r in tb.raw]
    w = np.array([0.5**2, 0.5, 1.0]) * 0.5
    assert math.isclose(tb.b_simple[-1], float(np.dot(w, tr) / np.dot(w, g2)), rel_tol=1e-12)
    assert tb.figure().data
    with pytest.raises(ValueError, match="smoothing"):
        NoiseScaleTracker(smoothing=1.0)


# ---------------------------------------------------------------- scaling rules


def test_scaling_rules():
    assert scale_lr(0.1, 32, 128) == pytest.approx(0.4)
    assert scale_lr(0.1, 32, 128, "sqrt") == pytest.approx(0.2)
    assert scale_lr(0.1, 32, 8, "linear") == pytest.approx(0.025)
    assert scale_lr(0.1, 32, 128, "none") == 0.1
    f = warmup(32, 128, 4)
    assert [f(t) for t in range(6)] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0])
    # EMA and beta2: the half-life in examples is preserved
    rho = scale_ema(0.99, 100, 400)
    assert math.log(0.5) / math.log(rho) * 400 == pytest.approx(math.log(0.5) / math.log(0.99) * 100)
    assert scale_beta2(0.95, 512, 1) == pytest.approx(0.95 ** (1 / 512))
    lr, (b1, b2), eps = scale_adam(1e-3, (0.9, 0.999), 1e-8, 32, 128)
    assert (lr, b1, b2, eps) == pytest.approx((2e-3, 0.6, 0.996, 5e-9))
    with pytest.raises(ValueError, match="rule='cubic'"):
        scale_lr(0.1, 1, 2, "cubic")
    with pytest.raises(ValueError, match="beta2"):
        scale_beta2(1.0, 1, 2)
    with pytest.raises(TypeError, match="from_batch"):
        scale_lr(0.1, 1.5, 2)


# ---------------------------------------------------------------- noisy quadratic model


def test_nqm_sgd_matches_closed_form_and_momentum_matches_simulation():
    q = NQM(np.array([1.0, 0.3, 0.05]), np.array([0.5, 0.2, 0.1]), np.array([1.0, -2.0, 3.0]))
    lr, b, t = 0.4, 4, 25
    a2 = (1 - lr * q.h) ** 2
    floor = lr**2 * q.c / b / (1 - a2)
    m = a2**t * (q.theta0**2 - floor) + floor
    assert q.curve(lr, b, t)[-1] == pytest.approx(0.5 * np.sum(q.h * m), rel=1e-12)
    # momentum and preconditioning against a Monte Carlo simulation of the stochastic iteration
    beta, p = 0.8, 0.5
    rng = np.random.default_rng(0)
    theta = np.tile(q.theta0, (40000, 1))
    v = np.zeros_like(theta)
    P = q.h ** -p
    for _ in range(t):
        noise = rng.standard_normal(theta.shape) * np.sqrt(q.c / b)
        v = beta * v - 0.1 * P * (q.h * theta + noise)
        theta = theta + v
    mc = 0.5 * np.sum(q.h * theta**2, 1)
    exact = q.curve(0.1, b, t, momentum=beta, precondition=p)[-1]
    assert abs(mc.mean() - exact) < 4 * mc.std() / math.sqrt(len(mc))


def test_nqm_first_step_and_three_regimes():
    q = NQM.power_law(50)
    target = 0.1 * q.loss0
    lrs = np.geomspace(0.02, 2.0, 30)
    curves = q.curve(lrs, 8, 300)
    steps = q.first_step_below(target, lrs, 8, 300)
    for c, s in zip(curves, steps):
        below = np.nonzero(c <= target)[0]
        assert (s == below[0]) if below.size else math.isnan(s)
    sweep = q.steps_to_target(target, lrs, [2**k for k in range(0, 13, 2)], max_steps=20000)
    best = sweep.best()
    assert best["reached"].all()
    slopes = np.diff(np.log(best["steps"])) / np.diff(np.log(best["batch_size"]))
    assert -1.1 < slopes[0] < -0.8  # perfect scaling at small batch
    assert slopes[-1] > -0.1  # maximal data parallelism at large batch
    t = sweep.tradeoff()
    bs, bn = q.noise_scales(q.second_moments(best["lr"][3], best["batch_size"][3], int(best["steps"][3])))
    assert t.b_crit / 10 < bn < 10 * t.b_crit and t.b_crit / 10 < bs < 10 * t.b_crit
    assert sweep.figure().data
