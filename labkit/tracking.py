"""One tracker: measure a quantity every ``k`` steps of :func:`labkit.train.fit`, record it, stream it.

:class:`Every` is the loop every probe-during-training shares (:class:`labkit.hessian.Sharpness`,
:class:`labkit.ntk.KernelTracker`, :class:`labkit.batchsize.NoiseScaleTracker` are thin subclasses):

- at steps ``0, k, 2k, ...`` (before that step's update) it calls ``measure(info)``, which returns a
  dict of values (or one value, recorded under ``name``);
- it keeps ``steps`` and ``records`` (one dict per measurement) and :meth:`series` of one key;
- it writes the scalar values into ``History.tracked`` (so they are saved with the run) and, given a
  ``live`` plot (:class:`labkit.viz.LivePlot`), appends them to it (:meth:`live_values` picks which);
- ``final=True`` measures once more after the last update;
- it refuses :func:`labkit.train.fit_many` before the first step (it follows one network).

>>> import labkit, torch
>>> ds = labkit.data.teacher_student(32, dim=2, teacher_width=4, seed=0)
>>> model = labkit.models.mlp(2, [8], 1, seed=0)
>>> norm = Every(5, lambda info: float(torch.cat([p.detach().flatten() for p in info.model.parameters()]).norm()),
...              name="weight_norm")
>>> hist = labkit.train.fit(model, ds, steps=12, callbacks=[norm], progress=False)
>>> recorded = hist.tracked["weight_norm"]
>>> norm.steps, recorded["steps"]
([0, 5, 10], [0, 5, 10])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from labkit import _checks
from labkit.history import Callback, History, StepInfo

__all__ = ["Every"]


def _scalar(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v)
    return None


class Every(Callback):
    """Call ``measure(info)`` every ``every`` steps of ``fit``; record, store in the History, stream to ``live``.

    Subclasses override :meth:`measure` (and :meth:`live_values` to choose what is plotted).
    """

    def __init__(self, every: int = 10, measure: Callable[[StepInfo], Any] | None = None, *, live: Any = None,
                 name: str = "value", final: bool = False):
        self.every = _checks.positive("every", every, integer=True)
        if measure is not None and not callable(measure):
            raise TypeError(f"measure must be a function f(info) -> dict or float, got {type(measure).__name__}")
        self._measure, self.live, self.name, self._final = measure, live, name, final
        self.steps: list[int] = []
        self.records: list[dict[str, Any]] = []
        self._info: StepInfo | None = None

    # ------------------------------------------------------------ what a subclass writes

    def measure(self, info: StepInfo) -> Mapping[str, Any] | Any:
        """The quantity at ``info.model`` (before step ``info.step``'s update)."""
        if self._measure is None:
            raise NotImplementedError(f"{type(self).__name__}: pass measure=f(info) or override measure")
        return self._measure(info)

    def live_values(self, record: Mapping[str, Any]) -> dict[str, float]:
        """What goes to the live plot: every scalar of the record (override to choose)."""
        return {k: s for k, v in record.items() if (s := _scalar(v)) is not None}

    # ------------------------------------------------------------ the loop

    def series(self, key: str) -> list[Any]:
        """One recorded quantity, one entry per measurement."""
        return [r[key] for r in self.records]

    def record(self, info: StepInfo) -> dict[str, Any]:
        values = self.measure(info)
        record = dict(values) if isinstance(values, Mapping) else {self.name: values}
        self.steps.append(info.step)
        self.records.append(record)
        history = info.history
        if isinstance(history, History):
            history.track(info.step, {k: s for k, v in record.items() if (s := _scalar(v)) is not None})
        if self.live is not None:
            live = self.live_values(record)
            if live:
                self.live.append(info.step, **live)
        return record

    def on_start(self, info: StepInfo) -> None:
        if info.model is None:  # fail before the first step, not in the middle of training
            raise TypeError(f"{type(self).__name__} follows one network: use it with labkit.train.fit, not fit_many")
        self._info = info

    def on_step(self, info: StepInfo) -> bool | None:
        self._info = info
        if info.step % self.every == 0:
            self.record(info)
        return None

    def on_end(self, history: History | list[History]) -> None:
        if not self._final or not isinstance(history, History) or history.diverged or self._info is None:
            return
        step = history.steps
        if not self.steps or step > self.steps[-1]:
            loss = history.eval["loss"][-1] if history.eval.get("loss") else math.nan
            self.record(dataclasses.replace(self._info, step=step, loss=loss, history=history))
