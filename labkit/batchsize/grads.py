"""Per-example gradients and their squared norms: the raw material of the gradient noise scale.

``g_i = grad_theta l_i(theta)`` is the gradient of example ``i``'s own loss ``l_i`` (the
mean loss is ``L = mean_i l_i``, so ``G = mean_i g_i``). Both functions are
:class:`labkit.risk.Risk` methods in a functional form:

- :func:`per_example_grads` materialises ``(n, P)`` with ``torch.func.vmap(grad)``,
  in chunks of ``chunk_size`` examples so memory stays bounded;
- :func:`per_example_sq_norms` returns only ``|g_i|^2``. For networks of linear
  layers it never forms a gradient: a dense layer's per-example weight gradient is
  the outer product ``weight_mult * g_out^T a_in``, so its squared norm is
  ``weight_mult^2 |g_out|^2 |a_in|^2`` (the trick behind BackPACK's ``BatchL2Grad``,
  Dangel et al. 2020), computed from one forward and one backward pass by
  :mod:`labkit.structure`. Other layers fall back to :func:`per_example_grads`.

>>> import torch
>>> lin = torch.nn.Linear(2, 1, bias=False).double()
>>> with torch.no_grad():
...     _ = lin.weight.copy_(torch.tensor([[1.0, 0.0]]))
>>> x = torch.eye(2, dtype=torch.float64); y = torch.zeros(2, 1, dtype=torch.float64)
>>> per_example_grads(lin, "mse", (x, y))     # l_i = (w.x_i)^2, g_i = 2 (w.x_i) x_i
tensor([[2., 0.],
        [0., 0.]], dtype=torch.float64)
>>> per_example_sq_norms(lin, "mse", (x, y))
tensor([4., 0.], dtype=torch.float64)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from labkit import _checks, _deprecated, threads
from labkit.losses import Loss
from labkit.risk import Risk

__all__ = ["per_example_grads", "per_example_sq_norms"]


def _risk(model: nn.Module, loss: str | Loss | Callable, data: Any) -> Risk:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        inputs, targets = data
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError(f"data needs inputs and targets with the same, non-zero number of rows, got "
                             f"{inputs.shape[0]} and {targets.shape[0]}")
    return Risk(model, loss, data)


def _data_or_pair(fn: Callable) -> Callable:
    """The old ``(model, loss, inputs, targets)`` call keeps working one release: ``data=(inputs, targets)``."""

    @functools.wraps(fn)
    def wrapper(model: nn.Module, loss: Any = "auto", data: Any = None, *args: Any, **kwargs: Any) -> Any:
        if args or "inputs" in kwargs or "targets" in kwargs:
            inputs = kwargs.pop("inputs") if "inputs" in kwargs else data
            targets = kwargs.pop("targets") if "targets" in kwargs else args[0] if args else None
            if len(args) > 1:
                raise TypeError(f"{fn.__name__}() takes (model, loss, data); got {3 + len(args)} positional arguments")
            _deprecated.warn(f"labkit.batchsize.{fn.__name__}(model, loss, inputs, targets)",
                             f"labkit.batchsize.{fn.__name__}(model, loss, (inputs, targets))")
            data = (inputs, targets)
        return fn(model, loss, data, **kwargs)

    return wrapper


@_data_or_pair
def per_example_grads(
    model: nn.Module,
    loss: str | Loss | Callable = "auto",
    data: Any = None,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Every example's loss gradient as rows of an ``(n, P)`` tensor (``ParamSpec.of(model)`` order).

    ``data`` is an ``(inputs, targets)`` pair or a labkit Dataset. ``torch.func.vmap(grad(l_i))`` over
    examples, evaluated ``chunk_size`` examples at a time (all at once when None) so that peak memory is
    ``chunk_size * P`` numbers (:meth:`labkit.risk.Risk.per_example_gradients`).
    """
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
    return _risk(model, loss, data).per_example_gradients(chunk_size=chunk_size)


@threads.hot  # its set-up (checks, dry runs) too: a busy neighbour holds a core
@_data_or_pair
def per_example_sq_norms(
    model: nn.Module,
    loss: str | Loss | Callable = "auto",
    data: Any = None,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``|g_i|^2`` for every example, ``(n,)``, without materialising the gradients when possible.

    Uses the layer structure (:func:`labkit.structure.backprop_layers`) when every
    parameterised layer is a ``Dense``/``nn.Linear`` (or supported ``Conv2d``); otherwise
    the squared row norms of :func:`per_example_grads` (``chunk_size`` applies there).
    """
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
    risk = _risk(model, loss, data)
    with threads.for_work(threads.layer_flops(model, risk.num_examples)):
        return risk.per_example_sq_norms(chunk_size=chunk_size)
