"""Interactive zoom into the trainability boundary, like a Mandelbrot viewer.

``fractal_explorer()`` shows a plotly ``FigureWidget`` heatmap of a scan with
controls. Nothing runs until you ask: press **Scan**, drag a rectangle on the
image (box zoom) to rescan that window, or click a point to zoom ``factor``-fold
around it. **Back** steps along the breadcrumb of windows, **Stop** cancels a
running scan. The current window's box-counting dimension is shown beside the
image when it is defined (enough scales, some boundary), otherwise why not;
**PNG** writes the current image and **Sequence** a folder of frames from the
outermost to the current window. Scans and sequences run on a
:class:`~labkit.widgets.runner.Runner` (one background thread model for every
labkit widget), so the page stays responsive; from code use ``zoom_to``,
``zoom_at``, ``back``, ``run`` and ``wait`` (that is also how notebooks drive it
headless). Nothing non-finite is ever sent to the page: unscanned pixels are
sent as ``None`` (a JSON null), not NaN::

    ex = fractal_explorer("quick", resolution=48)
    ex                      # display first; then, in a later cell:
    ex.run(); ex.wait()
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import numpy as np

from labkit import _checks
from labkit.widgets.runner import Runner, set_torch_threads

__all__ = ["FractalExplorer", "fractal_explorer"]

COLOURS = ("outcome", "sharpness")
_AXES = {"lr_in vs lr_out": ("lr_in", "lr_out"), "offset vs lr": ("offset", "lr")}


class FractalExplorer:
    """The explorer's state (windows, current scan) and its widgets; displays itself."""

    def __init__(self, preset: str = "quick", resolution: int = 48, steps: int | None = None,
                 axes: str | None = None, out_dir: str | Path = "fractal_exports", threads: int | None = None,
                 executor: Any = None, colour: str = "outcome") -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        from labkit.fractal.curvature_map import CATAPULT, STABLE
        from labkit.fractal.experiment import PRESETS, Experiment
        from labkit.viz import theme
        from labkit.viz._figurewidget import figure_widget

        self._Experiment = Experiment
        exp = Experiment.preset(preset)
        self.out_dir = Path(out_dir)
        self.threads = threads
        self.executor = executor  # labkit.parallel: None in-process, "local", an address or a Dask Client
        if threads is not None:
            set_torch_threads(threads)  # decided once, here on the main thread, never in the scan's thread
        self.preset = w.Dropdown(options=list(PRESETS), value=preset, description="preset")
        _checks.in_range("resolution", resolution, 2, 4096)
        sizes = sorted({16, 24, 32, 48, 64, 96, 128, 192, 256, resolution})  # the requested size is always offered
        self.resolution = w.Dropdown(options=sizes, value=resolution, description="pixels")
        self.steps = w.BoundedIntText(value=steps or exp.steps, min=20, max=5000, description="steps")
        axes_name = axes or next(k for k, v in _AXES.items() if v == exp.axes)
        self.axes = w.Dropdown(options=list(_AXES), value=axes_name, description="axes")
        self.factor = w.Dropdown(options=[2, 4, 10, 100], value=10, description="click zoom")
        _checks.choice("colour", colour, COLOURS)
        self.colour = w.Dropdown(options=list(COLOURS), value=colour, description="colour")  # sharpness: measured
        self.runner = Runner(self._scan, restart_on_change=False, run_label="Scan")
        self.scan_button, self.stop_button = self.runner.run_button, self.runner.stop_button
        self.status = self.runner.status_line
        self.status.value = "Press <b>Scan</b>, drag a rectangle or click a point to zoom."
        self.back_button = w.Button(description="Back", icon="arrow-left", disabled=True)
        self.reset_button = w.Button(description="Reset", icon="home")
        self.png_button = w.Button(description="PNG", icon="download")
        self.seq_button = w.Button(description="Sequence", icon="film")
        self.crumbs = w.HTML("")
        self.info = w.HTML("")
        self.fig = figure_widget(theme.figure("", "", "", height=460, width=520))  # redrawn after a page reload
        self.fig.add_trace(go.Heatmap(z=[[None]], colorscale=theme.DIVERGING, zmin=-1, zmax=1, showscale=False,
                                      hovertemplate="x=%{x:.6g}<br>y=%{y:.6g}<extra></extra>"))
        # the curvature map's overlays (colour="sharpness"): the band 2 <= eta lambda <= CATAPULT shaded, its edges
        # drawn (the contour = 2 is the linear-stability limit), and the convergence boundary as a white line
        band = dict(type="constraint", operation="[]", value=[STABLE, CATAPULT])
        self.fig.add_trace(go.Contour(z=[[None]], contours=band,
                                      fillcolor="rgba(0,0,0,0.18)", line=dict(color="black", width=1.5),
                                      showscale=False, hoverinfo="skip", name="catapult band", visible=False))
        self.fig.add_trace(go.Contour(z=[[None]], contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                                      line=dict(color="white", width=2), showscale=False, hoverinfo="skip",
                                      name="convergence boundary", visible=False))
        self.fig.update_layout(dragmode="zoom", margin=dict(l=70, r=10, t=30, b=60))
        self.fig.data[0].on_click(self._on_click)
        self.fig.layout.on_change(self._on_relayout, "xaxis.range", "yaxis.range")
        actions = {self.back_button: self.back, self.reset_button: self.reset, self.png_button: self.export_png,
                   self.seq_button: self.export_sequence}  # Scan and Stop are the Runner's buttons
        for button, action in actions.items():
            button.on_click(lambda _, action=action: action())
        for c in (self.preset, self.axes):
            c.observe(lambda _: self.reset(run=False), names="value")
        controls = w.VBox([self.preset, self.axes, self.resolution, self.steps, self.factor, self.colour,
                           w.HBox([self.scan_button, self.stop_button]), w.HBox([self.back_button, self.reset_button]),
                           w.HBox([self.png_button, self.seq_button]), self.info])
        reload_note = w.HTML("<small>Reloaded the page and the figure stays empty or clicks do nothing? "
                             "Run this cell again.</small>")
        self.widget = w.VBox([w.HBox([controls, self.fig]), self.crumbs, self.status, reload_note])
        self.windows: list[tuple] = []  # breadcrumb of windows ((x_lo, x_hi), (y_lo, y_hi))
        self.result = None
        self._error: str | None = None  # a refused window (not a run)
        self._updating = False
        self.reset(run=False)

    # ------------------------------------------------------------------ state
    def experiment(self) -> Any:
        exp = self._Experiment.preset(self.preset.value, steps=int(self.steps.value))
        axes = _AXES[self.axes.value]
        if axes != exp.axes:
            lr = axes[0] != "offset"
            exp = exp.replace(axes=axes, x_range=(1e-3, 1e6) if lr else (-2.0, 2.0),
                              y_range=(1e-3, 1e6) if lr else (1e-2, 1e3))
        return exp

    @property
    def log(self) -> tuple[bool, bool]:
        return _AXES[self.axes.value][0] != "offset", True

    def reset(self, run: bool = False) -> None:
        """Back to the preset's first window."""
        exp = self.experiment()
        self.windows = [(exp.x_range, exp.y_range)]
        self._show_crumbs()
        if run:
            self.run()

    def _show_crumbs(self) -> None:
        def fmt(r):
            return f"[{r[0]:.4g}, {r[1]:.4g}]"

        parts = [f"{k}: x {fmt(xr)} y {fmt(yr)}" for k, (xr, yr) in enumerate(self.windows)]
        self.crumbs.value = "<small>windows: " + " &rarr; ".join(parts[-4:]) + "</small>"
        self.back_button.disabled = len(self.windows) < 2

    # ------------------------------------------------------------------ navigation
    def zoom_to(self, x_range: tuple[float, float], y_range: tuple[float, float], run: bool = True) -> None:
        """Push a new window (checked against the float64 depth limit) and rescan it."""
        from labkit.fractal.result import check_window

        try:
            exp = self.experiment()
            import torch

            xr, yr = check_window(x_range, y_range, (self.resolution.value,) * 2, self.log,
                                  torch.finfo(exp.torch_dtype).eps)
        except ValueError as err:
            self._error = str(err)
            self.status.value = f"<span style='color:#B2182B'>{html.escape(self._error)}</span>"
            return
        self.windows.append((xr, yr))
        self._show_crumbs()
        if run:
            self.run()

    def zoom_at(self, x: float, y: float, factor: float | None = None, run: bool = True) -> None:
        """Zoom ``factor``-fold (default: the dropdown) around the point ``(x, y)``."""
        from labkit.fractal.result import zoom_window

        ranges = zoom_window((x, y), self.windows[-1], self.log, float(factor or self.factor.value))
        self.zoom_to(*ranges, run=run)

    def back(self, run: bool = True) -> None:
        """Step back to the previous window."""
        if len(self.windows) > 1:
            self.windows.pop()
            self._show_crumbs()
            if run:
                self.run()

    def _on_click(self, trace: Any, points: Any, state: Any) -> None:
        if points.xs and not self.running:
            self.zoom_at(points.xs[0], points.ys[0])

    def _on_relayout(self, layout: Any, xrange: Any, yrange: Any) -> None:
        if self._updating or self.running or xrange is None or yrange is None:
            return
        conv = [(lambda v: 10.0**v) if lg else float for lg in self.log]
        try:
            xr = tuple(sorted(conv[0](v) for v in xrange))
            yr = tuple(sorted(conv[1](v) for v in yrange))
        except (TypeError, ValueError, OverflowError):
            return
        self.zoom_to(xr, yr)

    # ------------------------------------------------------------------ scanning
    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def error(self) -> str | None:
        """The last problem: a refused window, or the exception that ended the last run (None if all went well)."""
        if self._error is not None:
            return self._error
        err = self.runner.error
        return None if err is None else f"{type(err).__name__}: {err}"

    def run(self, background: bool = True) -> None:
        """Scan the current window (a running scan is cancelled first); ``background=False`` waits for it."""
        self._error = None
        self.runner.start("code")
        if not background:
            self.wait()

    def stop(self) -> None:
        """Cancel the running scan (it stops after the current chunk)."""
        self.runner.stop(wait=False)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the running scan ends; return the current :class:`~labkit.fractal.ScanResult`."""
        self.runner.wait(timeout, raise_errors=False)
        return self.result

    def _scan(self, ctx: Any) -> Any:
        """The Runner's work: scan the newest window, drawing the image as it fills in."""
        from labkit.fractal.scanner import scan

        last = [0.0]

        def partial(res: Any) -> None:
            if time.perf_counter() - last[0] > 0.1:
                last[0] = time.perf_counter()
                self._draw(res)

        (xr, yr), exp = self.windows[-1], self.experiment()
        pixels = int(self.resolution.value)
        ctx.status("scanning...")
        res = scan(exp, xr, yr, pixels, log=self.log, progress=False, cancel=ctx.stopped, on_chunk=partial,
                   chunk_size=max(64, pixels * pixels // 8),  # >= 8 chunks (or tiles): the image fills in
                   executor=self.executor,  # a zoom stops this job: its queued tiles are cancelled
                   measure="sharpness" if self.colour.value == "sharpness" else None)
        self.result = res
        self._draw(res)
        conv = res.converged_fraction()
        rate = res.cells_done * exp.steps / max(res.wall_time, 1e-9)
        self.info.value = (f"<b>boundary dimension</b> {html.escape(res.dimension_text())}<br>"
                           + ("" if np.isnan(conv) else f"converged {conv:.0%}")
                           + ("" if res.complete else f" of {res.cells_done:,} finished cells (partial)")
                           + f"<br>{rate:,.0f} network-steps/s")
        ctx.note = "drag a rectangle or click to zoom"
        return res

    def _draw(self, res: Any) -> None:
        names = {"lr_in": "input-layer lr", "lr_out": "output-layer lr", "offset": "input-weight offset",
                 "lr": "learning rate"}
        self._updating = True
        try:
            curv = res.sharpness is not None and self.colour.value == "sharpness"
            # colour by log10(sharpness / 2) on the diverging scale: white at the stability limit 2, +-1 a decade
            img = np.clip(np.log10(np.maximum(res.sharpness, 1e-300) / 2), -1, 1) if curv else res.image()
            z = np.where(np.isnan(img), None, img).tolist()  # NaN is not JSON: unscanned pixels go as null
            with self.fig.batch_update():
                self.fig.data[0].update(z=z, x=res.x, y=res.y)
                for trace, values in zip(self.fig.data[1:], (res.sharpness, res.converged)):
                    trace.update(z=values.astype(float).tolist() if curv else [[None]], x=res.x, y=res.y,
                                 visible=curv)
                self.fig.layout.xaxis.update(type="log" if res.log[0] else "linear", autorange=True,
                                             title_text=names[res.axes[0]])
                self.fig.layout.yaxis.update(type="log" if res.log[1] else "linear", autorange=True,
                                             title_text=names[res.axes[1]])
                self.fig.layout.title = (f"{res.experiment.name}: lr x sharpness at init (white = 2)" if curv else
                                         f"{res.experiment.name}: converged (blue) / diverged (red)")
        finally:
            self._updating = False

    # ------------------------------------------------------------------ export
    def export_png(self, path: str | Path | None = None) -> Path | None:
        """Write the current image as a PNG (default ``out_dir/fractal_<depth>.png``, the folder created)."""
        from labkit._io import ensure_folder

        if self.result is None:
            self.status.value = "nothing to export yet: press Scan first"
            return None
        path = Path(path) if path else self.out_dir / f"fractal_{len(self.windows) - 1:02d}.png"
        try:
            written = self.result.to_png(ensure_folder(path.parent) / path.name,
                                         scale=max(1, 512 // max(self.result.resolution)))
        except OSError as err:  # a one-line reason (missing folder, permission), never a traceback
            self._error = str(err)
            self.status.value = f"<span style='color:#B2182B'>{html.escape(self._error)}</span>"
            return None
        self.status.value = f"wrote {html.escape(str(written))}"
        return written

    def export_sequence(self, folder: str | Path | None = None, frames: int = 12, background: bool = True) -> None:
        """Write frames from the outermost to the current window as ``folder/frame_000.png ...`` (on the Runner)."""
        from labkit.fractal.sequence import zoom_sequence

        folder = Path(folder) if folder else self.out_dir / "sequence"
        start, end, exp, log = self.windows[0], self.windows[-1], self.experiment(), self.log
        pixels = int(self.resolution.value)

        def work(ctx: Any) -> None:
            ctx.status(f"rendering {frames} frames into {html.escape(str(folder))}...")
            done = zoom_sequence(exp, start, end, frames, pixels, folder=folder, log=log, cancel=ctx.stopped)
            ctx.note = f"wrote {len(done)} frames into {html.escape(str(folder))}"

        self._error = None
        self.runner.start("code", work=work)
        if not background:
            self.wait()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def fractal_explorer(preset: str = "quick", resolution: int = 48, steps: int | None = None, *,
                     axes: str | None = None, out_dir: str | Path = "fractal_exports",
                     threads: int | None = None, executor: Any = None, colour: str = "outcome") -> FractalExplorer:
    """An interactive zoom explorer of the trainability boundary (display it, then press Scan).

    ``executor`` runs its scans on a Dask cluster (:mod:`labkit.parallel`): tiles fill the image as they
    arrive, and zooming away cancels the tiles still queued for the old window. ``colour="sharpness"`` colours
    the map by the preconditioned sharpness at initialisation (:mod:`labkit.fractal.curvature_map`) with the band
    between 2 and the catapult limit shaded and the convergence boundary drawn over it.
    """
    return FractalExplorer(preset, resolution, steps, axes, out_dir, threads, executor, colour)
