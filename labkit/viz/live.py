"""``LivePlot``: a figure that updates in place while training (or any loop) runs.

A ``LivePlot`` is a training callback (it has ``on_start``/``on_step``/``on_end``, which
``labkit.train.fit`` accepts by duck typing: viz never imports train) and can also be fed by hand::

    live = LivePlot()                                   # panels appear as series arrive
    fit(model, ds, lr=0.1, steps=500, callbacks=[live]) # shows itself, redraws ~4x/s

    live = LivePlot({"loss": ["loss"], "sharpness": ["sharpness"]})
    live.reference("sharpness", 2 / lr, "2/lr")         # dashed line, e.g. the edge of stability
    live.show()
    for t in range(steps): live.append(t, loss=..., sharpness=...)

Backends (``backend="auto"`` picks; ``LABKIT_LIVEPLOT`` or the argument overrides):

- ``"output"`` (default in any Jupyter front end): an ``ipywidgets.Output`` whose
  content is replaced by the current figure, at most ``fps`` times a second; the
  final state is always drawn (at the end of ``fit``, by :meth:`flush`, and
  automatically when the notebook cell ends). The redraw sets the widget's
  ``outputs`` in one assignment (what ``clear_output(wait=True)`` + ``fig.show()``
  achieves inside the widget, but safe from a background thread). On Colab the
  figure is sent as self-contained HTML, which renders there where plotly's
  widget and mime renderers do not.
- ``"figurewidget"`` (opt-in, for click/select interaction): a ``go.FigureWidget``
  updated inside ``batch_update()``. Display it before the work starts (from a
  button or a later cell): a loop started in the same Run-All before the page
  rendered the widget can leave it empty.
- ``"static"`` (plain Python, scripts, IPython terminal): nothing is drawn while
  running; :meth:`figure` returns the final ``go.Figure`` and in IPython it is
  displayed once when the work ends.

``display_id`` updates are never used: JupyterLab's plotly renderer ignores them.

``fit_many`` passes one loss per member: up to ``max_members`` members get one
trace each (``member_labels`` names them); larger populations are summarised by
their median with a shaded min-max band over the members that have not diverged.

Noisy series (the per-batch training loss of a mini-batch run, or any series named in
``smoothed``) are drawn twice: the raw values faint, and an exponential moving average
(``smooth``, debiased as in Adam so the first steps are not pulled towards zero) on top.
Full-batch losses are not noisy and are drawn raw only. On a log loss panel values above
``figures.DIVERGED_CUT`` (1e4) times the starting loss are cut: a diverging run leaves through
the top instead of stretching the axis over dozens of decades.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit import _checks, notebook
from labkit.viz._livefigure import LiveFigure, Series

if TYPE_CHECKING:  # types only: viz must not import train (train.History.figure imports viz)
    from labkit.history import History, StepInfo

__all__ = ["BACKENDS", "LivePlot"]

BACKENDS = ("output", "figurewidget", "static")


def _auto_panel(name: str) -> str:
    low = name.lower()
    return "loss" if "loss" in low else "accuracy" if "acc" in low else name


def _value(v: Any) -> float | np.ndarray:
    if type(v) is float:  # the common case, first
        return v
    if hasattr(v, "detach"):
        v = v.detach()
        return float(v) if v.ndim == 0 else v.cpu().double().numpy()
    if isinstance(v, (np.ndarray, list, tuple)):
        arr = np.asarray(v, dtype=float)
        return float(arr) if arr.ndim == 0 else arr
    return float(v)


def _auto_backend() -> str:
    forced = os.environ.get("LABKIT_LIVEPLOT", "").strip().lower()
    if forced:
        return _checks.choice("LABKIT_LIVEPLOT", forced, BACKENDS)
    return "static" if notebook.environment() in ("plain", "ipython") else "output"


class LivePlot(LiveFigure):
    """A live figure of named series against the step, in one or several side-by-side panels.

    ``panels`` maps a panel title to the series it shows (``{"loss": ["loss",
    "eval loss"], "accuracy": ["eval accuracy"]}``) or lists series (each its own
    panel, a tuple of names shares one); series not listed, and every series when
    ``panels`` is None, go to an automatic panel ("loss" for names containing
    "loss", "accuracy" for "acc", else their own). ``log_y`` is True/False for all
    panels, a collection of panel titles, or None for "loss" panels only. Series
    longer than ``max_points`` are subsampled for drawing (the data is kept).
    ``eval_label`` prefixes the evaluation metrics ``fit`` reports ("eval loss").
    ``smooth`` is the moving-average weight of the smoothed curve drawn over noisy
    series (0 turns smoothing off); ``smoothed`` names the noisy series (default:
    the training loss when ``fit`` runs on mini-batches). ``x_title`` and ``log_x`` title and scale the x axes
    (scaling curves: ``x_title="compute", log_x=True``): the one live-plot factory, which :func:`labkit.edge.monitor`,
    :func:`labkit.scaling.live_plot` and :func:`labkit.grokking.live_plot` only preset.
    """

    def __init__(
        self,
        panels: Mapping[str, Sequence[str]] | Sequence[str | Sequence[str]] | None = None,
        *,
        title: str = "",
        backend: str = "auto",
        fps: float = 4.0,
        log_y: bool | Iterable[str] | None = None,
        height: int = 320,
        max_points: int = 2000,
        max_members: int = 8,
        member_labels: Sequence[str] | None = None,
        eval_label: str = "eval",
        smooth: float = 0.9,
        smoothed: Iterable[str] | None = None,
        x_title: str = "step",
        log_x: bool = False,
    ):
        self.backend = _auto_backend() if backend == "auto" else _checks.choice("backend", backend, BACKENDS)
        _checks.positive("fps", fps)
        _checks.positive("height", height, integer=True)
        _checks.in_range("max_points", max_points, 2, 10**7)
        _checks.positive("max_members", max_members, integer=True)
        self.title, self.fps, self.height, self.max_points = title, float(fps), height, max_points
        if not isinstance(x_title, str) or not isinstance(log_x, bool):
            raise TypeError(f"x_title must be a str and log_x a bool, got {x_title!r} and {log_x!r}")
        self.x_title, self.log_x = x_title, log_x
        self.max_members, self.eval_label = max_members, eval_label
        self.member_labels = list(member_labels) if member_labels is not None else None
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be a moving-average weight in [0, 1) (0 = off), got {smooth!r}")
        if isinstance(smoothed, str):
            raise TypeError(f"smoothed must be a collection of series names, got the string {smoothed!r}")
        self.smooth = float(smooth)
        self._smoothed = set(smoothed) if smoothed is not None else None
        self._minibatch = False  # set by on_start: the training loss of a mini-batch run is noisy
        self._log_y = log_y if isinstance(log_y, (bool, type(None))) else set(log_y)
        self._explicit: dict[str, str] = {}  # series -> panel, from ``panels``
        self._panels: list[str] = []
        for title_, names in self._parse_panels(panels):
            self._panels.append(title_)
            self._explicit.update({n: title_ for n in names})
        self._series: dict[str, Series] = {}
        self._refs: dict[tuple[str, str], float] = {}
        self._lock = threading.RLock()
        self._clock = time.monotonic
        self._last_draw = -math.inf
        self._dirty = False
        self._fresh = True  # no data drawn since creation or the last clear()
        self._layout: dict[str, Any] | None = None  # rebuilt when the panels change
        self._widget: Any = None
        self._widget_panels: list[str] | None = None
        self._shown_at: int | None = None  # execution count of the cell that displayed us
        self._static_done = False
        self._hook = False
        self._kernel = notebook.in_kernel()  # checked once: it cannot change within a process
        #: Number of times the figure was redrawn (throttling keeps this small).
        self.redraws = 0

    @staticmethod
    def _parse_panels(panels: Any) -> list[tuple[str, list[str]]]:
        if panels is None:
            return []
        if isinstance(panels, Mapping):
            return [(str(k), [v] if isinstance(v, str) else list(v)) for k, v in panels.items()]
        if isinstance(panels, str) or not isinstance(panels, Sequence):
            raise TypeError(f"panels must be a dict {{title: [series]}} or a list of series names, got {panels!r}")
        return [(p, [p]) if isinstance(p, str) else (", ".join(p), list(p)) for p in panels]

    # ------------------------------------------------------------ data in

    def append(self, step: float, **values: Any) -> None:
        """Record ``values`` (floats, 0-d tensors, or one value per member) at ``step``; redraw if due."""
        if not values:
            raise ValueError("append needs at least one named value, e.g. live.append(step, loss=0.3)")
        with self._lock:
            for name, v in values.items():
                v = _value(v)
                s = self._series.get(name)
                if s is None:
                    s = self._series[name] = Series(self._panel_for(name), vector=isinstance(v, np.ndarray),
                                                     beta=self.smooth if self._is_noisy(name) else 0.0)
                s.add(step, v)
            self._dirty = True
            self._static_done = False
        self._maybe_show()
        if self._fresh or self._clock() - self._last_draw >= 1.0 / self.fps:
            self._fresh = False  # the first data after a clear is drawn at once: the page shows the run begin
            self.draw()
        else:
            self._flush_when_cell_ends()

    def reference(self, panel: str, value: float, label: str) -> None:
        """A dashed horizontal line ``label`` at ``value`` in ``panel`` (set again to move it)."""
        with self._lock:
            self._panel_for(panel, create=panel)
            self._refs[(panel, label)] = float(value)
            self._dirty = True

    def clear(self, references: bool = False) -> None:
        """Forget the recorded data (and the reference lines if ``references``); keep the panels."""
        with self._lock:
            self._series.clear()
            if references:
                self._refs.clear()
            self._panels = [p for p in self._panels if p in self._explicit.values() or
                            any(r[0] == p for r in self._refs)]
            self._layout = None
            self._dirty = True
            self._static_done = False
            self._fresh = True

    def _is_noisy(self, name: str) -> bool:
        if self.smooth == 0.0:
            return False
        if self._smoothed is not None:
            return name in self._smoothed
        return self._minibatch and name == "loss"

    def _panel_for(self, name: str, create: str | None = None) -> str:
        panel = create or self._explicit.get(name) or _auto_panel(name)
        if panel not in self._panels:
            self._panels.append(panel)
            self._layout = None
        return panel

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The recorded ``(steps, values)`` of series ``name`` (values ``(T,)`` or ``(T, members)``)."""
        with self._lock:
            if name not in self._series:
                raise KeyError(f"no series {name!r}; recorded: {sorted(self._series)}")
            s = self._series[name]
            return np.asarray(s.x, dtype=float), np.asarray(s.y, dtype=float)

    @property
    def names(self) -> list[str]:
        """Names of the recorded series."""
        return list(self._series)

    # ------------------------------------------------------------ Callback

    def on_start(self, info: StepInfo) -> None:
        """A new run starts: forget the previous one's data (reference lines stay)."""
        n = len(info.data) if hasattr(info.data, "__len__") else None
        self._minibatch = info.batch_size is not None and (n is None or info.batch_size < n)
        self.clear()
        self._maybe_show()

    def on_step(self, info: StepInfo) -> None:
        values: dict[str, Any] = {"loss": info.loss}
        h = info.history
        is_eval = isinstance(h, list) or bool(h is not None and h.eval_steps and h.eval_steps[-1] == info.step)
        if info.metrics and is_eval:
            values.update({f"{self.eval_label} {k}": v for k, v in info.metrics.items()})
        self.append(info.step, **values)

    def on_end(self, history: History | list[History]) -> None:
        """Record the final evaluation (taken after the last update) and draw the final state."""
        hs = history if isinstance(history, list) else [history]
        last = max((h.eval_steps[-1] for h in hs if h.eval_steps), default=None)
        if last is not None:
            keys = sorted({k for h in hs for k in h.eval})
            got = {k: [h.eval[k][-1] if h.eval_steps and h.eval_steps[-1] == last and k in h.eval else math.nan
                       for h in hs] for k in keys}
            vals = {f"{self.eval_label} {k}": (v if isinstance(history, list) else v[0]) for k, v in got.items()}
            if vals:
                self.append(last, **vals)
        self.flush()

    # ------------------------------------------------------------ drawing

    def flush(self) -> None:
        """Draw the current state now if anything changed since the last draw (the final state)."""
        if self._dirty:
            self.draw(final=True)

    def draw(self, final: bool = False) -> None:
        """Redraw now (``append`` calls this at most ``fps`` times a second)."""
        with self._lock:
            self._dirty = False
            try:
                self._draw(final)
            finally:
                self._last_draw = self._clock()  # after drawing: a slow first draw does not cause a burst

    def _draw(self, final: bool) -> None:
        if self.backend == "static":
            if final and not self._static_done and notebook.in_kernel() and notebook.on_main_thread():
                from IPython.display import display

                display(self.figure())
                self._static_done = True
                self.redraws += 1
            return
        self.redraws += 1
        if self.backend == "output":
            self.widget.outputs = ({"output_type": "display_data", "data": self._bundle(), "metadata": {}},)
        else:
            self._draw_figurewidget()

    def _flush_when_cell_ends(self) -> None:
        """Make sure the final state is drawn when the running notebook cell finishes."""
        if self._hook or not self._kernel or not notebook.on_main_thread():
            return
        ip = notebook.ipython()

        def hook(*_: Any) -> None:
            ip.events.unregister("post_run_cell", hook)
            self._hook = False
            self.flush()

        ip.events.register("post_run_cell", hook)
        self._hook = True

    def _bundle(self) -> dict[str, Any]:
        fig = self._figure_dict()
        text = {"text/plain": repr(self)}
        if notebook.environment() == "colab":
            import plotly.io as pio

            return {"text/html": pio.to_html(fig, include_plotlyjs="cdn", full_html=False, validate=False), **text}
        return {"application/vnd.plotly.v1+json": {**fig, "config": {"displaylogo": False}}, **text}

    def _draw_figurewidget(self) -> None:
        fig = self._figure_dict()
        fw = self.widget
        if self._widget_panels != self._panels or len(fw.data) != len(fig["data"]):
            fw.data = ()
            fw.update_layout(fig["layout"], overwrite=True)
            fw.add_traces(fig["data"])
            self._widget_panels = list(self._panels)
            return
        with fw.batch_update():
            for trace, new in zip(fw.data, fig["data"]):
                trace.x, trace.y, trace.name = new["x"], new["y"], new["name"]

    # ------------------------------------------------------------ display

    @property
    def widget(self) -> Any:
        """The ipywidget that shows the figure (to embed in a panel), or None for the static backend."""
        if self._widget is None and self.backend != "static":
            if self.backend == "output":
                import ipywidgets

                self._widget = ipywidgets.Output()
            else:
                import plotly.graph_objects as go

                self._widget = go.FigureWidget()
            self._shown_at = -1  # embedded by the caller
        return self._widget

    def _maybe_show(self) -> None:
        if self._shown_at is None and self.backend != "static" and self._kernel and notebook.on_main_thread():
            self.show()

    def show(self) -> None:
        """Display the live figure in the notebook (also what happens when it ends a cell)."""
        if notebook.in_kernel() or notebook.ipython() is not None:
            from IPython.display import display

            display(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        ip = notebook.ipython()
        count = getattr(ip, "execution_count", 0)
        if self.backend == "static":
            self._static_done = True
            import plotly.io as pio

            return pio.renderers["plotly_mimetype"].to_mimebundle(self._figure_dict()) | {"text/plain": repr(self)}
        if self._shown_at == count:  # already on screen in this cell: do not show a second copy
            return {"text/plain": repr(self)}
        widget = self.widget
        self._shown_at = count
        self.draw(final=True)
        return widget._repr_mimebundle_(include=include, exclude=exclude)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}: {len(s.x)}" for k, s in self._series.items()) or "no data"
        return f"LivePlot(backend={self.backend!r}, panels={self._panels}, {sizes})"
