"""The steps/examples trade-off of McCandlish et al. (2018) and its critical batch size.

Training to a fixed target with batch size ``B`` takes ``S`` steps and ``E = B S`` examples.
McCandlish et al. ("An Empirical Model of Large-Batch Training", arXiv:1812.06162, eq. 2.11)
find ``(S / S_min - 1) (E / E_min - 1) = 1``, equivalently

    ``S = S_min (1 + B_crit / B)``  and  ``E = E_min (1 + B / B_crit)``,  ``B_crit = E_min / S_min``:

below ``B_crit`` doubling the batch halves the steps (perfect scaling); above it the
steps approach ``S_min`` (maximal data parallelism). Since ``S = S_min + E_min / B`` is
linear in ``(S_min, E_min)``, the fit is a small least-squares problem on relative
(log) residuals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["REGIMES", "Tradeoff", "draw_regimes", "fit_tradeoff", "regime"]

#: Shallue et al.'s regimes, with the fitted curve's log-log slope -B_crit / (B + B_crit) at their edges
REGIMES = ("perfect scaling", "diminishing returns", "maximal data parallelism")


@dataclass(frozen=True)
class Tradeoff:
    """Fitted ``S_min``, ``E_min`` and ``B_crit = E_min / S_min``, plus the data and the fit's R^2 (in log S)."""

    s_min: float
    e_min: float
    b_crit: float
    r2: float
    steps: tuple[float, ...] = ()
    examples: tuple[float, ...] = ()

    def steps_at(self, batch_size: Any) -> np.ndarray:
        """Predicted steps ``S_min (1 + B_crit / B)``."""
        return self.s_min * (1 + self.b_crit / np.asarray(batch_size, dtype=float))

    def examples_at(self, batch_size: Any) -> np.ndarray:
        """Predicted examples ``E_min (1 + B / B_crit)``."""
        return self.e_min * (1 + np.asarray(batch_size, dtype=float) / self.b_crit)

    def figure(self) -> Any:
        """Steps against examples (log-log): the data, the fitted hyperbola, ``S_min``, ``E_min`` and ``B_crit``."""
        from labkit import viz

        s, e = np.asarray(self.steps), np.asarray(self.examples)
        fig = viz.tradeoff(s, e, batch_sizes=e / s if s.size else None, fit=self,
                           title=f"Steps vs examples to target: B_crit = {self.b_crit:.3g}")
        fig.add_scatter(x=[2 * self.e_min], y=[2 * self.s_min], mode="markers", name="B = B_crit (2 E_min, 2 S_min)",
                        marker=dict(symbol="star", size=14, color=viz.COLORS[2]))
        return fig


def regime(batch_size: float, b_crit: float) -> str:
    """The regime of ``batch_size``: below ``B_crit / 4`` the fitted slope is < -0.8 (perfect scaling), above
    ``4 B_crit`` it is > -0.2 (maximal data parallelism), in between diminishing returns.

    >>> regime(2, 32), regime(32, 32), regime(1024, 32)
    ('perfect scaling', 'diminishing returns', 'maximal data parallelism')
    """
    if not (b_crit > 0 and batch_size > 0):
        raise ValueError(f"batch_size and b_crit must be > 0, got {batch_size!r} and {b_crit!r}")
    return REGIMES[0] if batch_size < b_crit / 4 else (REGIMES[2] if batch_size > 4 * b_crit else REGIMES[1])


