"""box_counting_dimension on sets of known dimension, the PNG writer, the fractal-over-decades check, the CLI."""

import re
import struct
import zlib

import numpy as np
import pytest

from labkit.fractal import box_counting_dimension, write_png


def _sierpinski(k):
    i, j = np.indices((2**k, 2**k))
    return (i & j) == 0


def _carpet(k):
    n = 3**k
    i, j = np.indices((n, n))
    m = np.ones((n, n), bool)
    for _ in range(k):
        m &= ~((i % 3 == 1) & (j % 3 == 1))
        i, j = i // 3, j // 3
    return m


def _draw(points, n):
    """Rasterise a polyline given in [0, 1]^2 onto an n x n image (dense sampling along each segment)."""
    t = np.linspace(0, 1, 16)[:, None, None]
    seg = (points[:-1][None] * (1 - t) + points[1:][None] * t).reshape(-1, 2)
    m = np.zeros((n, n), bool)
    ij = np.clip((seg * (n - 1)).astype(int), 0, n - 1)
    m[ij[:, 1], ij[:, 0]] = True
    return m


def _koch(n=1024, level=7):
    pts = np.array([[0.0, 0.1], [1.0, 0.1]])
    rot = np.array([[0.5, -np.sqrt(3) / 2], [np.sqrt(3) / 2, 0.5]])
    for _ in range(level):
        a, b = pts[:-1], pts[1:]
        d = (b - a) / 3
        new = np.stack([a, a + d, a + d + d @ rot.T, a + 2 * d], 1).reshape(-1, 2)
        pts = np.vstack([new, pts[-1:]])
    return _draw(pts, n)


def _circle(n=1024):
    th = np.linspace(0, 2 * np.pi, 4000)
    return _draw(np.stack([0.5 + 0.4 * np.cos(th), 0.5 + 0.4 * np.sin(th)], 1), n)


def _line(n=1024):
    return _draw(np.linspace([0.05, 0.1], [0.95, 0.8], 2000), n)


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("line", _line, 1.0),
        ("square", lambda: np.ones((1024, 1024), bool), 2.0),
        ("circle", _circle, 1.0),
        ("sierpinski triangle", lambda: _sierpinski(10), np.log(3) / np.log(2)),
        ("sierpinski carpet", lambda: _carpet(6), np.log(8) / np.log(3)),
        ("koch curve", _koch, np.log(4) / np.log(3)),
    ],
)
def test_box_counting_known_dimensions(name, make, expected):
    dim, sizes, counts = box_counting_dimension(make())
    assert abs(dim - expected) < 0.05, f"{name}: {dim:.3f} vs {expected:.3f}"
    assert len(sizes) >= 3 and len(sizes) == len(counts) and np.all(np.diff(counts) <= 0)


def test_box_counting_degenerate():
    assert np.isnan(box_counting_dimension(np.zeros((64, 64), bool))[0])
    with pytest.raises(ValueError, match="2-D"):
        box_counting_dimension(np.zeros(10, bool))


def test_png_writer_roundtrip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = write_png(tmp_path / "a.png", rgb).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (7, 5)
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(5, 1 + 7 * 3)
    np.testing.assert_array_equal(raw[:, 1:].reshape(5, 7, 3), rgb)


def test_cli_writes_npz_and_png(tmp_path, capsys):
    from labkit.cli import main

    out = tmp_path / "sub" / "quick"
    code = main(["fractal", "--preset", "quick", "--resolution", "6", "--steps", "20", "--out", str(out), "--quiet"])
    assert code == 0
    from labkit.fractal import ScanResult

    res = ScanResult.load(out.with_suffix(".npz"))
    assert res.converged.shape == (6, 6) and res.experiment.steps == 20
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "network-steps/s" in capsys.readouterr().out
    assert main(["fractal", "--resolution", "1", "--out", str(out), "--quiet"]) == 2


def test_cli_keeps_the_users_name_and_refuses_a_folder(tmp_path, capsys):
    from labkit.cli import main

    args = ["fractal", "--resolution", "6", "--steps", "20", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "f.v1")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.v1.npz", "f.v1.png"]  # not f.npz / f.png
    assert f"wrote {tmp_path / 'f.v1.npz'}, {tmp_path / 'f.v1.png'}" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path)]) == 1  # a folder: refused in one line
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1
    assert not tmp_path.with_name(tmp_path.name + ".npz").exists()
    (tmp_path / "file").write_text("")
    assert main([*args, "--out", str(tmp_path / "file" / "x")]) == 1
    assert "a file of that name exists" in capsys.readouterr().err


def test_cli_prints_a_dimension_only_when_defined(tmp_path, capsys, monkeypatch):
    from labkit.cli import main
    from labkit.fractal import result

    monkeypatch.setattr(result.ScanResult, "dimension", lambda self: float("nan"))  # too few scales
    assert main(["fractal", "--resolution", "8", "--steps", "20", "--quiet", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "boundary dimension undefined" in out and "nan" not in out.lower().replace("undefined", "")
    monkeypatch.setattr(result.ScanResult, "dimension", lambda self: 1.234)
    assert main(["fractal", "--resolution", "8", "--steps", "20", "--quiet", "--out", str(tmp_path / "a")]) == 0
    assert "boundary dimension 1.234" in capsys.readouterr().out


def test_cli_interrupted_scan_writes_a_result_that_says_partial(tmp_path, capsys, monkeypatch):
    from labkit.cli import main
    from labkit.fractal import ScanResult, scanner

    real = scanner._train_chunk
    calls = []

    def interrupt_on_second_chunk(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(scanner, "_train_chunk", interrupt_on_second_chunk)
    code = main(["fractal", "--resolution", "16", "--steps", "20", "--chunk", "64", "--quiet",
                 "--out", str(tmp_path / "p")])
    captured = capsys.readouterr()
    assert code == 130
    assert "PARTIAL (64 of 256 cells done" in captured.out and "not scanned" in captured.err
    res = ScanResult.load(tmp_path / "p.npz")
    assert not res.complete and res.cells_done == 64


def test_cli_figure_export_falls_back_to_html_without_a_renderer(tmp_path, capsys, monkeypatch):
    import plotly.graph_objects as go

    from labkit.cli import main

    def no_kaleido(self, *args, **kwargs):
        raise ValueError("Image export using the \"kaleido\" engine requires the kaleido package")

    import importlib.util

    monkeypatch.setattr(go.Figure, "to_image", no_kaleido)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else
                        real_find_spec(name, *a))
    assert main(["fractal", "--resolution", "6", "--steps", "20", "--quiet", "--figure",
                 "--out", str(tmp_path / "q")]) == 0
    out, err = capsys.readouterr()
    assert "kaleido is not installed (pip install kaleido), so the figure will be a self-contained HTML file" in err
    assert re.search(r"\d+\.\d MB\)", out), out  # the size is said
    html = tmp_path / "q-figure.png.html"
    assert html.is_file() and "self-contained HTML figure instead" in out and "kaleido" in out
    text = html.read_text()
    assert "colorbar" in text and "input-layer learning rate" in text and "converged (blue)" in text
    assert '<script src="https://cdn' not in text and len(text) > 1_000_000  # plotly.js inlined: opens offline

    monkeypatch.setattr(go.Figure, "to_image", lambda self, format, **kw: b"\x89PNG fake " + format.encode())
    assert main(["fractal", "--resolution", "6", "--steps", "20", "--quiet", "--figure",
                 "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r-figure.png").read_bytes() == b"\x89PNG fake png"
