"""``train_panel``: train a small network live, with every knob on a control.

The panel is a :class:`TrainPanel`: controls (dataset, width, depth, optimizer,
learning rate, batch size, steps), a :class:`~labkit.widgets.runner.Runner`
(Run / Stop, restart on change) and a :class:`~labkit.viz.LivePlot` of the
training loss, the test loss and the test accuracy.

Seeds: runs started from code (``panel.run()``) or by moving a control use the
same seed, so curves compare like for like; each further press of **Run** draws
a fresh initialisation and batch order (seed + 1), to show run-to-run
variation. A ``seed`` control, if added, takes over. Themed notebooks extend it
without copying it:

- ``controls={"weight_decay": lr_slider(1e-4, 1e-6, 1e-1, "weight decay")}`` adds
  controls; their values arrive in ``params`` (``fit`` options among them, such
  as ``weight_decay`` or ``lr_schedule``, are passed on to ``fit``);
- ``callbacks=lambda params, live: [...]`` adds ``fit`` callbacks for each run
  (e.g. a sharpness tracker that calls ``live.append`` and a
  ``live.reference("sharpness", 2 / params["lr"], "2/lr")`` line), with
  ``panels=`` laying out the extra series;
- subclasses override :meth:`TrainPanel.data`, :meth:`TrainPanel.model` or
  :meth:`TrainPanel.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
from torch import nn

import labkit
from labkit import _checks
from labkit import data as lkdata
from labkit.data import Dataset
from labkit.models import mlp
from labkit.train import Callback, History, fit
from labkit.viz.live import LivePlot
from labkit.widgets import controls as ctl
from labkit.widgets.runner import RunContext, Runner, RunnerPanel

__all__ = ["TrainPanel", "train_panel"]

_FIT_OPTIONS = ("weight_decay", "lr_schedule", "loss", "seed")


def load_split(name: str, n: int = 512, seed: int = 0, test_frac: float = 0.2) -> tuple[Dataset, Dataset]:
    """Dataset ``name`` (see :data:`labkit.widgets.controls.DATASETS`) split into ``(train, test)``."""
    ds = lkdata.digits() if name == "digits" else lkdata.load(name, n=n, seed=seed, **ctl.DATASETS.get(name, {}))
    return ds.split(1 - test_frac, seed=seed)


class TrainPanel(RunnerPanel):
    """A live training panel (see :func:`train_panel`); ``history`` and ``model_`` hold the last run."""

    def __init__(
        self,
        *,
        dataset: str = "gaussian_mixture",
        datasets: Sequence[str] | None = None,
        n: int = 512,
        width: int = 32,
        depth: int = 2,
        optimizer: str = "sgd",
        lr: float = 0.1,
        batch_size: int | None = 64,
        steps: int = 300,
        seed: int = 0,
        controls: Mapping[str, widgets.ValueWidget] | None = None,
        callbacks: Callable[[dict[str, Any], LivePlot], Sequence[Callback]] | None = None,
        panels: Any = None,
        backend: str = "auto",
        title: str = "",
        device: Any = None,
    ):
        # the panel's own argument names in errors (the control builders only know "value")
        _checks.choice("dataset", dataset, list(datasets) if datasets else list(ctl.DATASETS))
        _checks.positive("lr", lr)
        if not 1e-4 <= lr <= 10.0:
            raise ValueError(f"lr must lie in the slider's range [0.0001, 10], got {lr}")
        _checks.choice("optimizer", optimizer, list(ctl.OPTIMIZERS))
        self.n, self.seed = n, seed
        self.device = device  # None: labkit.device() (cuda when present, e.g. on Colab)
        self._reseeds = 0  # Run presses after the first run: each one trains from a new seed
        self.controls: dict[str, widgets.ValueWidget] = {
            "dataset": ctl.dataset_dropdown(dataset, list(datasets) if datasets else None),
            "width": ctl.width_slider(width),
            "depth": ctl.depth_slider(depth),
            "optimizer": ctl.optimizer_dropdown(optimizer),
            "lr": ctl.lr_slider(lr),
            "batch_size": ctl.batch_size_slider(batch_size),
            "steps": ctl.steps_slider(steps, min=min(50, steps), step=10),
            **dict(controls or {}),
        }
        self.extra_callbacks = callbacks
        # a panel is a widget, so its figure is one too (the static backend is for scripts)
        backend = "output" if backend == "auto" else backend
        self.live = LivePlot(panels, backend=backend, title=title, eval_label="test")
        self.runner = Runner(self.train, self.controls)
        self.history: History | None = None
        self.model_: nn.Module | None = None
        self._data_cache: dict[tuple[str, int, int], tuple[Dataset, Dataset]] = {}
        boxes = list(self.controls.values())
        half = (len(boxes) + 1) // 2
        parts: list[widgets.Widget] = [widgets.HBox([widgets.VBox(boxes[:half]), widgets.VBox(boxes[half:])]),
                                       self.runner.widget]
        if self.live.widget is not None:
            parts.append(self.live.widget)
        self.widget = widgets.VBox(parts)

    # ------------------------------------------------------------ overridable pieces

    def data(self, params: dict[str, Any]) -> tuple[Dataset, Dataset]:
        """``(train, test)`` for a run (cached; the panel's own ``seed`` fixes the data, not the run's)."""
        key = (params["dataset"], self.n, self.seed)
        if key not in self._data_cache:
            self._data_cache[key] = load_split(key[0], key[1], key[2])
        return self._data_cache[key]

    def model(self, params: dict[str, Any], train: Dataset) -> nn.Module:
        """A fresh MLP ``in -> [width] * depth -> out`` for a run."""
        in_dim = 1
        for d in train.in_shape:
            in_dim *= d
        return mlp(in_dim, [params["width"]] * params["depth"], train.out_dim,
                   seed=int(params.get("seed", self.seed)))

    def callbacks(self, params: dict[str, Any]) -> list[Callback]:
        """Extra ``fit`` callbacks for a run (from the ``callbacks`` argument)."""
        return list(self.extra_callbacks(params, self.live)) if self.extra_callbacks else []

    def train(self, ctx: RunContext) -> History:
        """One run: build data and model from ``ctx.params``, ``fit`` with the live plot, stoppable."""
        p = ctx.params
        if ctx.reason == "button" and self.history is not None:
            self._reseeds += 1
        p.setdefault("seed", self.seed + self._reseeds)
        train, test = self.data(p)
        model = self.model(p, train)
        bs = ctl.batch_size_value(p["batch_size"], len(train))
        self.live.clear()
        self.live.draw()  # show the reset at once: the reader sees the new run begin
        extra = self.callbacks(p)
        options = {k: p[k] for k in _FIT_OPTIONS if k in p}
        hist = fit(model, train, optimizer=p["optimizer"], lr=p["lr"], batch_size=bs, steps=p["steps"],
                   eval_data=test, eval_every=max(1, p["steps"] // 100), progress=False,
                   callbacks=[self.live, *extra, ctx.callback], device=self.device or labkit.device(), **options)
        self.history, self.model_ = hist, model
        if hist.diverged:  # the status line must not read as a success
            ctx.outcome = f"diverged at step {hist.diverged_at}"
            ctx.note = "the loss is no longer finite: try a smaller learning rate"
        return hist

    # ------------------------------------------------------------ driving it

    def stop(self) -> None:
        """Press Stop from code and wait until the run has ended."""
        self.runner.stop(wait=True)

    def set(self, **values: Any) -> None:
        """Set control values from code, e.g. ``panel.set(lr=0.5)`` (restarts a running run)."""
        for name, v in values.items():
            if name not in self.controls:
                raise ValueError(f"no control {name!r}; controls: {sorted(self.controls)}")
            self.controls[name].value = v


def train_panel(**kwargs: Any) -> TrainPanel:
    """A ready panel to train a small MLP live: ``panel = train_panel(lr=0.1); panel``.

    Keyword arguments (all optional) set the initial control values
    (``dataset``, ``width``, ``depth``, ``optimizer``, ``lr``, ``batch_size``,
    ``steps``), the dataset size ``n`` and ``seed``, and extend the panel
    (``controls``, ``callbacks``, ``panels``, see the module docstring); ``device``
    defaults to :func:`labkit.device` (``cuda`` when present).
    Press Run, or call ``panel.run(wait=True)``; moving a control during a run
    restarts it with the new value.
    """
    return TrainPanel(**kwargs)
