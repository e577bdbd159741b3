"""A live loss landscape: train, and watch the path grow over the contour; then slide along it, click to probe.

``landscape_explorer(make_model, data)`` shows a plotly ``FigureWidget`` with the loss on a plane through the
initial parameters, spanned by the negative gradient at initialisation and a filter-normalised random direction
(made orthogonal to it): the plane the first steps move in. **Run** trains in a background thread
(:class:`~labkit.widgets.runner.Runner`); a :class:`labkit.landscape.Trajectory` records snapshots, each is
projected onto the plane and the path grows; when it leaves the window the contour is recomputed around it
(one vectorised grid). At the end the plane switches to the trajectory's PCA plane (the path drawn on it, the
explained variance in the title). The **step** slider moves a marker along the recorded path; clicking the
contour evaluates the loss at that point. From code: ``run``, ``wait``, ``show_step``, ``probe`` (how notebooks
drive it headless)::

    ex = landscape_explorer(lambda: labkit.models.mlp(64, [32], 10, seed=0), digits)
    ex                      # display first; then, in a later cell:
    ex.run(); ex.wait()
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks
from labkit.widgets.controls import batch_size_slider, batch_size_value, lr_slider, steps_slider
from labkit.widgets.runner import Runner

__all__ = ["LandscapeExplorer", "landscape_explorer"]


class LandscapeExplorer:
    """The explorer's state (plane, path, probes) and widgets; displays itself."""

    def __init__(self, make_model: Callable[[], nn.Module], data: Any, *, lr: float = 0.1, steps: int = 300,
                 batch_size: int | None = None, every: int = 5, resolution: int = 31, seed: int = 0) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        from labkit.data import as_dataset
        from labkit.viz import theme
        from labkit.viz._figurewidget import figure_widget

        if not callable(make_model):
            raise TypeError(f"make_model must be a function returning a fresh network, got {make_model!r}")
        self.make_model, self.data = make_model, as_dataset(data)
        self.every = _checks.positive("every", every, integer=True)
        self.resolution = _checks.in_range("resolution", resolution, 5, 401)
        self.seed = _checks.seed("seed", seed)
        self.lr = lr_slider(lr, 1e-3, 10.0)
        self.steps = steps_slider(steps, 20, 5000, 10)
        self.batch = batch_size_slider(batch_size, 1, 1024)
        self.runner = Runner(self._train, {"lr": self.lr, "steps": self.steps, "batch_size": self.batch},
                             restart_on_change=False)
        self.step = w.IntSlider(value=0, min=0, max=0, description="step", continuous_update=True,
                                layout={"width": "380px"})
        self.info = w.HTML("Press <b>Run</b>; then slide along the path or click the contour.")
        self.fig = figure_widget(theme.figure("loss landscape", "direction 1", "direction 2", height=460,
                                              width=560))  # a reloaded page redraws the current surface
        self.fig.add_trace(go.Contour(z=[[None]], colorscale="Viridis", ncontours=25, name="log10 loss",
                                      colorbar=dict(title="log10 loss"),
                                      hovertemplate="a=%{x:.3g}<br>b=%{y:.3g}<br>log10 loss=%{z:.3f}<extra></extra>"))
        for name, style in (("path", dict(mode="lines+markers", line=dict(color="white"), marker=dict(size=4))),
                            ("start", dict(mode="markers", marker=dict(size=12, color="#ef553b"))),
                            ("end", dict(mode="markers", marker=dict(size=14, symbol="star", color="#ffd700"))),
                            ("step", dict(mode="markers", marker=dict(size=14, symbol="x", color="#00cc96"))),
                            ("probes", dict(mode="markers", marker=dict(size=9, symbol="diamond", color="#ab63fa")))):
            self.fig.add_trace(go.Scatter(x=[], y=[], name=name, **style))
        self.fig.data[0].on_click(lambda _t, points, _s: self._on_click(points))
        self.step.observe(lambda change: self.show_step(change["new"]), names="value")
        self.widget = w.VBox([w.HBox([w.VBox([self.lr, self.steps, self.batch, self.runner.widget, self.step,
                                              self.info]), self.fig])])
        self.risk: Any = None
        self.origin: torch.Tensor | None = None
        self.directions: torch.Tensor | None = None
        self.path: np.ndarray = np.zeros((0, 2))
        self.path_steps: list[int] = []
        self.path_loss: list[float] = []
        self.probes: list[tuple[float, float, float]] = []
        self.window: tuple[tuple[float, float], tuple[float, float]] = ((-1.0, 1.0), (-1.0, 1.0))
        self.plane: Any = None

    # ------------------------------------------------------------ the plane

    def _grid(self) -> None:
        from labkit import landscape

        (x0, x1), (y0, y1) = self.window
        xs, ys = np.linspace(x0, x1, self.resolution), np.linspace(y0, y1, self.resolution)
        a, b = np.meshgrid(xs, ys)
        values = landscape.evaluate(self.risk, None, self.origin, self.directions, np.stack([a.ravel(), b.ravel()], 1),
                                    progress=False).reshape(len(ys), len(xs))
        z = np.log10(np.maximum(values, 1e-12))
        with self.fig.batch_update():
            self.fig.data[0].update(x=xs, y=ys, z=np.where(np.isfinite(z), z, None))

    def _fit_window(self, force: bool = False) -> None:
        """Recompute the contour when the path has left the window (a margin of a quarter on every side)."""
        lo, hi = self.path.min(0), self.path.max(0)
        (x0, x1), (y0, y1) = self.window
        if force or lo[0] < x0 or hi[0] > x1 or lo[1] < y0 or hi[1] > y1:
            span = np.maximum(hi - lo, 1e-3)
            self.window = ((lo[0] - span[0] / 4, hi[0] + span[0] / 4), (lo[1] - span[1] / 4, hi[1] + span[1] / 4))
            self._grid()

    def _start_plane(self, model: nn.Module) -> None:
        from labkit import landscape
        from labkit.risk import Risk

        self.risk = Risk(copy.deepcopy(model), "auto", self.data)
        self.origin = self.risk.theta
        g = self.risk.gradient()
        d1 = -g / g.norm().clamp_min(1e-30)
        d2 = landscape.filter_normalize(landscape.random_directions(self.risk.spec, 1, seed=self.seed)[0],
                                        self.risk.params)
        d2 = d2 - (d2 @ d1) * d1
        self.directions = torch.stack([d1, d2 / d2.norm().clamp_min(1e-30)])

    def _project(self, snapshot: torch.Tensor) -> np.ndarray:
        return (self.directions @ (snapshot.to(self.origin) - self.origin)).cpu().numpy()

    def _draw_path(self) -> None:
        p = self.path
        with self.fig.batch_update():
            self.fig.data[1].update(x=p[:, 0], y=p[:, 1])
            self.fig.data[2].update(x=p[:1, 0], y=p[:1, 1])
            self.fig.data[3].update(x=p[-1:, 0], y=p[-1:, 1])
        self.step.max = max(0, len(p) - 1)

    # ------------------------------------------------------------ training (in the Runner's thread)

    def _train(self, ctx: Any) -> Any:
        from labkit import landscape, train
        from labkit.train import Callback

        model = self.make_model()
        self._start_plane(model)
        self.path, self.path_steps, self.path_loss, self.probes = np.zeros((0, 2)), [], [], []
        self.window = ((-0.1, 1.0), (-0.5, 0.5))
        self.fig.data[5].update(x=[], y=[])
        self._grid()
        traj = landscape.Trajectory(every=self.every, max_snapshots=512)
        explorer = self

        class Grow(Callback):  # after the Trajectory has recorded: project, draw, follow
            def on_step(self, info: Any) -> None:
                if traj.steps and traj.steps[-1] == info.step:
                    explorer._append(traj.records[-1]["snapshot"], info.step, float(info.loss))

        hist = train.fit(model, self.data, lr=float(ctx.params["lr"]), steps=int(ctx.params["steps"]),
                         batch_size=batch_size_value(ctx.params["batch_size"], len(self.data)), seed=self.seed,
                         progress=False, callbacks=[traj, Grow(), ctx.callback])
        if len(traj) >= 3 and not hist.diverged:
            self.plane = landscape.plane(self.risk, None, traj, resolution=self.resolution, progress=False)
            pca = landscape.pca_directions(traj)
            self.origin, self.directions = pca.origin.to(self.origin), pca.directions.to(self.origin)
            self.path, self.path_steps = np.asarray(pca.coords), list(pca.steps)
            self.path_loss = [r["loss"] for r in traj.records]
            self.window = ((float(self.plane.x[0]), float(self.plane.x[-1])),
                           (float(self.plane.y[0]), float(self.plane.y[-1])))
            z = np.log10(np.maximum(self.plane.values, 1e-12))
            with self.fig.batch_update():
                self.fig.data[0].update(x=self.plane.x, y=self.plane.y, z=np.where(np.isfinite(z), z, None))
                self.fig.layout.title.text = (f"PCA plane of the run: {100 * sum(self.plane.explained):.1f}% of the "
                                              "path's variance")
            self._draw_path()
            ctx.note = f"PCA plane, {100 * sum(self.plane.explained):.1f}% explained"
        return hist

    def _append(self, snapshot: torch.Tensor, step: int, loss: float) -> None:
        self.path = np.vstack([self.path, self._project(snapshot)[None]])
        self.path_steps.append(step)
        self.path_loss.append(loss)
        if len(self.path) >= 2:
            self._fit_window()
        self._draw_path()

    # ------------------------------------------------------------ reading the picture

    def show_step(self, index: int) -> None:
        """Mark the ``index``-th recorded snapshot on the path and show its step and loss."""
        if not len(self.path):
            return
        i = int(np.clip(index, 0, len(self.path) - 1))
        self.fig.data[4].update(x=[self.path[i, 0]], y=[self.path[i, 1]])
        self.info.value = f"step {self.path_steps[i]}: training loss {self.path_loss[i]:.4g}"

    def probe(self, a: float, b: float) -> float:
        """The loss at plane coordinates ``(a, b)`` (marked on the figure)."""
        from labkit import landscape

        if self.risk is None:
            raise RuntimeError("nothing to probe yet: run the explorer first")
        value = float(landscape.evaluate(self.risk, None, self.origin, self.directions, [[a, b]], progress=False)[0])
        self.probes.append((float(a), float(b), value))
        self.fig.data[5].update(x=[p[0] for p in self.probes], y=[p[1] for p in self.probes])
        self.info.value = f"loss at ({a:.3g}, {b:.3g}): {value:.4g}"
        return value

    def _on_click(self, points: Any) -> None:
        if points.xs:
            try:
                self.probe(points.xs[0], points.ys[0])
            except Exception as err:
                self.info.value = f"cannot evaluate there: {err}"

    # ------------------------------------------------------------ control

    def run(self) -> None:
        self.runner.start("code")

    def wait(self, timeout: float | None = None) -> Any:
        self.runner.wait(timeout)
        return self.runner.result

    def stop(self) -> None:
        self.runner.stop()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def landscape_explorer(make_model: Callable[[], nn.Module], data: Any, **kwargs: Any) -> LandscapeExplorer:
    """A :class:`LandscapeExplorer` (``lr``, ``steps``, ``batch_size``, ``every``, ``resolution``, ``seed``)."""
    return LandscapeExplorer(make_model, data, **kwargs)
