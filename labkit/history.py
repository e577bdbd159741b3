"""What a training loop reports and who listens: :class:`History`, :class:`StepInfo`, :class:`Callback`.

The low module every layer may import (it depends on torch only): :func:`labkit.train.fit`, the population
engines of :func:`labkit.train.fit_many`, :func:`labkit.grokking.run`, trackers, live plots and widgets all speak
these three types. ``labkit.train`` re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from labkit.data import Dataset
    from labkit.losses import Loss

__all__ = ["Callback", "History", "StepInfo", "as_callbacks", "progress_bar"]


@dataclass
class History:
    """What one training run did.

    ``loss[t]`` is the training (mini-batch) loss at step ``t``, measured before
    that step's update; a diverged run ends with its non-finite loss.
    ``eval[name][j]`` was measured at step ``eval_steps[j]`` (on ``eval_data``, or
    on the full training set when none was given); the last entry is taken after
    the final update. Step ``t`` means "after ``t`` updates"; a run that is stopped
    or interrupted keeps exactly the steps whose update was applied (the same in
    :func:`fit` and :func:`fit_many`). ``tracked[name]`` holds what trackers
    (:class:`labkit.tracking.Every`) measured: ``{"steps": [...], "values": [...]}``.
    """

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval: dict[str, list[float]] = field(default_factory=dict)
    wall_time: float = 0.0
    diverged: bool = False
    diverged_at: int | None = None
    stopped_early: bool = False
    hparams: dict[str, Any] = field(default_factory=dict)
    tracked: dict[str, dict[str, list]] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of steps taken (including a final diverged one)."""
        return len(self.loss)

    @property
    def final_loss(self) -> float:
        """The last recorded training loss (``inf`` or ``nan`` if the run diverged)."""
        return self.loss[-1] if self.loss else math.nan

    def record_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self.eval_steps.append(step)
        for k, v in metrics.items():
            self.eval.setdefault(k, []).append(float(v))

    def track(self, step: int, values: Mapping[str, float]) -> None:
        """Record tracked scalars measured at ``step``."""
        for k, v in values.items():
            entry = self.tracked.setdefault(k, {"steps": [], "values": []})
            entry["steps"].append(int(step))
            entry["values"].append(float(v))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of everything recorded; valid JSON (non-finite numbers become None, i.e. null)."""
        return {
            "loss": _finite(self.loss),
            "lr": _finite(self.lr),
            "eval_steps": self.eval_steps,
            "eval": {k: _finite(v) for k, v in self.eval.items()},
            "tracked": {k: {"steps": v["steps"], "values": _finite(v["values"])} for k, v in self.tracked.items()},
            "wall_time": self.wall_time,
            "diverged": self.diverged,
            "diverged_at": self.diverged_at,
            "stopped_early": self.stopped_early,
            "hparams": {k: (_finite([v])[0] if isinstance(v, float) else v if isinstance(v, (int, str, bool))
                            or v is None else repr(v)) for k, v in self.hparams.items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (``.json`` appended if missing), atomically; returns the path."""
        from labkit import _io

        return _io.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> History:
        """A History read back from :meth:`save` (JSON ``null`` losses come back as NaN)."""
        from labkit import _io

        d = _io.read_json(path)
        nan = lambda vs: [math.nan if v is None else v for v in vs]  # noqa: E731
        return cls(loss=nan(d["loss"]), lr=nan(d["lr"]), eval_steps=list(d["eval_steps"]),
                   eval={k: nan(v) for k, v in d["eval"].items()}, wall_time=d["wall_time"],
                   diverged=d["diverged"], diverged_at=d["diverged_at"], stopped_early=d["stopped_early"],
                   hparams=dict(d["hparams"]),
                   tracked={k: {"steps": list(v["steps"]), "values": nan(v["values"])}
                            for k, v in d["tracked"].items()})

    def figure(self, **kwargs: Any) -> Any:
        """Loss (and metric) curves as a plotly figure (:func:`labkit.viz.loss_curves`)."""
        from labkit import viz

        return viz.loss_curves(self, **kwargs)


def _finite(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


@dataclass
class StepInfo:
    """What a callback sees at step ``step``, before that step's update.

    For :func:`fit`, ``loss`` and ``lr`` are floats and ``model`` holds the current
    parameters. For :func:`fit_many`, ``loss`` and ``lr`` are tensors over the members
    (loss NaN for members that have diverged), ``model`` is None and ``params`` is
    the stacked parameter dict ``{name: (members, ...)}``. ``optimizer_state`` is the optimiser itself, so that
    nothing re-implements it to know its state: the ``torch.optim.Optimizer`` :func:`fit` steps (its ``.state``
    holds momentum and Adam's moments; :func:`labkit.optim.preconditioner` reads it), or the stacked optimiser
    of :func:`fit_many` (``m``, ``v``, ``t``).
    """

    step: int
    loss: Any
    lr: Any
    metrics: dict[str, float]
    model: nn.Module | None
    params: dict[str, torch.Tensor] | None
    loss_fn: Loss
    data: Dataset
    batch_size: int | None
    optimizer: str | Callable
    history: History | list[History] | None = None
    optimizer_state: Any = None


class Callback:
    """Base class for training hooks; override what you need.

    ``on_step`` may return True to stop training after the current step.
    A plain function ``f(info)`` is used as ``on_step``.
    """

    def on_start(self, info: StepInfo) -> None:
        pass

    def on_step(self, info: StepInfo) -> bool | None:
        return None

    def on_end(self, history: History | list[History]) -> None:
        pass


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[StepInfo], bool | None]):
        self.fn = fn

    def on_step(self, info: StepInfo) -> bool | None:
        return self.fn(info)


def as_callbacks(callbacks: Iterable[Callback | Callable]) -> list[Callback]:
    """Callback objects from ``callbacks``: a plain function ``f(info)`` becomes an ``on_step`` hook."""
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback) or all(hasattr(cb, a) for a in ("on_start", "on_step", "on_end")):
            out.append(cb)
        elif callable(cb):
            out.append(_FunctionCallback(cb))
        else:
            raise TypeError(f"callbacks must be labkit.history.Callback objects or functions, got {cb!r}")
    return out


def progress_bar(total: int | None, desc: str, enabled: bool = True, *, iterable: Any = None) -> Any:
    """The one progress bar of labkit's loops (tqdm; appears after 2 s, hidden when ``enabled`` is False, gone when
    done). ``iterable``: wrap it (``for w in progress_bar(None, "widths", iterable=widths)``).

    In a notebook, tqdm removes a finished bar by closing its widget; the cell's output still names that widget,
    so a page reloaded with the kernel alive showed "Error displaying widget: model not found" in its place.
    Here a bar that was shown is hidden instead (its widget stays alive; one never shown is closed as usual).
    """
    return _bar_class()(iterable, total=total, desc=desc, disable=not enabled, delay=2.0, leave=False,
                        mininterval=0.25)


@cache
def _bar_class() -> type:
    from tqdm.auto import tqdm

    class Bar(tqdm):  # type: ignore[misc, valid-type]
        def display(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("close") and getattr(self, "displayed", False) and hasattr(self, "container"):
                self.container.layout.display = "none"  # a notebook bar on screen: hide it, keep its model
                return None
            return super().display(*args, **kwargs)

    return Bar
