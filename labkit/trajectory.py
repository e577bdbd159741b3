"""Where the weights go: an EMA of the parameters and the distance travelled from initialisation.

- :class:`EMA` -- a :func:`labkit.train.fit` callback keeping ``w_ema = rho w_ema + (1 - rho) w_t``
  after every update; :func:`ema_scaling` is the rule of Busbridge et al. 2023 ("How to Scale Your
  EMA"): when the batch grows ``kappa``-fold (and the lr with it, the linear rule), use ``rho^kappa``
  so that the EMA averages over the same number of *examples*.
- :class:`Distance` -- a :class:`labkit.tracking.Every` recording ``||w_t - w_0||`` (Hoffer et al. 2017,
  "Train longer, generalize better": it grows like ``log t``); :func:`log_fit` compares ``log t`` and
  ``sqrt t`` fits of it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks
from labkit.history import Callback, History, StepInfo
from labkit.models import ParamSpec, param_dict
from labkit.tracking import Every

__all__ = ["EMA", "Distance", "ema_scaling", "log_fit"]


def ema_scaling(rho: float, kappa: float) -> float:
    """``rho^kappa``: the EMA decay for a ``kappa`` times larger batch (Busbridge et al. 2023)."""
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    return float(rho) ** _checks.positive("kappa", kappa)


def _flat(model: nn.Module) -> torch.Tensor:
    return ParamSpec.of(model).flatten(param_dict(model))


class EMA(Callback):
    """``w_ema`` after every update of ``fit``: ``w_ema_t = rho w_ema_{t-1} + (1 - rho) w_t``, ``w_ema_0 = w_0``.

    ``vector`` is the flat EMA, ``steps`` the number of updates it has seen; :meth:`model` returns a
    copy of the trained network holding the EMA weights (e.g. for :func:`labkit.train.evaluate`).
    ``every`` > 1 records ``history`` of the EMA vector at those steps (``records``; off by default).
    """

    def __init__(self, rho: float = 0.99, *, every: int | None = None):
        if not 0 <= rho < 1:
            raise ValueError(f"rho must be in [0, 1), got {rho!r}")
        self.rho = float(rho)
        self.every = None if every is None else _checks.positive("every", every, integer=True)
        self.vector: torch.Tensor | None = None
        self.steps = 0
        self.records: list[tuple[int, torch.Tensor]] = []
        self._model: nn.Module | None = None

    def on_start(self, info: StepInfo) -> None:
        if info.model is None:
            raise TypeError("EMA follows one network: use it with labkit.train.fit, not fit_many")
        self._model, self.vector, self.steps, self.records = info.model, _flat(info.model).clone(), 0, []

    @torch.no_grad()
    def _update(self, step: int) -> None:
        w = _flat(self._model)
        if step > self.steps:  # w holds `step` updates; fold in each new one once
            self.vector.mul_(self.rho).add_(w, alpha=1 - self.rho)
            self.steps = step
            if self.every is not None and step % self.every == 0:
                self.records.append((step, self.vector.clone()))

    def on_step(self, info: StepInfo) -> None:
        self._update(info.step)  # before update `step`: the model holds w_step

    def on_end(self, history: History | list[History]) -> None:
        if isinstance(history, History) and not history.diverged and self._model is not None:
            self._update(history.steps)

    def model(self) -> nn.Module:
        """A copy of the trained network with the EMA weights."""
        if self.vector is None:
            raise RuntimeError("EMA has not seen a run yet: pass it to fit(callbacks=[ema]) first")
        net = copy.deepcopy(self._model)
        spec = ParamSpec.of(net)
        with torch.no_grad():
            for name, value in spec.unflatten(self.vector).items():
                net.get_parameter(name).copy_(value)
        return net


class Distance(Every):
    """``||w_t - w_0||`` every ``every`` steps (and after the last update): records ``distance``."""

    def __init__(self, every: int = 10, *, live: Any = None):
        super().__init__(every, live=live, name="distance", final=True)
        self._w0: torch.Tensor | None = None

    def on_start(self, info: StepInfo) -> None:
        super().on_start(info)
        self._w0 = _flat(info.model).clone()

    def measure(self, info: StepInfo) -> dict[str, float]:
        return {"distance": float((_flat(info.model) - self._w0).norm())}

    @property
    def distances(self) -> np.ndarray:
        return np.array(self.series("distance"))


def log_fit(steps: Any, distance: Any) -> dict[str, float]:
    """R^2 of the least-squares fits ``d = a + b log t`` and ``d = a + b sqrt t`` (steps > 0 only)."""
    t, d = np.asarray(steps, dtype=float), np.asarray(distance, dtype=float)
    keep = (t > 0) & np.isfinite(d)
    t, d = t[keep], d[keep]
    if len(t) < 3:
        raise ValueError(f"need at least 3 measurements at steps > 0, got {len(t)}")

    def r2(x: np.ndarray) -> float:
        A = np.stack([np.ones_like(x), x], 1)
        res = d - A @ np.linalg.lstsq(A, d, rcond=None)[0]
        tot = ((d - d.mean()) ** 2).sum()
        return float(1 - (res**2).sum() / tot) if tot > 0 else math.nan

    return {"r2_log": r2(np.log(t)), "r2_sqrt": r2(np.sqrt(t))}
