"""Exercises of the normalisation notebook (06): batch norm by hand, weight norm's growing |v|."""

from __future__ import annotations

import numpy as np
import torch

from labkit.exercises._core import Wrong, call_student, exercise, expect_close
from labkit.models import BatchNorm, LayerNorm


@exercise(
    "normalization.batch_norm",
    title="Batch norm by hand",
    hints=[
        "Statistics over the batch: mean and variance along dimension 0, one per feature.",
        "Batch norm in training uses the biased variance (divide by n): x.var(0, unbiased=False).",
        "(x - mean) / sqrt(var + eps), with eps inside the square root.",
    ],
)
def _batch_norm(fn) -> None:
    g = torch.Generator().manual_seed(9)
    for n, d in ((16, 5), (7, 12), (64, 3)):
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * 3 + 2
        got = call_student(fn, x.clone(), 1e-5)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            raise Wrong(f"return a tensor of the input's shape {tuple(x.shape)}")
        got = got.detach().to(torch.float64)
        want = BatchNorm(d, affine=False)(x)
        unbiased = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=True) + 1e-5)
        expect_close(got, want, atol=1e-6, rtol=1e-6, what=f"the normalised ({n}, {d}) batch", mistakes=[
            (LayerNorm(d, affine=False)(x), "you normalised each example over its features: that is layer norm; "
                                            "batch norm normalises each feature over the batch (dimension 0)"),
            (unbiased, "batch norm divides by the biased variance (1/n), not the unbiased one (1/(n-1))")])


@exercise(
    "normalization.weight_norm_growth",
    title="How fast does weight norm's |v| grow?",
    hints=[
        "v_{t+1} = v_t - lr g with <g, v_t> = 0.",
        "Expand |v_t - lr g|^2: the cross term vanishes.",
    ],
)
def _weight_norm_growth(fn) -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):
        v_sq, lr, g_sq = float(rng.uniform(0.5, 10)), float(rng.uniform(0.01, 1)), float(rng.uniform(0.01, 5))
        got = call_student(fn, v_sq, lr, g_sq)
        want = v_sq + lr**2 * g_sq
        expect_close(got, want, rtol=1e-9, what=f"|v|^2 after a step (v_sq={v_sq:.3g}, lr={lr:.3g}, g_sq={g_sq:.3g})",
                     mistakes=[
                         (v_sq + lr * g_sq, "the step is lr g, so its squared length is lr^2 |g|^2, not lr |g|^2"),
                         (v_sq - lr**2 * g_sq, "orthogonal steps can only lengthen v: Pythagoras adds the squares")])
