"""``Trajectory``: a :func:`labkit.train.fit` callback that keeps parameter snapshots, bounded in memory.

Snapshots are taken every ``every`` steps (before that step's update, as every :class:`labkit.tracking.Every`)
and once after the last update. At most ``max_snapshots`` are kept: when one more would exceed it, every
other snapshot is dropped and the interval doubles, so the kept ones stay evenly spaced over the whole run
and memory stays at ``max_snapshots * P`` numbers however long training runs::

    traj = Trajectory(every=5)
    fit(model, ds, steps=500, callbacks=[traj])
    plane = labkit.landscape.plane(model, ds, traj)      # PCA plane with the path drawn on it
"""

from __future__ import annotations

from typing import Any

import torch

from labkit import _checks
from labkit.models import ParamSpec, param_dict
from labkit.tracking import Every
from labkit.train import StepInfo

__all__ = ["Trajectory"]


class Trajectory(Every):
    """Flat parameter snapshots every ``every`` steps of ``fit`` (and after the last), at most ``max_snapshots``.

    ``steps`` and :attr:`snapshots` ``(T, P)`` (on the CPU); ``loss`` the training loss seen at each step
    (NaN after the last update); ``every`` doubles each time the snapshots are thinned.
    """

    def __init__(self, every: int = 10, *, max_snapshots: int = 256, live: Any = None):
        super().__init__(every, live=live, name="snapshot", final=True)
        self.max_snapshots = _checks.in_range("max_snapshots", max_snapshots, 3, 10**7)
        self.spec: ParamSpec | None = None

    def on_start(self, info: StepInfo) -> None:
        super().on_start(info)
        self.spec = ParamSpec.of(info.model)
        self.steps, self.records = [], []

    def measure(self, info: StepInfo) -> dict[str, Any]:
        flat = self.spec.flatten(param_dict(info.model)).detach().to("cpu", copy=True)
        return {"snapshot": flat, "loss": float(info.loss)}

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        return {}

    def record(self, info: StepInfo) -> dict[str, Any]:
        out = super().record(info)
        if len(self.steps) > self.max_snapshots:  # keep the multiples of 2 * every (and a final off-grid one)
            self.every *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.every == 0]
            if keep[-1] != len(self.steps) - 1 and self.steps[-1] % (self.every // 2):
                keep.append(len(self.steps) - 1)
            self.steps = [self.steps[i] for i in keep]
            self.records = [self.records[i] for i in keep]
        return out

    @property
    def snapshots(self) -> torch.Tensor:
        """The kept snapshots as a ``(T, P)`` tensor."""
        if not self.records:
            raise RuntimeError("Trajectory has no snapshots yet: pass it to fit(callbacks=[trajectory]) first")
        return torch.stack([r["snapshot"] for r in self.records])

    @property
    def loss(self) -> list[float]:
        return [r["loss"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)
