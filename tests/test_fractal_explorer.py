"""The explorer works headless: scan, zoom, back, depth-limit error, exports; zoom_sequence frames."""

import numpy as np
import pytest

from labkit.fractal import Experiment, ScanResult, scan, zoom_sequence


def test_explorer_headless(tmp_path):
    from labkit.widgets import fractal_explorer

    ex = fractal_explorer("quick", resolution=16, steps=30, out_dir=tmp_path)
    assert ex.result is None  # nothing runs before the user asks
    ex.run()
    res = ex.wait(60)
    assert isinstance(res, ScanResult) and ex.error is None and res.converged.shape == (16, 16)
    assert np.isfinite(np.asarray(ex.fig.data[0].z, dtype=float)).all()
    ex.zoom_at(*res.nearest_boundary(), factor=10)
    ex.wait(60)
    assert len(ex.windows) == 2 and ex.result.x_range == ex.windows[-1][0]
    ex.zoom_to((1.0, 1.0 + 1e-15), (1.0, 2.0))  # too deep: a clear message, no crash, no new window
    assert "too deep" in ex.error and len(ex.windows) == 2
    ex.back()
    ex.wait(60)
    assert len(ex.windows) == 1
    assert ex.export_png().read_bytes()[:4] == b"\x89PNG"
    ex._on_relayout(None, [0.0, 1.0], [0.0, 1.0])  # a box zoom on log axes: 10^0 .. 10^1
    ex.wait(60)
    assert ex.windows[-1] == ((1.0, 10.0), (1.0, 10.0))
    ex.export_sequence(tmp_path / "seq", frames=3, background=False)
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == ["frame_000.png", "frame_001.png", "frame_002.png"]


def test_zoom_sequence_ends_at_target():
    exp = Experiment.preset("quick", steps=20)
    frames = zoom_sequence(exp, ((1e-2, 1e4), (1e-2, 1e4)), ((1.0, 2.0), (3.0, 4.0)), 3, 8)
    assert len(frames) == 3
    assert np.allclose(frames[0].x_range, (1e-2, 1e4)) and np.allclose(frames[-1].y_range, (3.0, 4.0))
    w = [np.log(f.x_range[1] / f.x_range[0]) for f in frames]
    assert w[0] > w[1] > w[2]


def test_zoom_sequence_refuses_more_frames_than_memory_allows(tmp_path):
    exp = Experiment.preset("quick", steps=20)
    window = ((1e-2, 1e4), (1e-2, 1e4))
    with pytest.raises(ValueError, match="100 frames of 64x64 need at least"):
        zoom_sequence(exp, window, window, 100, 64, folder=tmp_path / "seq", max_memory=64 * 64 * 9 * 50)
    assert not (tmp_path / "seq").exists()  # refused before anything was written


def _record_messages(fig):
    """Every state message the FigureWidget sends to the page."""
    sent = []
    fig.comm.send = lambda data=None, metadata=None, buffers=None, **kw: sent.append(data)
    return sent


def test_explorer_sends_no_nan_or_inf_to_the_page():
    """ipykernel printed 'Out of range float values are not JSON compliant' for NaN in figure updates."""
    import json

    from labkit.widgets import fractal_explorer

    ex = fractal_explorer("quick", resolution=16, steps=20)
    assert [list(row) for row in ex.fig.data[0].z] == [[None]]
    sent = _record_messages(ex.fig)
    exp = Experiment.preset("quick", steps=20)
    calls = []
    with pytest.warns(UserWarning, match="partial"):
        part = scan(exp, (1e-1, 1e3), (1e-1, 1e3), 16, chunk_size=64, progress=False,
                    cancel=lambda: len(calls) >= 1 or bool(calls.append(1)))
    assert np.isnan(part.image()).any()
    ex._draw(part)  # a half-filled image, as during a scan
    ex.run()
    ex.wait(60)
    assert ex.error is None and len(sent) > 2
    for message in sent:
        json.dumps(message, allow_nan=False)  # raises on NaN or inf


