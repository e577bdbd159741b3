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


def test_density_log_clips_at_a_floor_below_the_peak_and_says_so():
    grid = np.linspace(0, 1, 5)
    fig = viz.density(grid, [0.0, 1.0, 2.0, 1e-49, math.nan], eigenvalues=[0.2, 0.8])
    assert list(fig.data[0].y) == [2e-6, 1.0, 2.0, 2e-6, None]  # zero and 1e-49 drawn at 1e-6 x peak
    assert "floor 1e-06 \u00d7 peak" in fig.layout.yaxis.title.text
    assert list(fig.data[1].x) == [0.2, 0.8]
    # SLQ-like Gaussian tails: the drawn data spans at most the 6 decades asked for
    x = np.linspace(-5, 5, 200)
    y = np.exp(-x**2 / (2 * 0.05**2))
    fig = viz.density(x, y, floor=1e-4)
    drawn = np.array(fig.data[0].y, dtype=float)
    assert np.log10(drawn.max() / drawn.min()) == pytest.approx(4)
    assert viz.density(x, y, log_y=False).data[0].y[0] == pytest.approx(y[0])  # linear axis: unclipped
    with pytest.raises(ValueError, match="same length"):
        viz.density(grid, [1.0])
    with pytest.raises(ValueError, match="floor"):
        viz.density(x, y, floor=2.0)


def test_image2d_deep_zoom_is_labelled_as_offsets_from_the_centre():
    centre, width = 0.123456789012, 2e-9  # ~8 decades below the position
    x = np.geomspace(centre - width / 2, centre + width / 2, 16)
    y = np.linspace(1.0, 2.0, 4)  # a wide axis keeps absolute labels
    fig = viz.image2d(np.zeros((4, 16)), x, y, log_x=True, log_y=True, x_label="lr_in", y_label="lr_out")
    xa, edges = fig.layout.xaxis, np.asarray(fig.data[0].x)
    assert xa.type == "linear" and "lr_in \u2212 0.1234567890" in xa.title.text and "10<sup>-9</sup>" in xa.title.text
    assert 0.5 <= np.abs(edges).max() <= 10  # ticks are small multiples of the power of ten
    shown = float(xa.title.text.split("\u2212 ")[1].split()[0])
    np.testing.assert_allclose(shown + (edges[1:] + edges[:-1]) / 2 * 1e-9, x, rtol=0, atol=1e-15)  # cell centres
    assert np.allclose(np.diff(edges), np.diff(edges)[0], rtol=1e-3)  # evenly spaced cells
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "lr_out (log scale)"
    assert "0.1234567890" in fig.data[0].hovertemplate  # hover gives the absolute position
    # a negative centre is bracketed
    fig = viz.image2d(np.zeros((2, 2)), [-5.0, -5.0 + 1e-6], [0.0, 1.0])
    assert "\u2212 (-4.9999995)" in fig.layout.xaxis.title.text


def test_loss_curves_smooth_per_batch_losses_over_the_raw_ones():
    rng = np.random.default_rng(0)
    loss = np.exp(-np.arange(200) / 50) * rng.uniform(0.5, 1.5, 200)
    h = _hist(loss)
    h.hparams["batch_size"] = 16
    fig = viz.loss_curves(h)
    raw, smooth = fig.data
    assert raw.opacity == 0.3 and not raw.showlegend and "moving average, 0.9" in smooth.name
    np.testing.assert_allclose(smooth.y, viz.figures.ema(loss, 0.9))
    assert np.std(np.diff(smooth.y)) < np.std(np.diff(raw.y)) / 3  # visibly smoother
    h.hparams["batch_size"] = None  # full batch: not noisy, drawn raw
    assert len(viz.loss_curves(h).data) == 1 and len(viz.loss_curves(h, smooth=0.5).data) == 2


