"""Exercises of the grokking notebook (07): the Fourier spectrum of an embedding, and where t_grok moves."""

from __future__ import annotations

import numpy as np
import torch

from labkit.exercises._core import Wrong, call_student, exercise, expect_close, expect_integer
from labkit.grokking import fourier_spectrum


@exercise(
    "grokking.fourier_spectrum",
    title="The Fourier spectrum of an embedding",
    hints=[
        "Transform each row of the (width, p) embedding along the token axis: np.fft.rfft(E, axis=1).",
        "Power is |F|^2, summed over the rows (hidden units). Drop k = 0 (the constant): keep k = 1 .. p // 2.",
        "Divide by the total so the fractions sum to 1. rfft already pairs k with p - k.",
    ],
)
def _fourier_spectrum(fn) -> None:
    rng = np.random.default_rng(5)
    for p, width in ((7, 3), (11, 5), (13, 8)):
        emb = rng.normal(size=(width, p))
        want = fourier_spectrum(torch.as_tensor(emb), p).numpy()
        got = call_student(fn, emb.copy())
        arr = np.asarray(got, dtype=float)
        if arr.shape == (p // 2 + 1,):
            raise Wrong("your spectrum has p // 2 + 1 entries: leave out the constant frequency k = 0")
        if arr.shape == want.shape and np.all(np.isfinite(arr)) and not np.isclose(arr.sum(), 1.0):
            raise Wrong("the fractions should sum to 1: divide the power by its total")
        expect_close(got, want, rtol=1e-6, atol=1e-9, what=f"the spectrum for p={p}")
    # a pure Fourier mode puts all its power at its own frequency
    p, k = 11, 3
    pure = np.cos(2 * np.pi * k * np.arange(p) / p + 0.4)[None, :]
    got = np.asarray(call_student(fn, pure), dtype=float)
    if got.shape == (p // 2,) and np.argmax(got) != k - 1:
        raise Wrong("for E = cos(2 pi 3 a / 11) all power should sit at k = 3 (index 2 of your array)")


@exercise(
    "grokking.more_data_groks_sooner",
    title="Which training fraction groks first?",
    hints=[
        "Weight decay slowly trades the memorising solution for the general one. Which is easier to find with "
        "more of the table in the training set?",
        "With more training pairs the memorising solution needs more weight norm, and the general one is "
        "pinned down by more constraints: look at the sweep in section 3.",
    ],
)
def _more_data(answer) -> None:
    if not isinstance(answer, (int, np.integer, float)) or isinstance(answer, bool):
        raise Wrong("answer with the index of the fraction (0, 1 or 2) in [0.6, 0.7, 0.8]")
    expect_integer(answer, 2, what="the index of the fraction that groks first")


@exercise(
    "grokking.t_mem_t_grok",
    title="t_mem and t_grok from accuracy curves",
    hints=[
        "The first step at which a curve reaches a level: np.argmax(curve >= level), if any entry does.",
        "Return (t_mem, t_grok) with train accuracy >= 0.99 and test accuracy >= 0.95; None when never reached.",
    ],
)
def _t_mem_t_grok(fn) -> None:
    rng = np.random.default_rng(1)
    for _ in range(4):
        steps = 400
        t_mem, t_grok = int(rng.integers(5, 40)), int(rng.integers(100, 380))
        s = np.arange(steps)
        train = np.clip(s / t_mem, 0, 1) * 0.995 + 0.004 * (s >= t_mem)
        test = np.where(s < t_grok, 0.9 * s / t_grok, 0.96)
        got = call_student(fn, train.copy(), test.copy())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Wrong("return a pair (t_mem, t_grok)")
        expect_integer(got[0], int(np.argmax(train >= 0.99)), what="t_mem")
        expect_integer(got[1], t_grok, what="t_grok")
    got = call_student(fn, np.full(50, 1.0), np.full(50, 0.1))
    if not isinstance(got, (tuple, list)) or got[1] is not None:
        raise Wrong("when test accuracy never reaches 0.95, t_grok should be None")
