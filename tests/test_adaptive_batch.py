"""The norm-test batch schedule on a problem whose noise scale is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from labkit.batchsize import NormTestSchedule, fit_adaptive, gradient_tests


def _mean_estimation(n: int = 64, c: float = 1.0, s: float = 2.0):
    """f = w x with x = 1 and y_i = c +- s (balanced): g_i = 2 (w - y_i), so tr(Sigma) = 4 s^2 and
    |G|^2 = 4 (w - c)^2; B_simple = s^2 / (w - c)^2 exactly (n / (n - 1) of it with the sample variance)."""
    x = torch.ones(n, 1, dtype=torch.float64)
    y = c + s * torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)[:, None]
    model = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    return model, (x, y)


def test_the_schedule_asks_for_the_known_noise_scale():
    n, c, s, theta = 64, 1.0, 2.0, 0.5
    model, data = _mean_estimation(n, c, s)
    tests = gradient_tests(model, "mse", data)
    b_simple = s**2 / (0.0 - c) ** 2 * n / (n - 1)
    assert tests.b_simple == pytest.approx(b_simple, rel=1e-12)
    assert NormTestSchedule(theta).next_batch(2, tests) == math.ceil(b_simple / theta**2)  # 17
    assert NormTestSchedule(theta, max_batch=8).next_batch(2, tests) == 8
    assert NormTestSchedule(theta).next_batch(32, tests) == 32  # never shrinks
    assert NormTestSchedule(10.0).next_batch(2, tests) == 2  # the test passes at theta = 10: keep B


def test_the_batch_grows_as_the_signal_falls_and_not_without_noise():
    """Near w = c the signal |G|^2 = 4 (w - c)^2 vanishes while tr(Sigma) = 4 s^2 stays: B must grow.
    Control: s = 0 (no gradient noise), the norm test always passes and B stays where it started."""
    model, data = _mean_estimation(256, s=2.0)
    run = fit_adaptive(model, data, initial_batch=2, test_every=5, steps=120, lr=0.05, seed=0, progress=False)
    assert run.steps == 120 and len(run.history.loss) == 120
    assert all(b1 >= b0 for b0, b1 in zip(run.batch_sizes, run.batch_sizes[1:]))
    w = float(model.weight.detach())
    # at the end the known noise scale s^2 / (w - c)^2 is large, and the schedule followed it up
    assert run.batch_sizes[-1] >= 16 and s_simple(w) > 16
    quiet, qdata = _mean_estimation(256, s=0.0)
    still = fit_adaptive(quiet, qdata, initial_batch=2, test_every=5, steps=60, lr=0.05, seed=0, progress=False)
    assert set(still.batch_sizes) == {2}


def s_simple(w: float, c: float = 1.0, s: float = 2.0) -> float:
    return s**2 / (w - c) ** 2


def test_target_stops_and_examples_are_counted():
    model, data = _mean_estimation(128)
    run = fit_adaptive(model, data, initial_batch=4, test_every=4, steps=400, lr=0.1, target=4.1, eval_every=1,
                       progress=False)
    hit = run.reached(4.1)  # the loss floor is s^2 = 4
    assert hit is not None and run.steps <= 400
    assert hit[1] == sum(run.batch_sizes[: hit[0]])


def test_bad_inputs():
    model, data = _mean_estimation()
    with pytest.raises(ValueError, match="initial_batch"):
        fit_adaptive(model, data, initial_batch=1, progress=False)
    with pytest.raises(ValueError, match="theta"):
        NormTestSchedule(0.0)
    with pytest.raises(TypeError, match="schedule"):
        fit_adaptive(model, data, schedule=1.0, progress=False)
