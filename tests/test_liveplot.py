"""LivePlot: every backend holds the expected traces; throttling bounds redraws; the final state is drawn."""

import itertools
import math
import time

import numpy as np
import pytest

from labkit import data, models, notebook
from labkit.train import fit, fit_many
from labkit.viz import LivePlot

PLOTLY = "application/vnd.plotly.v1+json"


def _drawn(live):
    """The figure dict the Output widget currently shows."""
    (out,) = live.widget.outputs
    return out["data"][PLOTLY]


def _by_name(fig):
    return {t["name"]: t for t in fig["data"]}


@pytest.fixture(scope="module")
def ds():
    return data.gaussian_mixture(96, dim=2, classes=3, seed=0)


def _fit(ds, live, steps=25):
    return fit(models.mlp(2, [8], 3, seed=0), ds, lr=0.2, steps=steps, eval_every=5, progress=False, callbacks=[live])


def test_output_backend_shows_the_final_run_exactly(ds):
    live = LivePlot(backend="output")
    hist = _fit(ds, live)
    traces = _by_name(_drawn(live))
    assert set(traces) == {"loss", "eval loss", "eval accuracy"}
    np.testing.assert_allclose(traces["loss"]["y"], hist.loss)
    assert traces["loss"]["x"] == list(range(len(hist.loss)))
    # eval series are recorded at the eval steps only (plus the final one after the last update)
    assert traces["eval accuracy"]["x"] == hist.eval_steps
    np.testing.assert_allclose(traces["eval accuracy"]["y"], hist.eval["accuracy"])
    layout = _drawn(live)["layout"]
    assert layout["yaxis"]["type"] == "log" and layout["yaxis2"]["type"] == "linear"
    assert traces["eval accuracy"]["xaxis"] == "x2"


def test_figurewidget_backend_holds_the_same_traces(ds):
    pytest.importorskip("anywidget")
    live = LivePlot(backend="figurewidget")
    hist = _fit(ds, live)
    fw = live.widget
    assert [t.name for t in fw.data] == ["loss", "eval loss", "eval accuracy"]
    np.testing.assert_allclose(fw.data[0].y, hist.loss)
    assert fw.layout.yaxis.type == "log"


def test_static_backend_draws_nothing_while_running_and_returns_the_figure(ds):
    live = LivePlot(backend="static")
    hist = _fit(ds, live)
    assert live.redraws == 0 and live.widget is None
    fig = live.figure()
    assert [t.name for t in fig.data] == ["loss", "eval loss", "eval accuracy"]
    np.testing.assert_allclose(fig.data[0].y, hist.loss)
    assert PLOTLY in live._repr_mimebundle_()


def test_auto_backend_is_static_outside_a_kernel_and_overridable(monkeypatch):
    monkeypatch.delenv("LABKIT_LIVEPLOT", raising=False)
    monkeypatch.delenv("LABKIT_ENV", raising=False)
    assert notebook.environment() == "plain"
    assert LivePlot().backend == "static"
    monkeypatch.setenv("LABKIT_LIVEPLOT", "output")
    assert LivePlot().backend == "output"
    monkeypatch.setenv("LABKIT_ENV", "colab")
    monkeypatch.setenv("LABKIT_LIVEPLOT", "")
    assert LivePlot().backend == "output"
    monkeypatch.setenv("LABKIT_ENV", "nope")
    with pytest.raises(ValueError, match="LABKIT_ENV='nope'"):
        notebook.environment()
    monkeypatch.setenv("LABKIT_ENV", "colab")
    live = LivePlot(backend="output")
    live.append(0, loss=1.0)
    assert "cdn.plot.ly" in live.widget.outputs[0]["data"]["text/html"]  # self-contained HTML on Colab


