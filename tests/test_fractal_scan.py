"""Every cell of a scan against a plain per-network reference loop (autograd, float64)."""

import math

import numpy as np
import pytest
import torch

from labkit.fractal import Experiment, ScanResult, scan

_PHI = {  # (phi, phi') of the paper's hidden nonlinearities
    "tanh": (lambda z: np.tanh(np.sqrt(2) * z), lambda z: np.sqrt(2) / np.cosh(np.sqrt(2) * z) ** 2),
    "relu": (lambda z: np.sqrt(2) * np.maximum(z, 0), lambda z: np.sqrt(2) * (z > 0)),
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
}


def reference_cell(exp: Experiment, lr_in: float, lr_out: float, offset: float = 0.0) -> tuple[bool, float]:
    """Train one network alone, plainly: W0, W1 as drawn, gradient descent on mean (f - y)^2."""
    x, y = (t.numpy() for t in exp.data())
    w0, w1 = (t.numpy().copy() for t in exp.init_weights())
    idx = exp.batch_indices()
    offset_axes = exp.axes == ("offset", "lr")
    if offset_axes and not exp.offset_every_step:
        w0 += offset
    d, h = exp.input_dim, exp.width
    phi, dphi = _PHI[exp.nonlinearity]
    losses = []
    with np.errstate(all="ignore"):
        for t in range(exp.steps):
            if offset_axes and exp.offset_every_step:
                w0 += offset
            z = x @ w0 / np.sqrt(d)  # (n, h)
            hid = phi(z)
            f = hid @ w1 / h
            losses.append(np.mean((f - y) ** 2))  # full-batch loss of theta_t
            xb, yb = x, y
            if idx is not None:  # the gradient on this step's mini-batch
                xb, yb = x[idx[t].numpy()], y[idx[t].numpy()]
                z = xb @ w0 / np.sqrt(d)
                hid = phi(z)
                f = hid @ w1 / h
            df = 2 * (f - yb) / len(xb)  # dL/df  (b, 1)
            g1 = hid.T @ df / h
            g0 = xb.T @ ((df @ w1.T / h) * dphi(z)) / np.sqrt(d)
            w0 -= lr_in * g0
            w1 -= lr_out * g1
    nl = np.array(losses) / losses[0]
    nl[~np.isfinite(nl)] = 1e6
    nl = np.clip(nl, np.finfo(float).tiny, 1e6)
    conv = nl[-exp.tail :].mean() < 1
    return bool(conv), float(-nl.sum() if conv else (1 / nl).sum())


def test_reference_gradient_is_autograd():
    """The test's hand-written reference gradient equals torch autograd (so the reference is trustworthy)."""
    for name in ("tanh", "relu", "identity"):
        exp = Experiment(width=4, nonlinearity=name, n_points=7, steps=20)
        x, y = exp.data()
        w0, w1 = (t.clone().requires_grad_(True) for t in exp.init_weights())
        phi = {"tanh": lambda z: torch.tanh(math.sqrt(2) * z), "relu": lambda z: math.sqrt(2) * torch.relu(z),
               "identity": lambda z: z}[name]
        loss = ((phi(x @ w0 / 2) @ w1 / 4 - y) ** 2).mean()
        g0, g1 = torch.autograd.grad(loss, [w0, w1])
        xn, yn, w0n, w1n = x.numpy(), y.numpy(), w0.detach().numpy(), w1.detach().numpy()
        z = xn @ w0n / 2
        df = 2 * (_PHI[name][0](z) @ w1n / 4 - yn) / 7
        np.testing.assert_allclose(_PHI[name][0](z).T @ df / 4, g1.numpy(), rtol=1e-12)
        np.testing.assert_allclose(xn.T @ ((df @ w1n.T / 4) * _PHI[name][1](z)) / 2, g0.numpy(), rtol=1e-12)


# width 8 (72 points) keeps the per-network reference loops fast; the scan code path is the same as at width 16
_SMALL = dict(width=8, steps=100)
def rounding_insensitive(exp, xr, yr, res, rtol=1e-9):
    """Cells whose score moves by < rtol when every coordinate moves by ~2 units in the last place."""
    bump = 1 + 4.4e-16
    log_x = exp.axes[0] != "offset"
    xr2 = (xr[0] * bump, xr[1] * bump) if log_x else (xr[0] + 4.4e-16, xr[1] + 4.4e-16)
    other = scan(exp, xr2, (yr[0] * bump, yr[1] * bump), res.resolution, progress=False)
    return (other.converged == res.converged) & (np.abs(other.score - res.score) <= rtol * np.abs(res.score))


