"""Figure builders: right traces, right data, right axes, clear errors."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from labkit import viz
from labkit.train import History


def _hist(loss, lr=0.1, diverged_at=None, evals=None):
    h = History(loss=list(loss), lr=[lr] * len(loss), hparams={"lr": lr, "seed": 0})
    if diverged_at is not None:
        h.diverged, h.diverged_at = True, diverged_at
    for step, acc in evals or []:
        h.record_eval(step, {"loss": 1.0, "accuracy": acc})
    return h


def test_loss_curves_one_trace_per_run_with_labels_from_varied_hparams():
    hs = [_hist([1.0, 0.5, 0.25], lr=0.1), _hist([1.0, 0.8, 0.6], lr=0.01)]
    fig = viz.loss_curves(hs)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["lr=0.1", "lr=0.01"]
    assert list(fig.data[0].y) == [1.0, 0.5, 0.25] and list(fig.data[0].x) == [0, 1, 2]
    assert fig.layout.yaxis.type == "log" and "log scale" in fig.layout.yaxis.title.text
    assert fig.layout.xaxis.title.text == "step"


def test_loss_curves_marks_divergence_and_draws_non_finite_as_gaps():
    h = _hist([1.0, 3.0, math.inf], lr=10.0, diverged_at=2)
    fig = viz.loss_curves({"big lr": h})
    line, marker = fig.data
    assert list(line.y) == [1.0, 3.0, None] and line.line.dash == "dash"
    assert list(marker.x) == [1] and list(marker.y) == [3.0] and marker.marker.symbol == "x"
    assert "diverged at step 2" in marker.name


def test_loss_curves_eval_metric_uses_eval_steps_and_linear_axis():
    h = _hist([1.0] * 11, evals=[(0, 0.3), (5, 0.6), (11, 0.9)])
    fig = viz.loss_curves(h, metric="accuracy")
    assert list(fig.data[0].x) == [0, 5, 11] and list(fig.data[0].y) == [0.3, 0.6, 0.9]
    assert fig.layout.yaxis.type == "linear"
    assert list(viz.loss_curves(h, metric="eval_loss").data[0].y) == [1.0, 1.0, 1.0]
    assert h.figure().data[0].name == "run"  # History.figure delegates here


def test_loss_curves_bad_input():
    with pytest.raises(ValueError, match="metric='nope'"):
        viz.loss_curves(_hist([1.0]), metric="nope")
    with pytest.raises(ValueError, match="labels has 1 entries for 2"):
        viz.loss_curves([_hist([1.0]), _hist([2.0])], labels=["a"])
    with pytest.raises(TypeError, match="histories"):
        viz.loss_curves([1, 2])


def test_spectrum_sorts_and_draws_reference():
    fig = viz.spectrum(torch.tensor([1.0, 3.0, 2.0]), reference={"2/lr": 2.5})
    stems, points, ref = fig.data
    assert list(points.x) == [1, 2, 3] and list(points.y) == [3.0, 2.0, 1.0]
    assert list(stems.y[:3]) == [0.0, 3.0, None]
    assert list(ref.y) == [2.5, 2.5] and "2/lr" in ref.name
    # several spectra, and an object with .values (an EigResult)
    res = type("EigResult", (), {"values": np.array([4.0, 1.0])})()
    fig = viz.spectrum({"init": [1.0, 0.5], "end": res})
    assert [t.name for t in fig.data if t.mode == "markers"] == ["init", "end"]


def test_density_log_drops_zeros_and_rug():
    grid = np.linspace(0, 1, 5)
    fig = viz.density(grid, [0.0, 1.0, 2.0, 1.0, 0.0], eigenvalues=[0.2, 0.8])
    assert list(fig.data[0].y) == [None, 1.0, 2.0, 1.0, None]
    assert list(fig.data[1].x) == [0.2, 0.8]
    with pytest.raises(ValueError, match="same length"):
        viz.density(grid, [1.0])


def test_heatmap_symmetric_centres_the_scale():
    m = np.array([[1.0, -3.0], [-3.0, 2.0]])
    fig = viz.heatmap(m, "example", "example", symmetric=True)
    hm = fig.data[0]
    assert hm.zmid == 0 and hm.zmin == -3 and hm.zmax == 3
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError, match="dimension"):
        viz.heatmap([1.0, 2.0])


def test_image2d_log_axis_cells_are_centred_geometrically():
    z = np.arange(6.0).reshape(2, 3)
    fig = viz.image2d(z, x=[0.01, 0.1, 1.0], y=[1.0, 2.0], log_x=True, x_label="lr")
    edges = np.asarray(fig.data[0].x)
    np.testing.assert_allclose(np.log10(edges), [-2.5, -1.5, -0.5, 0.5])
    np.testing.assert_allclose(fig.data[0].y, [0.5, 1.5, 2.5])
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "lr (log scale)"
    with pytest.raises(ValueError, match="positive"):
        viz.image2d(z, x=[0.0, 1.0, 2.0], log_x=True)
    with pytest.raises(ValueError, match="rows=y"):
        viz.image2d(z, x=[1.0, 2.0])


def test_tradeoff_curve_satisfies_mccandlish_relation():
    fig = viz.tradeoff([100, 50, math.nan], [800, 1600, 3200], [8, 32, 128], fit={"s_min": 20.0, "e_min": 700.0})
    measured, curve = fig.data[0], fig.data[1]
    assert list(measured.text) == ["B=8", "B=32"]  # the run that never reached the target is dropped
    s, e = np.asarray(curve.y), np.asarray(curve.x)
    np.testing.assert_allclose((s / 20 - 1) * (e / 700 - 1), 1.0, rtol=1e-9)
    assert "35" in curve.name  # B_crit = E_min / S_min
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    with pytest.raises(TypeError, match="s_min"):
        viz.tradeoff([1], [1], fit={"e_min": 1})