def test_throttling_bounds_redraws_under_a_fake_clock():
    live = LivePlot(backend="output", fps=4)
    ticks = itertools.count()
    live._clock = lambda: next(ticks) * 1e-3  # 1 ms per clock reading: 10,000 appends span ~10-20 s
    for t in range(10_000):
        live.append(t, loss=1.0 / (t + 1))
    elapsed = live._clock()
    assert 2 <= live.redraws <= elapsed * 4 + 2
    before = live.redraws
    live.flush()  # the final state is always drawn
    assert live.redraws == before + 1
    y = _by_name(_drawn(live))["loss"]["y"]
    assert y[-1] == pytest.approx(1e-4) and len(y) <= live.max_points
    live.flush()
    assert live.redraws == before + 1  # nothing new: no redraw
    live.clear()
    live.append(0, loss=2.0)  # the first point after a clear is drawn at once, whatever the throttle
    assert live.redraws == before + 2 and _by_name(_drawn(live))["loss"]["y"] == [2.0]
    live.append(1, loss=1.0)
    assert live.redraws == before + 2


def test_throttling_in_a_real_tight_loop():
    live = LivePlot(backend="output", fps=4)
    start = time.monotonic()
    for t in range(10_000):
        live.append(t, loss=float(t), acc=0.5)
    elapsed = time.monotonic() - start
    assert live.redraws <= elapsed * 4 + 2
    live.flush()
    x, y = live.series("loss")
    assert len(x) == 10_000 and y[-1] == 9999.0  # every value is kept, only drawing is thinned


def test_panels_references_and_thinning():
    live = LivePlot({"loss": ["loss"], "sharpness": ["sharpness"]}, backend="output", max_points=100)
    live.reference("sharpness", 2 / 0.05, "2/lr")
    for t in range(1000):
        live.append(t, loss=math.exp(-t / 100), sharpness=t / 25)
    live.flush()
    fig = _drawn(live)
    traces = _by_name(fig)
    assert set(traces) == {"loss", "sharpness", "2/lr = 40"}
    ref = traces["2/lr = 40"]
    assert ref["xaxis"] == "x2" and ref["y"] == [40.0, 40.0] and ref["x"] == [0.0, 999.0]
    assert len(traces["sharpness"]["x"]) == 100 and traces["sharpness"]["x"][-1] == 999.0
    assert fig["layout"]["yaxis"]["type"] == "log" and fig["layout"]["yaxis2"]["type"] == "linear"
    live.reference("sharpness", 20.0, "2/lr")  # moving a reference replaces it
    assert "2/lr = 20" in _by_name(live._figure_dict()) and "2/lr = 40" not in _by_name(live._figure_dict())


def test_fit_many_members_and_summary(ds):
    def make(seed):
        return models.mlp(2, [8], 3, seed=seed)

    hp = {"lr": [0.1, 0.3, 1e4], "seed": [0, 1, 2]}
    live = LivePlot(backend="output", member_labels=["a", "b", "c"])
    hs = fit_many(make, ds, hparams=hp, steps=12, eval_every=4, progress=False, callbacks=[live])
    traces = _by_name(_drawn(live))
    assert {"loss: a", "loss: b", "loss: c"} <= set(traces)
    np.testing.assert_allclose(traces["loss: a"]["y"], hs[0].loss)
    assert hs[2].diverged and all(v is None for v in traces["loss: c"]["y"][hs[2].diverged_at:])

    live = LivePlot(backend="output", max_members=2)
    fit_many(make, ds, hparams=hp, steps=12, eval_every=4, progress=False, callbacks=[live])
    traces = _by_name(_drawn(live))
    assert {"loss: median", "loss: min-max of 3"} <= set(traces)
    med = np.median([[h.loss[t] for h in hs[:2]] for t in range(12)], axis=1)  # diverged member ignored
    got = np.array(traces["loss: median"]["y"], dtype=float)
    np.testing.assert_allclose(got[hs[2].diverged_at + 1:], med[hs[2].diverged_at + 1:])


def test_final_state_drawn_when_the_cell_ends(monkeypatch):
    class Events:
        def __init__(self):
            self.hooks = []

        def register(self, event, fn):
            self.hooks.append(fn)

        def unregister(self, event, fn):
            self.hooks.remove(fn)

    shell = type("Shell", (), {"events": Events(), "kernel": object(), "execution_count": 1})()
    monkeypatch.setattr(notebook, "ipython", lambda: shell)
    live = LivePlot(backend="output")
    live._shown_at = -1  # pretend it is on screen already
    live.append(0, loss=1.0)  # drawn at once
    live.append(1, loss=0.5)  # throttled: waits for the hook
    assert live.redraws == 1 and len(shell.events.hooks) == 1
    shell.events.hooks[0]()
    assert live.redraws == 2 and shell.events.hooks == []
    assert _by_name(_drawn(live))["loss"]["y"] == [1.0, 0.5]


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend='nope'"):
        LivePlot(backend="nope")
    with pytest.raises(ValueError, match="fps"):
        LivePlot(fps=0)
    with pytest.raises(ValueError, match="at least one"):
        LivePlot(backend="static").append(0)
    with pytest.raises(TypeError, match="panels"):
        LivePlot(panels=3)
    with pytest.raises(KeyError, match="no series"):
        LivePlot(backend="static").series("loss")


