"""Exercises of the trainability-fractal notebook (03_fractal_boundary.ipynb)."""

from __future__ import annotations

import numpy as np

from labkit.exercises._core import Wrong, call_student, exercise, expect_close, expect_integer


def _spd(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * rng.uniform(0.1, 10.0, n)) @ q.T


@exercise(
    "fractal.max_stable_lr",
    title="Largest stable learning rate on a quadratic",
    hints=[
        "Gradient descent on L(w) = 1/2 w^T H w multiplies each eigen-component by (1 - lr * lambda) per step.",
        "It diverges as soon as |1 - lr * lambda| > 1 for some eigenvalue: look at the largest one.",
        "np.linalg.eigvalsh(H) gives the eigenvalues of a symmetric matrix.",
    ],
)
def _max_stable_lr(fn):
    for seed, n in ((0, 3), (1, 5), (2, 8)):
        h = _spd(seed, n)
        got = call_student(fn, h.copy())
        lam = np.linalg.eigvalsh(h)
        expect_close(got, 2.0 / lam.max(), rtol=1e-6, what=f"your learning rate for a {n}x{n} H", mistakes=[
            (2.0 / lam.min(), "that is 2 / lambda_min: at that learning rate the direction of the largest "
             "eigenvalue has long diverged; the largest eigenvalue sets the limit")])


def _reference_boundary(converged: np.ndarray) -> np.ndarray:
    c = converged
    blocks = np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, :-1], c[1:, 1:]])
    return blocks.any(0) & ~blocks.all(0)


@exercise(
    "fractal.boundary",
    title="Boundary pixels of a phase image",
    hints=[
        "Look at every 2x2 block of neighbouring pixels: it is on the boundary when it holds both phases.",
        "Slices c[:-1, :-1], c[:-1, 1:], c[1:, :-1], c[1:, 1:] are the four corners of all blocks at once.",
        "The result has shape (ny - 1, nx - 1).",
    ],
)
def _boundary(fn):
    rng = np.random.default_rng(3)
    for shape in ((5, 7), (16, 16), (9, 4)):
        c = rng.random(shape) < 0.5
        got = np.asarray(call_student(fn, c.copy()))
        want = _reference_boundary(c)
        if got.shape != want.shape:
            raise Wrong(f"for a {shape} image your mask has shape {got.shape}; expected {want.shape}")
        if got.dtype != bool:
            raise Wrong("return a boolean mask (True on boundary blocks)")
        if (got & ~want).any():
            raise Wrong("some blocks holding only one phase are marked as boundary")
        if (want & ~got).any():
            raise Wrong("some blocks holding both phases are missing")


@exercise(
    "fractal.box_count",
    title="Counting boxes",
    hints=[
        "Pad the mask with False to a multiple of the box size, then reshape it to (H/s, s, W/s, s).",
        "A box counts when ANY of its pixels is True: .any(axis=(1, 3)).",
    ],
)
def _box_count(fn):
    from labkit.fractal.dimension import box_count

    rng = np.random.default_rng(4)
    for shape, s in (((16, 16), 4), ((30, 20), 7), ((9, 9), 1), ((64, 48), 16)):
        m = rng.random(shape) < 0.05
        expect_integer(call_student(fn, m.copy(), s), box_count(m, s), what=f"your count for size {s} on {shape}")
