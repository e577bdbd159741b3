"""Exercises of the scaling-laws notebook (08): a log-log slope, the variance-limited law, the frontier."""

from __future__ import annotations

import numpy as np

from labkit.exercises._core import Wrong, call_student, exercise, expect_close
from labkit.scaling import rf_loss_ridgeless, slope


def _number(value) -> bool:
    """A finite real number (so the specific diagnoses below apply)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value)


@exercise(
    "scaling_laws.loglog_slope",
    title="The exponent of a power law from its points",
    hints=[
        "A power law L = a N^-b is a straight line in (log N, log L) with slope -b.",
        "np.polyfit(np.log(N), np.log(L), 1)[0] is the slope; return it (it is negative for a falling loss).",
    ],
)
def _loglog_slope(fn) -> None:
    rng = np.random.default_rng(2)
    for _ in range(4):
        n = np.geomspace(4, 4096, 9)
        b = float(rng.uniform(0.2, 2.0))
        loss = 3.0 * n**-b * np.exp(rng.normal(0, 0.02, n.size))
        got = call_student(fn, n.copy(), loss.copy())
        want = slope(n, loss)[0]
        if _number(got) and np.isclose(float(got), -want, rtol=1e-6):
            raise Wrong("the sign is flipped: a loss that falls with N has a negative slope")
        if _number(got) and any(np.isclose(float(got), want * f, rtol=1e-6) for f in (np.log(10), 1 / np.log(10))):
            raise Wrong("mixing log bases? Use the same logarithm for both axes")
        expect_close(got, want, rtol=1e-6, what="the log-log slope")


@exercise(
    "scaling_laws.variance_limited",
    title="The variance-limited law: loss with N features and D samples",
    hints=[
        "Ordinary least squares with N Gaussian features, D samples and noise variance L_inf has "
        "expected excess loss L_inf * E[tr((X^T X)^-1 Sigma)].",
        "For Gaussian features E[(X^T X)^-1] = Sigma^-1 / (D - N - 1) (inverse Wishart), so the excess is "
        "L_inf * N / (D - N - 1).",
    ],
)
def _variance_limited(fn) -> None:
    for l_inf, n, d in ((0.1, 4, 50), (2.0, 16, 200), (0.03, 32, 1000), (1.0, 1, 10)):
        got = call_student(fn, l_inf, n, d)
        want = rf_loss_ridgeless(l_inf, n, d)
        if _number(got) and np.isclose(float(got), want - l_inf, rtol=1e-9):
            raise Wrong("that is the excess only: return the whole loss, L_inf plus the excess")
        if _number(got) and np.isclose(float(got), l_inf * (1 + n / d), rtol=1e-9):
            raise Wrong("N / D is the large-D limit; the exact mean has D - N - 1 in the denominator")
        expect_close(got, want, rtol=1e-9, what=f"the loss for L_inf={l_inf}, N={n}, D={d}")


@exercise(
    "scaling_laws.frontier_point",
    title="The compute-optimal size for one budget",
    hints=[
        "For each size, find the loss it reaches within the budget: the last point of its curve with compute <= C.",
        "Among the sizes, return the one with the lowest such loss (a size that cannot reach C at all is out).",
    ],
)
def _frontier_point(fn) -> None:
    steps = np.arange(1, 201)
    sizes = [10, 100, 1000]
    curves = {s: (s * steps, 1.0 / np.sqrt(s) + 5.0 / steps) for s in sizes}
    for budget in (2_000, 20_000, 150_000):
        best, best_loss = None, np.inf
        for s, (c, l_) in curves.items():
            ok = c <= budget
            if ok.any() and l_[ok][-1] < best_loss:
                best, best_loss = s, l_[ok][-1]
        got = call_student(fn, {s: (c.copy(), l_.copy()) for s, (c, l_) in curves.items()}, budget)
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)) or got not in curves:
            raise Wrong(f"return one of the sizes (a key of curves), got {got!r}")
        if got != best:
            raise Wrong(f"for the budget C = {budget} another size reaches a lower loss within C")