def test_minibatch_loss_is_drawn_raw_and_smoothed(ds):
    live = LivePlot(backend="output")
    hist = fit(models.mlp(2, [8], 3, seed=0), ds, lr=0.2, steps=60, batch_size=8, progress=False, callbacks=[live])
    traces = _by_name(_drawn(live))
    raw, smooth = traces["loss"], traces["loss (moving average, 0.9)"]
    np.testing.assert_allclose(raw["y"], hist.loss)
    assert raw["opacity"] == 0.3 and smooth["line"]["width"] == 2 and raw["legendgroup"] == smooth["legendgroup"]
    from labkit.viz.figures import ema

    np.testing.assert_allclose(smooth["y"], ema(hist.loss, 0.9), rtol=1e-12)  # incremental == batch EMA
    # full batch: not noisy, raw only (see test_output_backend_shows_the_final_run_exactly); explicit names win
    live = LivePlot(backend="output", smoothed=["sharpness"], smooth=0.5)
    for t in range(5):
        live.append(t, loss=1.0 / (t + 1), sharpness=float(t % 2))
    names = set(_by_name(live._figure_dict()))
    assert names == {"loss", "sharpness", "sharpness (moving average, 0.5)"}
    assert set(_by_name(LivePlot(backend="output", smooth=0)._figure_dict())) == set()
    with pytest.raises(ValueError, match="smooth"):
        LivePlot(smooth=1.0)
    with pytest.raises(TypeError, match="smoothed"):
        LivePlot(smoothed="loss")


def test_population_smoothing_and_divergence_stay_gaps(ds):
    hp = {"lr": [0.1, 1e4], "seed": [0, 1]}
    live = LivePlot(backend="output", member_labels=["ok", "boom"])
    hs = fit_many(lambda s: models.mlp(2, [8], 3, seed=s), ds, hparams=hp, steps=30, batch_size=8, progress=False,
                  callbacks=[live])
    traces = _by_name(_drawn(live))
    assert {"loss: ok", "loss: ok (moving average, 0.9)", "loss: boom (moving average, 0.9)"} <= set(traces)
    assert hs[1].diverged
    assert all(v is None for v in traces["loss: boom (moving average, 0.9)"]["y"][hs[1].diverged_at + 1:])


def test_figure_json_never_holds_nan_or_inf():
    import json

    for backend in ("output", "static"):
        live = LivePlot({"loss": ["loss"], "ref": ["x"]}, backend=backend, smoothed=["loss"])
        live.reference("ref", math.inf, "infinite")
        live.reference("ref", math.nan, "undefined")
        for t, v in enumerate([1.0, math.nan, math.inf, -math.inf, 0.5]):
            live.append(t, loss=v, x=np.array([v, 1.0]))
        json.dumps(live._figure_dict(), allow_nan=False)  # raises on NaN / Infinity


def test_a_diverged_members_eval_line_ends_where_its_training_loss_did():
    """fit_many keeps evaluating a diverged member (its eval loss can look finite, e.g. 0.693 from saturated
    logits): the live figure must not draw that member's eval line past the divergence; the healthy member's
    eval line and a single run's series are untouched."""
    from labkit.viz import LivePlot

    live = LivePlot(backend="static", member_labels=["ok", "diverged"])
    for t in range(6):
        loss = np.array([1.0 / (t + 1), 1.0 if t < 3 else np.inf])
        live.append(t, loss=loss, eval_loss=np.array([1.1 / (t + 1), 0.693]))
    traces = {tr["name"]: tr["y"] for tr in live.figure().to_dict()["data"]}
    assert traces["eval_loss: diverged"] == [0.693, 0.693, 0.693, None, None, None]
    assert None not in traces["eval_loss: ok"]