CASES = {
    "tanh": (Experiment.preset("paper", **_SMALL), (1e-1, 1e3), (1e-1, 1e3)),
    "relu": (Experiment.preset("relu", **_SMALL), (1e-1, 1e3), (1e-2, 1e2)),
    "identity": (Experiment.preset("identity", **_SMALL), (1e-1, 1e3), (1e-1, 1e3)),
    "minibatch": (Experiment.preset("minibatch", **_SMALL), (1e-1, 1e3), (1e-1, 1e3)),
    "offset": (Experiment.preset("offset", **_SMALL), (-2.0, 2.0), (1e-1, 1e3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_cell_matches_reference_loop(case):
    exp, xr, yr = CASES[case]
    res = scan(exp, xr, yr, 24, progress=False)
    assert res.complete and res.converged.shape == (24, 24)
    conv = np.zeros((24, 24), bool)
    score = np.zeros((24, 24))
    for i, yv in enumerate(res.y):
        for j, xv in enumerate(res.x):
            if exp.axes == ("lr_in", "lr_out"):
                conv[i, j], score[i, j] = reference_cell(exp, xv, yv)
            else:
                conv[i, j], score[i, j] = reference_cell(exp, yv, yv, xv)
    assert 0.05 < conv.mean() < 0.95, "the window must cross the boundary"
    # a cell is "on the boundary" when a 4-neighbour is in the other phase
    pad = np.pad(conv, 1, mode="edge")
    nb_other = np.zeros_like(conv)
    for di, dj in ((0, 1), (2, 1), (1, 0), (1, 2)):
        nb_other |= pad[di : di + 24, dj : dj + 24] != conv
    differ = res.converged != conv
    assert differ.sum() <= 0.01 * conv.size, f"{differ.sum()} cells differ"
    assert not (differ & ~nb_other).any(), "a cell away from the boundary has the wrong phase"
    # Converged cells can still be chaotic (edge-of-stability oscillations): there a 2-ulp change of the learning
    # rate changes the score by up to ~10% in ANY implementation (the reference loop included). Compare scores to
    # 1e-6 on the converged cells away from the boundary that are not rounding-sensitive, and require many of them.
    inner = conv & res.converged & ~nb_other & rounding_insensitive(exp, xr, yr, res)
    assert inner.sum() >= 0.3 * (conv & ~nb_other).sum()
    np.testing.assert_allclose(res.score[inner], score[inner], rtol=1e-6)
    # scores keep their sign convention
    assert (res.score[res.converged] < 0).all() and (res.score[~res.converged] > 0).all()


def test_chunked_equals_unchunked():
    """Chunk size changes nothing but BLAS blocking: identical phases everywhere and identical scores on every
    cell that is not rounding-sensitive (BLAS sums in a different order for a different chunk size)."""
    exp, xr, yr = Experiment.preset("quick", steps=60), (1e-1, 1e3), (1e-1, 1e3)
    a = scan(exp, xr, yr, 20, chunk_size=50, progress=False)
    b = scan(exp, xr, yr, 20, chunk_size=400, progress=False)
    np.testing.assert_array_equal(a.converged, b.converged)
    stable = rounding_insensitive(exp, xr, yr, b, rtol=1e-12)
    assert stable.mean() > 0.5
    np.testing.assert_allclose(a.score[stable], b.score[stable], rtol=1e-12)
    same_chunk = scan(exp, xr, yr, 20, chunk_size=50, progress=False)
    np.testing.assert_array_equal(a.score, same_chunk.score)  # and runs are exactly reproducible


def test_save_load_roundtrip(tmp_path):
    res = scan(Experiment.preset("quick", steps=30), (1e-1, 1e3), (1e-1, 1e3), 8, progress=False)
    path = res.save(tmp_path / "scan")
    back = ScanResult.load(path)
    assert back.experiment == res.experiment and back.axes == res.axes and back.log == res.log
    assert back.x_range == res.x_range and back.y_range == res.y_range and back.complete
    np.testing.assert_array_equal(back.score, res.score)
    np.testing.assert_array_equal(back.converged, res.converged)
    np.testing.assert_array_equal(back.x, res.x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x_range=(0.0, 1.0)), "positive"),
        (dict(y_range=(-1.0, 1.0)), "positive"),
        (dict(x_range=(2.0, 1.0)), "lo < hi"),
        (dict(x_range=(1.0, 1.0)), "lo < hi"),
        (dict(resolution=1), ">= 2"),
        (dict(x_range=(1.0, 1.0 + 1e-14)), "too deep"),
    ],
)
def test_bad_ranges(kwargs, match):
    args = dict(x_range=(1e-1, 1e1), y_range=(1e-1, 1e1), resolution=8) | kwargs
    with pytest.raises(ValueError, match=match):
        scan("quick", progress=False, **args)


