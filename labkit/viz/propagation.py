"""Signal-propagation figures for :mod:`labkit.signal` (data in, plotly out; imported only when a figure is drawn)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.viz import COLORS, theme

__all__ = ["phase_figure", "propagation_figure", "spp_figure", "trainability_figure"]


def _band(fig: go.Figure, layers: np.ndarray, values: np.ndarray, name: str, color: str, row: int, col: int,
          show: bool = True) -> None:
    """Median over seeds (rows of ``values``) with a shaded 10-90% band."""
    lo, med, hi = np.nanpercentile(values, [10, 50, 90], axis=0)
    fig.add_trace(go.Scatter(x=np.r_[layers, layers[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", line=dict(width=0),
                             fillcolor=color, opacity=0.2, hoverinfo="skip", showlegend=False), row=row, col=col)
    fig.add_trace(go.Scatter(x=layers, y=med, name=name, line=dict(color=color), legendgroup=name, showlegend=show),
                  row=row, col=col)


def propagation_figure(run: Any, theory: Any | None = None, fig: go.Figure | None = None,
                       label: str = "measured", color: str | None = None) -> go.Figure:
    """Per-layer length ``q_l`` (log scale) and correlation ``c_l`` of a :class:`labkit.signal.Propagation`."""
    if fig is None:
        fig = make_subplots(rows=1, cols=2, subplot_titles=("length q_l = |h_l|² / n", "correlation c_l"))
        fig.update_layout(template=theme.TEMPLATE, height=360)
        fig.update_yaxes(type="log", row=1, col=1)
        fig.update_xaxes(title_text="layer l")
    color = color or COLORS[0]
    layers = np.arange(1, run.q.shape[1] + 1)
    _band(fig, layers, run.q[:, :, 0], label, color, 1, 1)
    if run.c is not None:
        _band(fig, layers, run.c, label, color, 1, 2, show=False)
    if theory is not None:
        fig.add_trace(go.Scatter(x=layers, y=theory.q, name=f"{label}: theory", line=dict(color=color, dash="dash"),
                                 legendgroup=label), row=1, col=1)
        if theory.c is not None:
            fig.add_trace(go.Scatter(x=layers, y=theory.c, line=dict(color=color, dash="dash"), showlegend=False,
                                     legendgroup=label), row=1, col=2)
    return fig


def phase_figure(sigma_w2: np.ndarray, sigma_b2: np.ndarray, chi1: np.ndarray, critical: np.ndarray,
                 title: str = "") -> go.Figure:
    """log10 chi_1 over the (sigma_w^2, sigma_b^2) plane (rows: sigma_b^2), with the order-to-chaos line."""
    fig = theme.figure(title or "log10 χ₁: gradients shrink (< 0) or grow (> 0) per layer", "σ_w²", "σ_b²",
                       height=380)
    z = np.log10(np.clip(np.asarray(chi1, dtype=float), 1e-3, 1e3))
    bound = float(np.nanmax(np.abs(z)))
    fig.add_trace(go.Heatmap(x=sigma_w2, y=sigma_b2, z=z, colorscale="RdBu_r", zmid=0, zmin=-bound, zmax=bound,
                             colorbar=dict(title="log10 χ₁")))
    fig.add_trace(go.Scatter(x=critical, y=sigma_b2, mode="lines", name="χ₁ = 1 (order | chaos)",
                             line=dict(color="white", width=3)))
    return fig


def trainability_figure(result: Any) -> go.Figure:
    """Final accuracy over (sigma_w^2, depth), each column labelled with its depth scale 6 xi_c.

    Both axes are categories (the grid is a handful of chosen values, not a continuum); a cell whose
    depth exceeds 6 xi_c, where Schoenholz et al. found no training, says so.
    """
    six = 6 * np.asarray(result.xi_c, dtype=float)
    cols = [f"σ_w² = {v:.2f}<br>6ξ_c = {'∞' if not np.isfinite(s) else f'{s:.0f}'}"
            for v, s in zip(result.sigma_w2, six)]
    rows = [str(d) for d in result.depths]
    acc = np.asarray(result.accuracy, dtype=float)
    text = [[f"{a:.2f}" + ("<br>(depth > 6ξ_c)" if d > s else "") for a, s in zip(row, six)]
            for d, row in zip(result.depths, acc)]
    fig = theme.figure("final training accuracy (cells deeper than 6 ξ_c are predicted not to train)",
                       "initialisation (σ_w²) and its depth scale 6 ξ_c", "depth", height=380)
    fig.add_trace(go.Heatmap(x=cols, y=rows, z=acc, zmin=0, zmax=1, colorscale="Viridis", text=text,
                             texttemplate="%{text}", colorbar=dict(title="accuracy")))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


def spp_figure(stats: dict[str, np.ndarray], title: str = "signal propagation plot") -> go.Figure:
    """Brock et al.'s signal propagation plot: per-block average channel mean² and channel variance."""
    fig = theme.figure(title, "residual block", "average over channels (log scale)", log_y=True, height=340)
    blocks = np.arange(1, len(stats["mean_sq"]) + 1)
    fig.add_trace(go.Scatter(x=blocks, y=stats["mean_sq"], name="avg channel mean²"))
    fig.add_trace(go.Scatter(x=blocks, y=stats["variance"], name="avg channel variance"))
    return fig
