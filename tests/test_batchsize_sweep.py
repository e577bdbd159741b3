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


def _log_range_covers(fig, xs):
    """The x-axis range is in log10 units (plotly's convention) and covers ``xs`` without exceeding them 10x."""
    lo, hi = fig.layout.xaxis.range
    xs = np.asarray(xs, dtype=float)
    assert 10**lo <= xs.min() and 10**hi >= xs.max()
    assert 10**lo > xs.min() / 10 and 10**hi < xs.max() * 10


def test_regime_figure_axes_and_labels_in_log_units():
    q = NQM.power_law(50)
    sweep = q.steps_to_target(0.1 * q.loss0, np.geomspace(1e-3, 2, 24), [2**k for k in range(0, 15, 2)])
    fig = sweep.figure()
    _log_range_covers(fig, sweep.batch_sizes)
    lo, hi = fig.layout.xaxis.range
    labels = [a for a in fig.layout.annotations]
    assert {a.text for a in labels} >= {"perfect scaling", "diminishing returns", "maximal data parallelism"}
    for a in labels:  # annotations on a log axis are in log10 units: inside the drawn range
        assert lo <= a.x <= hi, (a.text, a.x)
    rows = [(a.y, a.text) for a in labels if a.text in labkit.batchsize.tradeoff.REGIMES]
    assert len({y for y, _ in rows}) == len(rows)  # staggered rows: labels cannot sit on one another
    b_crit = sweep.tradeoff().b_crit
    (shape_x,) = [s.x0 for s in fig.layout.shapes if s.type == "line"]
    assert shape_x == pytest.approx(b_crit)  # shapes stay in data units


def test_regime_and_narrow_regions():
    from labkit.batchsize.tradeoff import draw_regimes, regime

    assert [regime(b, 32) for b in (7, 8, 128, 129)] == ["perfect scaling", "diminishing returns",
                                                         "diminishing returns", "maximal data parallelism"]
    with pytest.raises(ValueError, match="b_crit"):
        regime(4, 0)
    fig = draw_regimes(labkit.viz.figure("t", "B", "S", log_x=True), 32, (6, 200))
    texts = [a.text for a in fig.layout.annotations]
    assert "perfect scaling" not in texts  # 6 .. 8 is narrower than half a decade: no label to overlap
    assert "diminishing returns" in texts


def test_slopes_and_repeat_example():
    q = NQM.power_law(30)
    sweep = q.steps_to_target(0.1 * q.loss0, np.geomspace(1e-3, 2, 16), [1, 4, 16, 64])
    best = sweep.best()
    np.testing.assert_allclose(sweep.slopes(), np.diff(np.log(best["steps"])) / np.diff(np.log([1, 4, 16, 64])))
    same = labkit.batchsize.sweep.repeat_example(DATA, 3)
    assert len(same) == len(DATA) and bool((same.inputs == DATA.inputs[3]).all())
    assert noise_scale(make_model(0), "mse", same).trace_cov == pytest.approx(0, abs=1e-12)  # no gradient noise
    with pytest.raises(ValueError, match="index"):
        labkit.batchsize.sweep.repeat_example(DATA, len(DATA))


def test_compare_rule_is_exact_at_k_1_and_reports_divergence():
    from labkit.batchsize.rules import compare_rule

    same = compare_rule(make_model, DATA, base_batch=8, k=1, lr=0.05, steps=20)
    assert same["gap"] == 0.0 and not same["diverged"]  # k = 1: the scaled run is the base run
    np.testing.assert_array_equal(same["examples"], 8 * np.arange(len(same["base"])))
    wild = compare_rule(make_model, DATA, base_batch=2, k=16, lr=0.2, steps=320)  # 16 x 0.2: unstable
    assert wild["diverged"] and not wild["base_diverged"] and wild["gap"] == math.inf
    both = compare_rule(make_model, DATA, base_batch=2, k=4, lr=5.0, steps=64)
    assert both["base_diverged"] and math.isnan(both["gap"])  # no stable base run: nothing to compare
    with pytest.raises(ValueError, match="rule"):
        compare_rule(make_model, DATA, base_batch=2, k=2, lr=0.1, steps=8, rule="cubic")
    with pytest.raises(ValueError, match="steps"):
        compare_rule(make_model, DATA, base_batch=2, k=8, lr=0.1, steps=4)


def test_batch_size_chooser():
    from labkit.batchsize.nqm import BatchSizeChooser

    q = NQM.power_law(30)
    lrs, batches = np.geomspace(1e-3, 2, 16), [2**k for k in range(0, 13, 2)]
    chooser = BatchSizeChooser(q, 0.1 * q.loss0, lrs, batches, max_steps=10**4)
    r = chooser.at(64, "momentum 0.9")
    assert r["steps"] == np.nanmin(q.first_step_below(0.1 * q.loss0, lrs, 64, 10**4, momentum=0.9))
    assert r["regime"] == labkit.batchsize.tradeoff.regime(64, chooser.fits["momentum 0.9"].b_crit)
    _log_range_covers(r["figure"], batches)
    with pytest.raises(ValueError, match="optimizer"):
        chooser.at(64, "lion")
