"""labkit's one look for every plotly figure: template, colours, fonts.

Every figure builder in labkit starts from :func:`figure` (or calls
:func:`apply`), so all instruments share axes styles and colours.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE = "labkit"

#: Qualitative colours (colour-blind safe, Okabe-Ito order).
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
#: Converged / diverged / reference colours used across instruments.
CONVERGED, DIVERGED, REFERENCE = "#2166AC", "#B2182B", "#555555"
#: Diverging colour scale: converged (blue side) to diverged (red side).
DIVERGING = [[0.0, "#053061"], [0.25, "#4393C3"], [0.5, "#F7F7F7"], [0.75, "#D6604D"], [1.0, "#67001F"]]

_layout = go.Layout(
    font=dict(family="Inter, Helvetica, Arial, sans-serif", size=13, color="#222"),
    colorway=COLORS,
    paper_bgcolor="white",
    plot_bgcolor="white",
    margin=dict(l=60, r=20, t=50, b=50),
    title=dict(x=0.02, xanchor="left", font=dict(size=15)),
    legend=dict(bgcolor="rgba(255,255,255,0.7)", borderwidth=0),
    hovermode="closest",
    # automargin: long tick labels push the axis title out instead of being clipped or overlapped by it
    # exponentformat: 10^-5 rather than SI prefixes ("10µ", "100T" read badly on a loss or a density axis)
    xaxis=dict(showline=True, linecolor="#444", ticks="outside", gridcolor="#EEE", zeroline=False, mirror=False,
               automargin=True, exponentformat="power"),
    yaxis=dict(showline=True, linecolor="#444", ticks="outside", gridcolor="#EEE", zeroline=False, mirror=False,
               automargin=True, exponentformat="power"),
)
pio.templates[TEMPLATE] = go.layout.Template(layout=_layout)


def apply(fig: go.Figure) -> go.Figure:
    """Give ``fig`` labkit's template (in place) and return it."""
    fig.update_layout(template=TEMPLATE)
    return fig


def figure(
    title: str = "",
    x: str = "",
    y: str = "",
    *,
    log_x: bool = False,
    log_y: bool = False,
    height: int = 380,
    width: int | None = None,
    **layout: Any,
) -> go.Figure:
    """An empty labkit-styled figure with titled (and optionally log-scaled) axes."""
    fig = go.Figure(layout=dict(template=TEMPLATE, title=title, height=height, width=width, **layout))
    fig.update_xaxes(title_text=x, type="log" if log_x else "linear")
    fig.update_yaxes(title_text=y, type="log" if log_y else "linear")
    return fig


def decade_ticks(fig: Any, narrow: float = 0.3) -> Any:
    """One tick label per decade on every log axis narrower than ``narrow`` of the figure's width or height.

    ``fig``: a ``go.Figure`` or a layout as a JSON dict; changed in place and returned. plotly labels a log axis
    spanning few decades at 2 and 5 too ("10² 2 5 10³"); in a narrow panel those labels run into each other
    ("10²2"). Powers of ten only (``dtick=1``, written 10ⁿ) keep them apart.
    """
    if isinstance(fig, go.Figure):
        axes = [*fig.select_xaxes(), *fig.select_yaxes()]
        entries = [(a, a.type, a.domain or (0.0, 1.0)) for a in axes]
    else:
        entries = [(a, a.get("type"), a.get("domain", (0.0, 1.0))) for k, a in fig.items()
                   if k.startswith(("xaxis", "yaxis")) and isinstance(a, dict)]
    for axis, kind, domain in entries:
        if kind == "log" and domain[1] - domain[0] < narrow:
            axis.update(dtick=1, exponentformat="power")
    return fig