def test_zoom_depth_limit_and_ranges():
    res = scan(Experiment.preset("quick", steps=20), (1e-1, 1e3), (1e-1, 1e3), 8, progress=False)
    xr, _ = res.zoom((10.0, 10.0), 10)
    assert math.isclose(xr[0] * xr[1], 100.0) and math.isclose(math.log10(xr[1] / xr[0]), 0.4)
    assert res.zoom((1.0, 2.0), (3.0, 4.0)) == ((1.0, 2.0), (3.0, 4.0))
    with pytest.raises(ValueError, match="too deep"):
        res.zoom((10.0, 10.0), 1e15)


def test_offset_applied_once_vs_every_step_differ():
    exp = Experiment.preset("offset", steps=40)
    a = scan(exp, (-1.0, 1.0), (1e-1, 1e1), 6, progress=False)
    b = scan(exp.replace(offset_every_step=True), (-1.0, 1.0), (1e-1, 1e1), 6, progress=False)
    assert not np.array_equal(a.score, b.score)
    conv, score = reference_cell(exp.replace(offset_every_step=True), b.y[2], b.y[2], b.x[1])
    assert conv == b.converged[2, 1] and math.isclose(score, b.score[2, 1], rel_tol=1e-6)


# ---------------------------------------------------------------- files: exactly the path given, atomically


def test_save_writes_only_the_path_given(tmp_path):
    res = scan(Experiment.preset("quick", steps=20), (1e-1, 1e3), (1e-1, 1e3), 4, progress=False)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        res.save(tmp_path)  # used to write tmp_path.npz next to the folder
    assert not tmp_path.with_name(tmp_path.name + ".npz").exists()
    assert res.save(tmp_path / "f.v1") == tmp_path / "f.v1.npz"  # the name is kept, the suffix appended
    assert res.save(tmp_path / "g.npz") == tmp_path / "g.npz"
    assert res.to_png(tmp_path / "img.v2") == tmp_path / "img.v2"  # to_png writes exactly where it is told
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.v1.npz", "g.npz", "img.v2"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        res.save(tmp_path / "missing" / "x.npz")


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    res = scan(Experiment.preset("quick", steps=20), (1e-1, 1e3), (1e-1, 1e3), 4, progress=False)
    path = res.save(tmp_path / "scan.npz")
    before = path.read_bytes()

    def interrupted(f, **arrays):
        f.write(b"PK half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        res.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["scan.npz"]


# ---------------------------------------------------------------- memory and partial results


def _after(chunks):
    """A cancel() that lets ``chunks`` chunks run, then stops the scan (as Ctrl-C or Stop would)."""
    calls = []
    return lambda: len(calls) >= chunks or bool(calls.append(1))


def test_memory_estimate_refuses_before_allocating():
    """Resolution 9000 used to allocate ~2 GB of meshgrids before training; now the result is estimated first."""
    from labkit.fractal.scanner import estimate_memory

    need = estimate_memory("quick", 9000)
    assert need["result"] == 9000 * 9000 * 9  # score float64 + converged bool, nothing else grid-sized
    with pytest.raises(ValueError, match=r"needs at least 0\.68 GiB.*lower the resolution \(at most about \d+"):
        scan("quick", resolution=9000, max_memory=2**29, progress=False)  # 0.5 GiB: refused instantly


def test_scan_memory_is_the_result_plus_a_chunk():
    import tracemalloc

    exp = Experiment.preset("quick", steps=2, tail=1)
    n = 300
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match="partial"):
            res = scan(exp, (1e-1, 1e3), (1e-1, 1e3), n, progress=False, cancel=_after(3))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the result is 9 bytes per cell; full-grid float64 meshgrids and coordinate copies would add >= 32 bytes/cell
    assert peak < 12 * n * n, f"peak {peak / (n * n):.1f} bytes per cell"
    assert not res.complete


def test_partial_result_says_so_and_summarises_finished_cells_only():
    exp = Experiment.preset("quick", steps=30)
    full = scan(exp, (1e-1, 1e3), (1e-1, 1e3), 24, chunk_size=64, progress=False)
    with pytest.warns(UserWarning, match=r"partial result \(192 of 576 cells done"):
        part = scan(exp, (1e-1, 1e3), (1e-1, 1e3), 24, chunk_size=64, progress=False, cancel=_after(3))
    assert not part.complete and part.cells_done == 192
    assert part.done[:8].all() and not part.done[8:].any()  # rows 0..7 finished
    np.testing.assert_array_equal(part.score[:8], full.score[:8])
    assert part.converged_fraction() == full.converged[:8].mean()  # not diluted by the unscanned cells
    assert not part.boundary()[7:].any()  # the edge of the scanned rows is not a boundary
    np.testing.assert_array_equal(part.boundary()[:7], full.boundary()[:7])
    assert "PARTIAL (192 of 576 cells done" in part.summary()
    assert "PARTIAL" not in full.summary()
