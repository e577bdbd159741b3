"""Losses as per-example functions, so every probe can average (or not) as it needs.

Conventions used everywhere in labkit:

- ``mse``: ``l_i = sum_o (f_o(x_i) - y_io)^2`` and ``L = mean_i l_i`` (no 1/2, summed
  over outputs). Then the Gauss-Newton matrix is ``(2/n) J^T J`` and equals the
  NTK Gram matrix's nonzero spectrum scaled by ``2/n``.
- ``cross_entropy``: ``l_i = -log softmax(f(x_i))_{y_i}`` and ``L = mean_i l_i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from labkit import _checks

__all__ = ["LOSSES", "Loss", "resolve"]


@dataclass(frozen=True)
class Loss:
    """A named loss: ``per_example(pred, target) -> (n,)``; calling it gives the mean."""

    name: str
    per_example: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_example(pred, target).mean()


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = pred - target.reshape(pred.shape)
    return diff.pow(2).reshape(diff.shape[0], -1).sum(1)


def _cross_entropy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(pred, target, reduction="none")


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", _mse),
    "cross_entropy": Loss("cross_entropy", _cross_entropy),
}


def resolve(loss: str | Loss | Callable, task: str | None = None) -> Loss:
    """Turn ``"auto"``, a name, a :class:`Loss` or a callable into a :class:`Loss`.

    ``"auto"`` is cross-entropy for classification and MSE for regression. A
    plain callable ``f(pred, target)`` may return per-example losses ``(n,)`` or
    their mean (a scalar); per-example probes need the former.

    >>> resolve("auto", "classification").name, resolve("auto", "regression").name
    ('cross_entropy', 'mse')
    >>> resolve("mse").per_example(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))  # summed over outputs
    tensor([5.])
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss == "auto":
            if task is None:
                raise ValueError("loss='auto' needs to know the task; pass loss='mse' or 'cross_entropy'")
            return LOSSES["cross_entropy" if task == "classification" else "mse"]
        _checks.choice("loss", loss, ["auto", *LOSSES])
        return LOSSES[loss]
    if callable(loss):
        name = getattr(loss, "__name__", type(loss).__name__)

        def per_example(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            value = loss(pred, target)
            if value.ndim == 0:
                return value.expand(pred.shape[0])
            return value.reshape(pred.shape[0])

        return Loss(name, per_example)
    raise TypeError(f"loss must be 'auto', one of {list(LOSSES)}, a labkit Loss or a callable, got {loss!r}")
