"""Exercises of the batch-size notebook (04): noise scale from two batch sizes, lr scaling, B_crit."""

from __future__ import annotations

import numpy as np

from labkit.batchsize import scale_lr
from labkit.exercises._core import Wrong, call_student, exercise, expect_close


def _cases(seed: int, count: int = 5) -> list[tuple[float, float, int, int]]:
    """Random (|G|^2, tr Sigma, B_small, B_big) with the exact expected |G_B|^2 = |G|^2 + tr Sigma / B."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        g2, tr = float(rng.uniform(0.1, 2.0)), float(rng.uniform(1.0, 200.0))
        small = int(rng.integers(1, 32))
        out.append((g2, tr, small, small * int(rng.integers(2, 16))))
    return out


@exercise(
    "batchsize.b_simple_two_batch",
    title="B_simple from two batch sizes",
    hints=[
        "With batches drawn with replacement, E|G_B|^2 = |G|^2 + tr(Sigma) / B. Write it for B_small and B_big.",
        "Two equations, two unknowns: subtract them to get tr(Sigma), then substitute back for |G|^2.",
        "tr(Sigma) = (x_small - x_big) / (1/B_small - 1/B_big); |G|^2 = (B_big x_big - B_small x_small) / "
        "(B_big - B_small); B_simple is their ratio.",
    ],
)
def _b_simple_two_batch(fn) -> None:
    for g2, tr, small, big in _cases(7):
        x_small, x_big = g2 + tr / small, g2 + tr / big
        got = call_student(fn, x_small, x_big, small, big)
        if isinstance(got, (tuple, list)):
            raise Wrong("return one number, B_simple = tr(Sigma) / |G|^2, not a tuple")
        expect_close(got, tr / g2, rtol=1e-6, what=f"B_simple for B_small={small}, B_big={big}", mistakes=[
            (g2 / tr, "you returned |G|^2 / tr(Sigma): B_simple is noise over signal, tr(Sigma) / |G|^2")])


@exercise(
    "batchsize.scale_lr_4x",
    title="The learning rate for a 4x larger batch",
    hints=[
        "SGD: Goyal et al.'s linear rule. Adam: Malladi et al.'s square-root rule.",
        "SGD: lr * k. Adam: lr * sqrt(k). Here k is the ratio of the batch sizes.",
    ],
)
def _scale_lr_4x(fn) -> None:
    for lr, k in ((0.1, 4), (3e-4, 4), (0.05, 16), (1e-3, 2)):
        for optimizer, rule in (("sgd", "linear"), ("adam", "sqrt")):
            got = call_student(fn, lr, k, optimizer)
            want = scale_lr(lr, 1, k, rule)
            other = scale_lr(lr, 1, k, "sqrt" if rule == "linear" else "linear")
            expect_close(got, want, rtol=1e-9, what=f"the {optimizer} learning rate for lr={lr:g}, k={k}", mistakes=[
                (other, f"for {optimizer!r} you used the {'square-root' if rule == 'linear' else 'linear'} rule; "
                        "it is the other one"),
                (lr / (want / lr), f"for {optimizer!r} the learning rate should grow with the batch, not shrink")])


@exercise(
    "batchsize.b_crit_two_points",
    title="B_crit from steps at two batch sizes",
    hints=[
        "McCandlish et al.: S = S_min (1 + B_crit / B) = S_min + E_min / B. That is linear in 1/B.",
        "The slope against 1/B is E_min and the intercept S_min; B_crit = E_min / S_min.",
    ],
)
def _b_crit_two_points(fn) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        s_min, b_crit = float(rng.uniform(50, 500)), float(rng.uniform(4, 400))
        b1, b2 = sorted(int(v) for v in rng.choice(np.arange(1, 2048), 2, replace=False))
        s1, s2 = s_min * (1 + b_crit / b1), s_min * (1 + b_crit / b2)
        got = call_student(fn, b1, s1, b2, s2)
        expect_close(got, b_crit, rtol=1e-6, what=f"B_crit from (B={b1}, S={s1:.1f}) and (B={b2}, S={s2:.1f})")
