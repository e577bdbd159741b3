"""Exercises of notebook 12 (batch size in practice): the norm test, the norm-test batch rule, LARS's trust ratio."""

from __future__ import annotations

import math

import numpy as np
import torch

from labkit.exercises._core import Wrong, call_student, exercise, expect_close, expect_integer


def _gradients(seed: int) -> list[np.ndarray]:
    """Random per-example gradient matrices ``(B, P)`` with a non-zero mean."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(4):
        b, p = int(rng.integers(3, 40)), int(rng.integers(2, 12))
        out.append(rng.normal(rng.normal(size=p), rng.uniform(0.3, 3.0), size=(b, p)))
    return out


def _reference(g: np.ndarray) -> float:
    b = g.shape[0]
    mean = g.mean(0)
    return math.sqrt(((g - mean) ** 2).sum() / (b - 1) / (b * (mean @ mean)))


@exercise(
    "batch_practice.norm_test",
    title="The norm test from per-example gradients",
    hints=[
        "The norm test compares the variance of the batch mean with the squared norm of the batch mean.",
        "Sample variance: sum_i |g_i - g_B|^2 / (B - 1). The variance of the mean divides that by B once more.",
        "Return sqrt(sum_i |g_i - g_B|^2 / ((B - 1) B |g_B|^2)): the smallest theta at which the test passes.",
    ],
)
def _norm_test(fn) -> None:
    for g in _gradients(11):
        b = g.shape[0]
        got = call_student(fn, g.copy())
        want = _reference(g)
        expect_close(got, want, rtol=1e-8, what=f"the norm test for a batch of {b}", mistakes=[
            (want**2, "you returned theta^2: take the square root, the test is var / (B |g_B|^2) <= theta^2"),
            (want * math.sqrt(b), "the variance of the batch *mean* is the sample variance divided by B"),
            (want * math.sqrt((b - 1) / b), "use the sample variance, divisor B - 1 (the batch is a sample)")])


@exercise(
    "batch_practice.next_batch",
    title="The batch the norm test asks for",
    hints=[
        "The test at batch B passes when tr(S) / (B |g_B|^2) <= theta^2.",
        "Solve for the smallest B that passes: B >= tr(S) / (theta^2 |g_B|^2); round up. Never shrink the batch.",
    ],
)
def _next_batch(fn) -> None:
    if call_student(fn, 10.0, 1.0, 1.0, 64) != 64:
        raise Wrong("when the test already passes (here B = 64 > tr(S) / |g_B|^2 = 10) keep the batch: never shrink")
    rng = np.random.default_rng(5)
    for _ in range(8):
        var, g2, theta, b = (float(rng.uniform(1, 200)), float(rng.uniform(0.05, 3)), float(rng.choice([0.5, 0.9,
                             1.0, 2.0])), int(rng.integers(1, 64)))
        got = call_student(fn, var, g2, theta, b)
        want = max(b, math.ceil(var / (theta**2 * g2)))
        expect_integer(got, want, what=f"the next batch for tr(S)={var:.3g}, |g_B|^2={g2:.3g}, theta={theta}, B={b}")


@exercise(
    "batch_practice.trust_ratio",
    title="LARS's local learning rate",
    hints=[
        "You et al. 2017: each layer gets its own rate, trust coefficient x |w| / (|grad| + weight decay x |w|).",
        "Norms are of the whole layer's tensor (Frobenius), not per entry.",
    ],
)
def _trust_ratio(fn) -> None:
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        w = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        g = torch.randn(5, 3, generator=gen, dtype=torch.float64) * float(torch.rand(1, generator=gen) * 10)
        eta, wd = 1e-3, 5e-4
        got = call_student(fn, w.clone(), g.clone(), eta, wd)
        want = eta * float(w.norm()) / (float(g.norm()) + wd * float(w.norm()))
        expect_close(float(got), want, rtol=1e-9, what="the local learning rate", mistakes=[
            (eta * float(g.norm()) / (float(w.norm()) + wd * float(g.norm())),
             "the ratio is |w| / |grad|, upside down"),
            (eta * float(w.norm()) / float(g.norm()), "include the weight-decay term in the denominator")])