def test_explorer_runs_on_the_runner_and_never_sets_threads_in_its_worker(monkeypatch):
    import threading

    import torch

    from labkit.widgets import Runner, fractal_explorer

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(threading.current_thread().name))
    ex = fractal_explorer("quick", resolution=16, steps=20, threads=2)
    assert isinstance(ex.runner, Runner) and ex.scan_button is ex.runner.run_button
    assert calls in ([], ["MainThread"])  # decided at construction, on the main thread (skipped if already 2)
    ex.run()
    ex.wait(60)
    assert calls in ([], ["MainThread"]) and ex.result is not None
    assert ex.status.value.startswith("done in") and ex.scan_button.description == "Scan"


def test_explorer_errors_end_the_run_visibly(monkeypatch):
    from labkit.fractal import scanner
    from labkit.widgets import fractal_explorer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("<stop>")

    monkeypatch.setattr(scanner, "scan", interrupted)
    ex = fractal_explorer("quick", resolution=16, steps=20)
    ex.run()
    ex.wait(60)
    assert not ex.running and "KeyboardInterrupt" in ex.error
    assert "running" not in ex.status.value and "scanning" not in ex.status.value
    assert "&lt;stop&gt;" in ex.status.value and not ex.scan_button.disabled


def test_explorer_shows_a_dimension_only_when_defined(monkeypatch):
    from labkit.fractal import result
    from labkit.widgets import fractal_explorer

    ex = fractal_explorer("quick", resolution=16, steps=20)
    monkeypatch.setattr(result.ScanResult, "dimension", lambda self: float("nan"))
    ex.run()
    ex.wait(60)
    assert "not enough scales" in ex.info.value and "nan" not in ex.info.value
    monkeypatch.setattr(result.ScanResult, "dimension", lambda self: 1.25)
    ex.run()
    ex.wait(60)
    assert "boundary dimension</b> 1.250" in ex.info.value
    ex.zoom_to((1e-3, 2e-3), (1e-3, 2e-3))  # deep in the converged phase: no boundary at all
    ex.wait(60)
    assert "no boundary" in ex.info.value


def test_explorer_and_cli_never_print_a_boundary_dimension_below_1(monkeypatch, capsys, tmp_path):
    """A boundary is at least a curve: a box count below 1 (0.875 on a 64-pixel zoom) is not a measurement.

    Control: 1.25 on the same window is printed as a number (the text depends on the value, not the window).
    """
    import re

    from labkit import cli
    from labkit.fractal import result
    from labkit.widgets import fractal_explorer

    below = re.compile(r"boundary dimension(</b>)? 0\.\d")
    monkeypatch.setattr(result.ScanResult, "dimension", lambda self: 0.875)
    ex = fractal_explorer("quick", resolution=16, steps=20)
    ex.run()
    ex.wait(60)
    assert "not resolved at this size" in ex.info.value and not below.search(ex.info.value)
    args = ["fractal", "--preset", "quick", "--quiet", "--resolution", "16", "--steps", "20", "--out"]
    cli.main([*args, str(tmp_path / "scan")])
    out = capsys.readouterr().out
    assert "not resolved at this size" in out and not below.search(out)
    monkeypatch.setattr(result.ScanResult, "dimension", lambda self: 1.25)
    cli.main([*args, str(tmp_path / "scan2")])
    assert "boundary dimension 1.250" in capsys.readouterr().out


def test_explorer_colours_by_sharpness_with_the_band_and_the_boundary():
    from labkit.widgets import fractal_explorer

    ex = fractal_explorer("quick", resolution=16, steps=30, colour="sharpness")
    ex.run()
    res = ex.wait(60)
    assert ex.error is None and res.sharpness is not None
    img = np.asarray(ex.fig.data[0].z, dtype=float)
    np.testing.assert_allclose(img, np.clip(np.log10(res.sharpness / 2), -1, 1))  # white at the limit 2
    band, boundary = ex.fig.data[1], ex.fig.data[2]
    assert band.visible and list(band.contours.value) == [2.0, 4.0]
    assert boundary.visible and np.array_equal(np.asarray(boundary.z, dtype=float), res.converged.astype(float))
    ex.zoom_at(*res.nearest_boundary(), factor=10)  # survives a zoom: the new window is measured too
    assert ex.wait(60).sharpness.shape == (16, 16) and ex.error is None