def test_ema_matches_the_recursive_definition_and_skips_gaps():
    y = np.array([1.0, 3.0, math.nan, 2.0, math.inf, 5.0])
    b, s, w, want = 0.7, 0.0, 0.0, []
    for v in y:
        if math.isfinite(v):
            s, w = b * s + (1 - b) * v, b * w + (1 - b)
            want.append(s / w)
        else:
            want.append(math.nan)
    np.testing.assert_allclose(viz.figures.ema(y, b), want)
    long = np.random.default_rng(1).normal(size=20_000)  # several chunks: no overflow of b^-k
    ref = viz.figures.ema(long[:5000], 0.9)
    np.testing.assert_allclose(viz.figures.ema(long, 0.9)[:5000], ref)
    assert np.isfinite(viz.figures.ema(long, 0.999)).all()
    with pytest.raises(ValueError, match="beta"):
        viz.figures.ema(y, 1.0)


def test_viz_does_not_import_train():
    import subprocess
    import sys

    code = ("import sys, labkit.viz as v; v.LivePlot; v.loss_curves; v.density; "
            "assert 'labkit.train' not in sys.modules, sorted(m for m in sys.modules if m.startswith('labkit'))")
    subprocess.run([sys.executable, "-c", code], check=True)


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


def test_figures_serialise_to_strict_json_whatever_non_finite_input():
    import json

    import plotly.io as pio

    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant} in the figure")

    nan, inf = math.nan, math.inf
    h = _hist([1.0, nan, inf], diverged_at=1)
    h.hparams["batch_size"] = 4
    figs = [viz.density([0, 1, 2], [1, nan, inf], eigenvalues=[nan, 1.0]), viz.spectrum([1.0, nan, inf, -1.0]),
            viz.image2d([[nan, inf], [1, 2]]), viz.heatmap([[nan, inf], [1, 2]], symmetric=True),
            viz.tradeoff([1, nan], [2, inf], [1, 2], fit={"s_min": 1, "e_min": 2}), viz.loss_curves(h)]
    for fig in figs:
        json.loads(pio.to_json(fig, validate=False), parse_constant=refuse)


def test_a_diverging_run_leaves_a_log_loss_plot_through_the_top():
    ok, boom = _hist([1.0, 0.5, 0.25, 0.2]), _hist([1.0, 1e3, 1e9, 1e30, math.inf], lr=9.0, diverged_at=4)
    fig = viz.loss_curves([ok, boom])
    y = fig.data[1].y
    assert list(y[:2]) == [1.0, 1e3] and all(v is None for v in y[2:])  # above 1e4 x the starting loss: cut
    assert fig.data[2].y == (1e3,) and "diverged at step 4" in fig.data[2].name  # x where it left the plot
    assert list(viz.loss_curves([ok, boom], log_y=False).data[1].y[:4]) == [1.0, 1e3, 1e9, 1e30]  # linear: as is
    from labkit.viz import LivePlot

    live = LivePlot(backend="static")
    for t, v in enumerate([1.0, 1e3, 1e9, 1e30]):
        live.append(t, loss=np.array([1.0 / (t + 1), v]))
    drawn = {t["name"]: t["y"] for t in live._figure_dict()["data"]}
    assert drawn["loss: member 1"] == [1.0, 1e3, None, None] and drawn["loss: member 0"][-1] == 0.25


def test_decade_ticks_only_on_narrow_log_axes():
    """07's four-panel figure: narrow log-x panels get one label per decade (no "10²2"); wide or linear axes
    keep plotly's ticks."""
    from plotly.subplots import make_subplots

    from labkit.viz import theme

    fig = make_subplots(rows=1, cols=4)
    fig.update_xaxes(type="log")
    fig.update_xaxes(type="linear", row=1, col=4)
    theme.decade_ticks(fig)
    assert [a.dtick for a in fig.select_xaxes()] == [1, 1, 1, None]
    wide = make_subplots(rows=1, cols=1)
    wide.update_xaxes(type="log")
    assert next(iter(theme.decade_ticks(wide).select_xaxes())).dtick is None
    layout = {"xaxis": {"type": "log", "domain": [0.0, 0.2]}, "xaxis2": {"type": "log", "domain": [0.5, 1.0]}}
    assert theme.decade_ticks(layout)["xaxis"]["dtick"] == 1 and "dtick" not in layout["xaxis2"]