def draw_regimes(fig: Any, b_crit: float, x_range: tuple[float, float]) -> Any:
    """Shade the three regimes of ``B_crit`` on a log-x figure over ``x_range`` (data units) and label them.

    Shapes on a log axis take data units but annotations take log10 units (a plotly convention):
    labels are placed at ``log10`` of their regions' geometric centres, on staggered rows so
    narrow regions do not overlap, and a region narrower than half a decade gets no label.
    """
    from labkit.viz.theme import COLORS, REFERENCE

    xmin, xmax = x_range
    edges = [xmin, min(max(b_crit / 4, xmin), xmax), min(max(4 * b_crit, xmin), xmax), xmax]
    for i, (name, colour) in enumerate(zip(REGIMES, (COLORS[2], COLORS[4], COLORS[3]))):
        x0, x1 = edges[i], edges[i + 1]
        if x1 <= x0:
            continue
        fig.add_vrect(x0=x0, x1=x1, fillcolor=colour, opacity=0.08, line_width=0, layer="below")
        if math.log10(x1 / x0) >= 0.5:
            fig.add_annotation(x=math.log10(math.sqrt(x0 * x1)), y=1.0 - 0.07 * i, xref="x", yref="paper",
                               text=name, showarrow=False, yanchor="top", font=dict(size=11, color="#444"))
    if xmin <= b_crit <= xmax:
        fig.add_vline(x=b_crit, line=dict(dash="dot", color=REFERENCE))
        fig.add_annotation(x=math.log10(b_crit), y=0.0, xref="x", yref="paper", text=f"B_crit = {b_crit:.3g}",
                           showarrow=False, xanchor="left", yanchor="bottom", font=dict(size=11, color=REFERENCE))
    fig.update_xaxes(range=[math.log10(xmin), math.log10(xmax)])  # log axes take log10 ranges
    return fig


def fit_tradeoff(steps: Sequence[float], examples: Sequence[float]) -> Tradeoff:
    """Fit ``(S / S_min - 1)(E / E_min - 1) = 1`` to measured steps and examples to a target.

    Minimises ``sum_j (log S_j - log(S_min + E_min / B_j))^2`` with ``B_j = E_j / S_j``
    (relative errors, so every batch size counts alike) by Gauss-Newton in
    ``(log S_min, log E_min)``, started from the weighted linear least-squares solution.
    Needs at least 3 points with finite positive values; points not reached (NaN/inf)
    are dropped.

    >>> b = np.array([1, 4, 16, 64, 256, 1024.])
    >>> s = 100 * (1 + 32 / b)
    >>> t = fit_tradeoff(s, s * b)
    >>> round(t.s_min, 6), round(t.e_min, 6), round(t.b_crit, 6)
    (100.0, 3200.0, 32.0)
    """
    s = np.asarray(steps, dtype=float).ravel()
    e = np.asarray(examples, dtype=float).ravel()
    if s.shape != e.shape:
        raise ValueError(f"steps and examples must have the same length, got {s.size} and {e.size}")
    ok = np.isfinite(s) & np.isfinite(e) & (s > 0) & (e > 0)
    s, e = s[ok], e[ok]
    if s.size < 3:
        raise ValueError(f"fit_tradeoff needs at least 3 reached points with positive steps and examples, got {s.size}")
    inv_b = s / e  # 1 / B
    # weighted linear least squares for S = a + b / B with weights 1 / S (relative residuals)
    A = np.stack([np.ones_like(s), inv_b], 1) / s[:, None]
    a, b = np.linalg.lstsq(A, np.ones_like(s), rcond=None)[0]
    a, b = max(a, 1e-3 * s.min()), max(b, 1e-3 * s.min() * e.min() / s.min())
    theta = np.log([a, b])
    for _ in range(50):  # Gauss-Newton on log residuals
        a, b = np.exp(theta)
        pred = a + b * inv_b
        r = np.log(s) - np.log(pred)
        J = np.stack([a / pred, b * inv_b / pred], 1)
        step = np.linalg.lstsq(J, r, rcond=None)[0]
        theta = theta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    a, b = np.exp(theta)
    resid = np.log(s) - np.log(a + b * inv_b)
    ss_tot = float(np.sum((np.log(s) - np.log(s).mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else math.nan
    return Tradeoff(float(a), float(b), float(b / a), r2, tuple(s.tolist()), tuple(e.tolist()))
