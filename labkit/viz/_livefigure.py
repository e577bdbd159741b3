"""How a :class:`~labkit.viz.live.LivePlot` turns its recorded series into plotly JSON.

Kept apart from the live machinery (threads, throttling, display): these methods
only read the recorded data and build a layout (once per change of panels) and
trace dicts (on every redraw, without plotly's validation, so a redraw of
thousands of points costs milliseconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labkit.viz import theme
from labkit.viz.figures import cut_above, finite_or_none, first_value, palette


@dataclass
class Series:
    """One named series: its panel, steps and values (and their moving average when ``beta`` > 0)."""

    panel: str
    x: list[float] = field(default_factory=list)
    y: list[Any] = field(default_factory=list)  # floats, or (members,) arrays for population runs
    vector: bool = False
    beta: float = 0.0  # moving-average weight; 0: not smoothed
    ema: list[Any] = field(default_factory=list)
    _state: Any = 0.0
    _weight: Any = 0.0  # 1 - beta^(finite values seen): the debiasing divisor

    def add(self, step: float, v: Any) -> None:
        """Record one value; update the moving average (O(1): no pass over the history)."""
        self.x.append(step)
        self.y.append(v)
        if self.beta:
            self.ema.append(self._smooth(v))

    def _smooth(self, v: Any) -> Any:
        """Debiased EMA; a non-finite value is a gap (nan) and leaves the average as it was."""
        b = self.beta
        if not self.vector:
            if not math.isfinite(v):
                return math.nan
            self._state = b * self._state + (1 - b) * v
            self._weight = b * self._weight + (1 - b)
            return self._state / self._weight
        ok = np.isfinite(v)
        self._state = np.where(ok, b * self._state + (1 - b) * np.where(ok, v, 0.0), self._state)
        self._weight = np.where(ok, b * self._weight + (1 - b), self._weight)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, self._state / np.where(self._weight > 0, self._weight, 1.0), np.nan)


class LiveFigure:
    """The figure-building half of ``LivePlot`` (a mixin: it reads the attributes ``LivePlot`` sets)."""

    title: str
    height: int
    max_points: int
    max_members: int
    member_labels: list[str] | None
    _log_y: Any
    _panels: list[str]
    _series: dict[str, Series]
    _refs: dict[tuple[str, str], float]
    _layout: dict[str, Any] | None
    _lock: Any

    # ------------------------------------------------------------ figure contents

    def _layout_dict(self) -> dict[str, Any]:
        if self._layout is None:
            from plotly.subplots import make_subplots

            n = max(len(self._panels), 1)
            cols = min(n, 3)
            rows = math.ceil(n / cols)
            fig = make_subplots(rows=rows, cols=cols, subplot_titles=self._panels or None,
                                horizontal_spacing=0.1 if cols > 1 else 0.2, vertical_spacing=0.15)
            theme.apply(fig)
            fig.update_layout(title=self.title or None, height=self.height * rows, showlegend=True,
                              margin=dict(t=60 if self.title else 40), uirevision="labkit-live")
            for i, panel in enumerate(self._panels):
                log = self._is_log(panel)
                label = f"{panel} (log scale)" if log else panel
                fig.update_xaxes(title_text=self.x_title, type="log" if self.log_x else "linear", row=i // cols + 1,
                                 col=i % cols + 1)
                fig.update_yaxes(title_text=label, type="log" if log else "linear", row=i // cols + 1,
                                 col=i % cols + 1)
            self._layout = fig.layout.to_plotly_json()
        return self._layout

    def _is_log(self, panel: str) -> bool:
        if isinstance(self._log_y, bool):
            return self._log_y
        if self._log_y is None:
            return "loss" in panel.lower()
        return panel in self._log_y

    def _thin(self, n: int) -> np.ndarray | slice:
        if n <= self.max_points:
            return slice(None)
        return np.unique(np.linspace(0, n - 1, self.max_points).round().astype(int))

    def _traces(self) -> list[dict[str, Any]]:
        """Plotly trace dicts (JSON-safe, no validation: this runs on every redraw)."""
        traces: list[dict[str, Any]] = []
        axis = {p: ("" if i == 0 else str(i + 1)) for i, p in enumerate(self._panels)}
        colors = palette(max(len(self._series), 1))
        xrange: dict[str, list[float]] = {}
        vector_in_panel: dict[str, int] = {}
        legend: set[str] = set()
        starts: dict[str, float] = {}  # log loss panels: the starting loss, above which a diverging run is cut
        for s in self._series.values():
            if self._is_log(s.panel) and "loss" in s.panel.lower():
                starts[s.panel] = float(np.fmax(starts.get(s.panel, math.nan), first_value(s.y)))
        for k, (name, s) in enumerate(self._series.items()):
            n = min(len(s.x), len(s.y))
            keep = self._thin(n)
            x = np.asarray(s.x[:n], dtype=float)[keep]
            y = np.asarray(s.y[:n], dtype=float)[keep]
            smooth = np.asarray(s.ema[:n], dtype=float)[keep] if s.beta else None
            if s.panel in starts:
                y = cut_above(y, starts[s.panel])
                smooth = None if smooth is None else cut_above(smooth, starts[s.panel])
            if x.size:
                lo, hi = xrange.get(s.panel, [x[0], x[-1]])
                xrange[s.panel] = [min(lo, x[0]), max(hi, x[-1])]
            ax = axis[s.panel]
            base = {"type": "scatter", "mode": "lines", "xaxis": f"x{ax}", "yaxis": f"y{ax}",
                    "x": finite_or_none(x)}
            if not s.vector:
                if smooth is None:
                    traces.append({**base, "y": finite_or_none(y), "name": name, "line": {"color": colors[k]}})
                else:
                    traces += self._raw_and_smooth(base, y, smooth, name, name, colors[k], s.beta, "solid", True)
            elif y.shape[1] <= self.max_members:
                # one colour per member in every panel; one legend entry per member toggles all its traces;
                # a second population series in the same panel (e.g. eval loss) is dotted
                member_colors = palette(y.shape[1])
                labels = self.member_labels or [f"member {j}" for j in range(y.shape[1])]
                dash = "dot" if vector_in_panel.get(s.panel, 0) else "solid"
                vector_in_panel[s.panel] = vector_in_panel.get(s.panel, 0) + 1
                for j in range(y.shape[1]):
                    member = {**base, "legendgroup": labels[j], "showlegend": labels[j] not in legend}
                    if smooth is None:
                        traces.append({**member, "y": finite_or_none(y[:, j]), "name": f"{name}: {labels[j]}",
                                       "line": {"color": member_colors[j], "width": 1.5, "dash": dash}})
                    else:
                        traces += self._raw_and_smooth(member, y[:, j], smooth[:, j], f"{name}: {labels[j]}", labels[j],
                                                       member_colors[j], s.beta, dash, labels[j] not in legend)
                    legend.add(labels[j])
            else:  # the summary of a noisy population is taken over the smoothed curves
                traces.extend(self._summary(base, x, y if smooth is None else smooth, name, colors[k]))
        for (panel, label), value in self._refs.items():
            x0, x1 = xrange.get(panel, [0.0, 1.0])
            ax = axis[panel]
            traces.append({"type": "scatter", "mode": "lines", "xaxis": f"x{ax}", "yaxis": f"y{ax}",
                           "x": finite_or_none([x0, x1]), "y": finite_or_none([value, value]),
                           "name": f"{label} = {value:.4g}",
                           "line": {"color": theme.REFERENCE, "dash": "dash", "width": 1.5}})
        return traces

    @staticmethod
    def _raw_and_smooth(base: dict[str, Any], raw: np.ndarray, smooth: np.ndarray, name: str, group: str, color: str,
                        beta: float, dash: str, legend: bool) -> list[dict[str, Any]]:
        """A noisy series: its raw values faint, the moving average on top (one legend entry toggles both)."""
        common = {**base, "legendgroup": group}
        return [{**common, "y": finite_or_none(raw), "name": name, "showlegend": False, "opacity": 0.3,
                 "line": {"color": color, "width": 1, "dash": dash}},
                {**common, "y": finite_or_none(smooth), "name": f"{name} (moving average, {beta:g})",
                 "showlegend": legend, "line": {"color": color, "width": 2, "dash": dash}}]

    @staticmethod
    def _summary(base: dict[str, Any], x: np.ndarray, y: np.ndarray, name: str, color: str) -> list[dict[str, Any]]:
        """Median over the members still finite, and a min-max band."""
        finite = np.where(np.isfinite(y), y, np.nan)
        ok = np.isfinite(finite).any(1)
        med, lo, hi = (np.full(len(x), np.nan) for _ in range(3))
        if ok.any():
            med[ok], lo[ok], hi[ok] = (f(finite[ok], 1) for f in (np.nanmedian, np.nanmin, np.nanmax))
        band = {**base, "x": finite_or_none(np.concatenate([x[ok], x[ok][::-1]])),
                "y": finite_or_none(np.concatenate([hi[ok], lo[ok][::-1]])), "fill": "toself",
                "fillcolor": "rgba(120,120,120,0.2)", "line": {"width": 0}, "hoverinfo": "skip",
                "name": f"{name}: min-max of {y.shape[1]}"}
        return [band, {**base, "y": finite_or_none(med), "name": f"{name}: median", "line": {"color": color}}]

    def _figure_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"data": self._traces(), "layout": self._layout_dict()}

    def figure(self) -> Any:
        """The current state as a static ``plotly.graph_objects.Figure``."""
        import plotly.graph_objects as go

        return go.Figure(self._figure_dict())
