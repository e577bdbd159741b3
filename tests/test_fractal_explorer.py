"""The explorer works headless: scan, zoom, back, depth-limit error, exports; zoom_sequence frames."""

import numpy as np
import pytest

from labkit.fractal import Experiment, ScanResult, zoom_sequence


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
