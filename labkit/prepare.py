"""Before the first step of any training loop: the data moved to the model, the settings checked, a dry run.

Shared by :func:`labkit.train.fit` and the population engines behind :func:`labkit.train.fit_many`, so both
refuse the same mistakes with the same messages; :func:`evaluate` is the metric every loop records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from labkit import _checks, _deprecated
from labkit.data import Dataset, as_dataset
from labkit.losses import Loss
from labkit.optim import OPTIMIZERS
from labkit.risk import resolve_loss

__all__ = ["DataLike", "check_model_fits", "check_settings", "evaluate", "model_dtype_device", "prepare"]

DataLike = Dataset | tuple[torch.Tensor, torch.Tensor]


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of ``model``'s first parameter (a model without parameters is refused)."""
    p = next(model.parameters(), None)
    if p is None:
        raise ValueError(f"model {type(model).__name__} has no parameters to train")
    return p.dtype, p.device


def check_settings(
    ds: Dataset,
    loss: Loss,
    optimizer: Any,
    steps: Any,
    batch_size: Any,
    lr_values: Sequence[Any],
    wd_values: Sequence[Any],
) -> None:
    """Refuse settings no loop can train with: steps, optimizer name, empty data, batch size, learning rates and
    weight decays (one value per member for ``fit_many``)."""
    _checks.positive("steps", steps, integer=True)
    if not callable(optimizer):
        _checks.choice("optimizer", optimizer, OPTIMIZERS)
    if len(ds) == 0:
        raise ValueError("data is empty")
    if batch_size is not None:
        _checks.in_range("batch_size", batch_size, 1, len(ds))
    for v in lr_values:
        _checks.positive("lr", v)
    for v in wd_values:
        _checks.positive("weight_decay", v, allow_zero=True)


def check_model_fits(model: nn.Module, ds: Dataset, loss: Loss) -> None:
    """Dry-run two examples so shape mistakes fail before training, with a clear message."""
    x = ds.inputs[:2]
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as err:
        raise ValueError(
            f"model does not accept the data: inputs have shape {ds.in_shape} per example "
            f"({ds.name}); the model raised: {err}"
        ) from err
    if loss.name in ("mse", "cross_entropy"):
        need = ds.out_dim
        got = tuple(out.shape[1:])
        if got != (need,):
            what = f"{need} classes" if ds.task == "classification" else f"{need} target dimension(s)"
            raise ValueError(
                f"model output has shape {got} per example but {ds.name!r} has {what}; "
                f"build the model with out_dim={need}"
            )


def prepare(data: DataLike, model: nn.Module, device: Any) -> Dataset:
    """``data`` as a :class:`~labkit.data.Dataset` on ``device`` (default: the model's, which is moved there)
    and in the model's dtype."""
    dtype, model_device = model_dtype_device(model)
    device = torch.device(device) if device is not None else model_device
    model.to(device)
    return as_dataset(data).to(device, dtype)


@torch.no_grad()
@_deprecated.keyword_only("loss")
def evaluate(model: nn.Module, data: DataLike, *, loss: str | Loss | Callable = "auto") -> dict[str, float]:
    """Mean loss (and accuracy for classification) of ``model`` on ``data`` (moved to the model's device and dtype)."""
    dtype, device = model_dtype_device(model)
    ds = as_dataset(data).to(device, dtype)
    loss_fn = resolve_loss(loss, ds)
    out = model(ds.inputs)
    metrics = {"loss": float(loss_fn(out, ds.targets))}
    if ds.task == "classification":
        metrics["accuracy"] = float((out.argmax(-1) == ds.targets).double().mean())
    return metrics
