"""Per-example gradients and their squared norms: the raw material of the gradient noise scale.

``g_i = grad_theta l_i(theta)`` is the gradient of example ``i``'s own loss ``l_i`` (the
mean loss is ``L = mean_i l_i``, so ``G = mean_i g_i``). Two ways to get at them:

- :func:`per_example_grads` materialises ``(n, P)`` with ``torch.func.vmap(grad)``,
  in chunks of ``chunk_size`` examples so memory stays bounded;
- :func:`per_example_sq_norms` returns only ``|g_i|^2``. For networks of linear
  layers it never forms a gradient: a dense layer's per-example weight gradient is
  the outer product ``weight_mult * g_out^T a_in``, so its squared norm is
  ``weight_mult^2 |g_out|^2 |a_in|^2`` (the trick behind BackPACK's ``BatchL2Grad``,
  Dangel et al. 2020), computed from one forward and one backward pass by
  :mod:`labkit.structure`. Other layers fall back to :func:`per_example_grads`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from labkit import _checks, structure
from labkit.losses import Loss, resolve
from labkit.models import ParamSpec, param_dict

__all__ = ["per_example_grads", "per_example_sq_norms"]


def _loss_and_params(model: nn.Module, loss: str | Loss | Callable, targets: torch.Tensor) -> tuple[Loss, dict]:
    task = "classification" if not targets.is_floating_point() else "regression"
    return resolve(loss, task), param_dict(model)


def _check_xy(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    for name, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
        raise ValueError(f"inputs and targets need the same, non-zero number of rows, got "
                         f"{inputs.shape[0]} and {targets.shape[0]}")


def per_example_grads(
    model: nn.Module,
    loss: str | Loss | Callable,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Every example's loss gradient as rows of an ``(n, P)`` tensor (``ParamSpec.of(model)`` order).

    ``torch.func.vmap(grad(l_i))`` over examples (``in_dims=(None, 0, 0)``: parameters
    shared, one example per call), evaluated ``chunk_size`` examples at a time
    (all at once when None) so that peak memory is ``chunk_size * P`` numbers.
    """
    _check_xy(inputs, targets)
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
    loss_fn, params = _loss_and_params(model, loss, targets)
    spec = ParamSpec.of(params)

    def example_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # l_i(theta): the model on a batch of one example
        return loss_fn.per_example(functional_call(model, p, (x.unsqueeze(0),)), y.unsqueeze(0))[0]

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)
    return spec.flatten(per_example(params, inputs, targets))  # (n, P)


def _output_cotangents(loss_fn: Loss, targets: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``out -> (1, n, out_dim)``: d l_i / d f_i for every example (l_i depends on f_i only)."""

    def cotangents(out: torch.Tensor) -> torch.Tensor:
        return grad(lambda f: loss_fn.per_example(f, targets).sum())(out).unsqueeze(0)

    return cotangents


def per_example_sq_norms(
    model: nn.Module,
    loss: str | Loss | Callable,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``|g_i|^2`` for every example, ``(n,)``, without materialising the gradients when possible.

    Uses the layer structure (:func:`labkit.structure.backprop_layers`) when every
    parameterised layer is a ``Dense``/``nn.Linear`` (or supported ``Conv2d``); otherwise
    the squared row norms of :func:`per_example_grads` (``chunk_size`` applies there).
    """
    _check_xy(inputs, targets)
    loss_fn, params = _loss_and_params(model, loss, targets)
    if structure.supported(model):
        try:
            traces = structure.backprop_layers(model, params, inputs, _output_cotangents(loss_fn, targets))
        except ValueError:  # e.g. a layer called twice: the generic path still works
            traces = None
        if traces is not None and _covers(traces, params):
            return structure.per_example_sq_norms(traces)[0]
    return per_example_grads(model, loss_fn, inputs, targets, chunk_size=chunk_size).square().sum(1)


def _covers(traces: list, params: dict[str, torch.Tensor]) -> bool:
    """True when the traced layers account for every trainable parameter."""
    traced = set()
    for t in traces:
        prefix = f"{t.name}." if t.name else ""
        traced.add(f"{prefix}weight")
        if t.has_bias:
            traced.add(f"{prefix}bias")
    return traced == set(params)
