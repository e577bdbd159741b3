"""labkit.trajectory: the EMA against its closed form, the distance travelled, the log-t fit."""

import math

import numpy as np
import pytest
import torch

import labkit
from labkit import trajectory


def _run(steps=7, callbacks=(), lr=0.1, seed=0):
    ds = labkit.data.teacher_student(32, dim=3, teacher_width=4, seed=0)
    net = labkit.models.mlp(3, [6], 1, seed=seed).double()
    ws = []
    spec = labkit.models.ParamSpec.of(net)
    record = lambda info: ws.append(spec.flatten(labkit.models.param_dict(info.model)).clone())  # noqa: E731
    hist = labkit.train.fit(net, ds, lr=lr, steps=steps, callbacks=[record, *callbacks], progress=False)
    ws.append(spec.flatten(labkit.models.param_dict(net)).clone())  # w_steps, after the last update
    return net, hist, ws


def test_ema_matches_the_closed_form_sum():
    ema = trajectory.EMA(0.8)
    _, hist, ws = _run(callbacks=[ema])
    rho, T = 0.8, len(ws) - 1
    # w_ema_T = rho^T w_0 + sum_{t=1..T} (1 - rho) rho^(T - t) w_t
    expected = rho**T * ws[0] + sum((1 - rho) * rho ** (T - t) * ws[t] for t in range(1, T + 1))
    assert ema.steps == T == hist.steps
    assert torch.allclose(ema.vector, expected, atol=1e-12)
    net = ema.model()
    flat = labkit.models.ParamSpec.of(net).flatten(labkit.models.param_dict(net))
    assert torch.equal(flat, ema.vector)


def test_ema_records_and_errors():
    ema = trajectory.EMA(0.5, every=2)
    _run(steps=6, callbacks=[ema])
    assert [s for s, _ in ema.records] == [2, 4, 6]
    with pytest.raises(ValueError, match="rho must be in"):
        trajectory.EMA(1.0)
    with pytest.raises(RuntimeError, match="has not seen a run"):
        trajectory.EMA(0.5).model()


def test_ema_scaling_rule():
    assert trajectory.ema_scaling(0.9, 2) == pytest.approx(0.81)
    assert trajectory.ema_scaling(0.99, 1) == pytest.approx(0.99)
    with pytest.raises(ValueError, match="kappa"):
        trajectory.ema_scaling(0.9, 0)
    with pytest.raises(ValueError, match="rho"):
        trajectory.ema_scaling(1.5, 2)


def test_ema_scaling_rule_keeps_the_average_over_examples():
    """Busbridge et al. 2023: with lr -> kappa lr (linear rule) the EMA at rho^kappa matches the base run per sample.

    Gradient flow on a 1-d quadratic sampled at steps of lr and kappa lr; the base EMA averages over
    1/(1 - rho) = 100 steps. Control: keeping rho at a kappa = 8 times larger step averages over 8x more samples.
    """

    def ema_curve(kappa, rho, steps):
        theta, ema, out = 5.0, 5.0, []
        for _ in range(steps):
            theta = theta - 0.001 * kappa * theta
            ema = rho * ema + (1 - rho) * theta
            out.append(ema)
        return np.array(out)

    base = ema_curve(1, 0.99, 4000)
    gap = {}
    for kappa in (2, 8):
        ref = base[kappa - 1 :: kappa]  # the same number of samples seen
        for rule, rho in (("scaled", trajectory.ema_scaling(0.99, kappa)), ("fixed", 0.99)):
            gap[rule, kappa] = np.max(np.abs(ema_curve(kappa, rho, 4000 // kappa) - ref) / np.abs(ref))
    assert gap["scaled", 2] < 0.05 and gap["scaled", 8] < 0.05
    assert gap["fixed", 8] > 0.20


def test_distance_is_the_norm_from_init_and_recorded_at_the_end():
    dist = trajectory.Distance(every=3)
    _, hist, ws = _run(steps=7, callbacks=[dist])
    assert dist.steps == [0, 3, 6, 7]
    for s, d in zip(dist.steps, dist.distances):
        assert d == pytest.approx(float((ws[s] - ws[0]).norm()), rel=1e-12)
    assert hist.tracked["distance"]["steps"] == [0, 3, 6, 7]


def test_log_fit_recognises_log_and_sqrt():
    t = np.arange(1, 200)
    assert trajectory.log_fit(t, 3 * np.log(t) + 1)["r2_log"] == pytest.approx(1)
    fits = trajectory.log_fit(t, np.sqrt(t))
    assert fits["r2_sqrt"] == pytest.approx(1) and fits["r2_log"] < 0.99
    with pytest.raises(ValueError, match="at least 3"):
        trajectory.log_fit([0, 1], [0, 1])
    assert math.isnan(trajectory.log_fit([1, 2, 3], [1, 1, 1])["r2_log"])


def test_log_fit_verdict_tells_log_t_from_a_slow_power_law():
    t = np.arange(20, 2001, 20.0)
    assert trajectory.log_fit(t, 3 * np.log(t) + 1)["holds"]
    slow = trajectory.log_fit(t, t**0.1)  # R^2(log t) 0.996: the R^2 alone would accept it
    assert slow["r2_log"] > 0.99 and slow["exponent_late"] == pytest.approx(slow["exponent_early"])
    assert not slow["holds"]
