"""Results that are undefined are said to be undefined; finite limits are computed, not NaN (issue 13, issue 21)."""

import math

import numpy as np
import pytest
import torch

import labkit
from labkit import ntk
from labkit.fractal.dimension import MIN_SCALES, BoxDimension, box_counting_dimension

DT = torch.float64


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_nngp_of_zero_input_without_bias_is_its_exact_value(activation):
    # with bias_std=0 a zero input gives zero pre-activations at every layer of every network: both kernels are 0
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [-1.0, 0.5, 0.3]], dtype=DT)
    k, theta = ntk.analytic(x, depth=3, activation=activation, bias_std=0.0)
    assert torch.isfinite(k).all() and torch.isfinite(theta).all()
    assert (k[0] == 0).all() and (k[:, 0] == 0).all() and (theta[0] == 0).all() and (theta[:, 0] == 0).all()
    # the other entries are untouched by the zero row
    k2, theta2 = ntk.analytic(x[1:], depth=3, activation=activation, bias_std=0.0)
    torch.testing.assert_close(k[1:, 1:], k2)
    torch.testing.assert_close(theta[1:, 1:], theta2)
    # continuity: the kernels of a shrinking input tend to that value
    small = torch.cat([1e-8 * x[1:2], x[1:]])
    k_small, theta_small = ntk.analytic(small, depth=3, activation=activation, bias_std=0.0)
    assert k_small[0].abs().max() < 1e-6 and theta_small[0].abs().max() < 1e-6  # O(1e-8 * |K| ~ 20)
    # a finite network agrees exactly: no bias, zero input -> zero output and zero gradient
    act = "relu" if activation == "relu" else "erf"
    net = labkit.models.mlp(3, [64] * 3, 1, act, parameterization="ntk", bias_std=0.0, seed=0).double()
    emp = ntk.empirical(net, x)
    assert (emp[0] == 0).all() and (emp[:, 0] == 0).all()


def test_nngp_refuses_nan_inputs():
    x = torch.tensor([[0.0, math.nan]], dtype=DT)
    with pytest.raises(ValueError, match=r"x1 contains 1 NaN or inf value\(s\), the first at index \(0, 1\)"):
        ntk.analytic(x, depth=1)


def _line(n):
    m = np.zeros((n, n), bool)
    i = np.arange(n)
    m[i, (i * 3) // 4] = True
    return m


def test_dimension_of_empty_mask_is_undefined_with_reason():
    d = box_counting_dimension(np.zeros((64, 64), bool))
    assert math.isnan(d.value) and not d.defined and "empty" in d.reason
    assert "undefined" in f"{d}" and f"{d:.3f}" == "nan"


@pytest.mark.parametrize("n", [16, 24, 32, 48, 63])
def test_dimension_at_too_few_scales_is_undefined(n):
    # a straight line at 24-32 px measures 0.95-1.1 from 3 scales: not a dimension
    d = box_counting_dimension(_line(n), max_size=max(8, n // 4))
    assert len(d.sizes) < MIN_SCALES
    assert math.isnan(d.value) and "too few scales" in d.reason and "needed" in d.reason
    value, sizes, counts = d  # still unpacks like the old tuple
    assert math.isnan(value) and len(sizes) == len(counts)


@pytest.mark.parametrize("n", [64, 128, 256])
def test_dimension_with_enough_scales_reports_its_fit(n):
    d = box_counting_dimension(_line(n))
    assert d.defined and len(d.sizes) >= MIN_SCALES
    assert abs(d.value - 1.0) < 0.1 and d.value == d[0] == float(d)
    assert 0 < d.stderr < 0.1 and 0.98 < d.r_squared <= 1.0
    # the stderr is the least-squares one: recompute from the residuals
    x, y = np.log(d.sizes), np.log(d.counts)
    slope, icept = np.polyfit(x, y, 1)
    r = y - slope * x - icept
    se = math.sqrt(r @ r / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    assert d.stderr == pytest.approx(se, rel=1e-9)
    assert "+/-" in str(d) and isinstance(d, BoxDimension)


def test_scan_result_dimension_says_undefined_for_small_scans():
    from labkit.fractal import Experiment, scan

    res = scan(Experiment.preset("quick", steps=20), resolution=24, progress=False)
    assert math.isnan(res.dimension())  # 23 px boundary: box sizes 2, 4, 8 only


@pytest.mark.parametrize(
    "mask, kwargs, error, match",
    [
        (np.zeros(10, bool), {}, ValueError, "2-D"),
        (np.array([["a", "b"], ["c", "d"]]), {}, TypeError, "mask must be a boolean"),
        (np.full((8, 8), np.nan), {}, ValueError, "mask contains NaN"),
        (np.ones((8, 8), bool), {"min_size": 0}, ValueError, "min_size must be an int >= 1"),
        (np.ones((8, 8), bool), {"max_size": 1}, ValueError, "max_size must be an int >= min_size=2"),
        (np.ones((8, 8), bool), {"min_scales": 2}, ValueError, "min_scales must be an int >= 3"),
    ],
)
def test_dimension_bad_input(mask, kwargs, error, match):
    with pytest.raises(error, match=match):
        box_counting_dimension(mask, **kwargs)
