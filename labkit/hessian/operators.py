"""The loss Hessian and its Gauss-Newton part as matrix-free :class:`~labkit.linalg.LinearOperator`\\ s.

For the mean loss ``L(theta) = (1/N) sum_i l(f(x_i; theta), y_i)`` over all of ``data``:

- Hessian ``H = d^2 L / d theta^2``; ``H v`` by forward-over-reverse differentiation,
  ``jvp(grad(L), theta, v)`` (Pearlmutter 1994), one pass per mini-batch.
- Generalised Gauss-Newton ``G = (1/N) sum_i J_i^T H_out,i J_i`` with ``J_i = df(x_i)/dtheta`` and
  ``H_out,i = d^2 l / df^2`` (Schraudolph 2002): ``Jv`` by a jvp, ``H_out Jv`` by a jvp of the loss
  gradient in output space, ``J^T (.)`` by a vjp. PSD for convex losses (MSE: ``H_out = 2 I``;
  cross-entropy: ``diag(p) - p p^T``).
- The residual ``R = H - G = (1/N) sum_i sum_o (dl/df_o) d^2 f_o / d theta^2``.

Vectors are flat, in :class:`labkit.models.ParamSpec` order of the chosen parameters.
Mini-batches are weighted by their sizes, so one batch or many unequal batches give the
same operator. The model is called as it is: its train/eval mode (dropout, batch norm) is
the caller's choice; for a well-defined Hessian put such models in ``eval()`` mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import grad, jvp, vjp, vmap

from labkit.data import Dataset, as_dataset
from labkit.linalg import LinearOperator
from labkit.losses import Loss, resolve
from labkit.models import ParamSpec, call, param_dict

__all__ = ["GaussNewtonOperator", "HessianOperator", "residual_operator"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)


def prepare_batches(data: Any, batch_size: int | None, dtype: torch.dtype, device: torch.device) -> list[Batch]:
    """``data`` (a Dataset, an ``(x, y)`` pair or a list of them) as a list of ``(x, y)`` batches."""
    if data is None:
        raise ValueError("data is required: pass a labkit Dataset, an (inputs, targets) pair or a list of them")
    parts = [data] if isinstance(data, Dataset) or _is_pair(data) else list(data)
    if not parts:
        raise ValueError("data is empty: got an empty list of batches")
    batches = []
    for part in parts:
        ds = as_dataset(part)
        if len(ds) == 0:
            raise ValueError("data is empty: a batch has 0 rows")
        ds = ds.to(device, dtype)
        step = len(ds) if batch_size is None else batch_size
        batches += [(ds.inputs[i : i + step], ds.targets[i : i + step]) for i in range(0, len(ds), step)]
    return batches


def _task(data: Any) -> str:
    first = data if isinstance(data, Dataset) or _is_pair(data) else next(iter(data))
    return as_dataset(first).task


def mean_loss(loss: Any, data: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``f(pred, target) -> scalar`` mean loss; a plain callable must itself return a scalar."""
    if isinstance(loss, (str, Loss)):
        return resolve(loss, _task(data) if loss == "auto" else None)
    if not callable(loss):
        raise TypeError(f"loss must be 'auto', 'mse', 'cross_entropy', a labkit Loss or a callable, got {loss!r}")
    return loss


class _CurvatureOperator(LinearOperator):
    """Shared set-up: parameters, batches, the per-batch scalar loss ``(n_b / N) * mean_b l``."""

    def __init__(
        self,
        model: nn.Module,
        loss: str | Loss | Callable = "auto",
        data: Any = None,
        *,
        batch_size: int | None = None,
        params: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        every = param_dict(model)  # trainable parameters only; frozen ones stay the module's own
        if params is None:
            chosen = list(every)
        else:
            if isinstance(params, str):
                params = [params]
            chosen = list(params)
            unknown = [p for p in chosen if p not in every]
            if unknown or not chosen:
                raise ValueError(
                    f"params={list(params)!r}: {unknown or 'empty'} are not trainable parameters of the model; "
                    f"choose from {list(every)}"
                )
        self.params = {n: every[n] for n in every if n in chosen}
        self.frozen = {n: p for n, p in every.items() if n not in self.params}
        self.spec = ParamSpec.of(self.params)
        super().__init__(self.spec.numel, self.spec.dtype, self.spec.device)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.model = model
        self.loss = mean_loss(loss, data)
        self.batches = prepare_batches(data, batch_size, self.dtype, self.device)
        self.num_examples = sum(len(x) for x, _ in self.batches)
        self.chunk_size = chunk_size
        x, y = self.batches[0]
        value = self.loss(self.forward(self.params, x[:2]), y[:2])
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"loss must return a scalar (the mean over the batch), got {shape}")

    def forward(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Network outputs with parameters ``p`` (the others fixed)."""
        return call(self.model, {**self.frozen, **p}, x)

    def batch_loss(self, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This batch's share of the mean loss: ``(n_b / N) mean_b l``."""
        return self.loss(self.forward(p, x), y) * (len(x) / self.num_examples)

    def value(self) -> float:
        """The mean loss over all of the data."""
        with torch.no_grad():
            return float(sum(self.batch_loss(self.params, x, y) for x, y in self.batches))

    def gradient(self) -> torch.Tensor:
        """The flat gradient of the mean loss."""
        g = [grad(self.batch_loss)(self.params, x, y) for x, y in self.batches]
        return sum(self.spec.flatten(gi) for gi in g)

    def _product(self, v: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        k = V.shape[1]
        tangents = self.spec.unflatten(V.T.to(self.device, self.dtype))  # {name: (k, *shape)}
        out = torch.zeros(k, self.size, dtype=self.dtype, device=self.device)
        for x, y in self.batches:
            if k == 1:
                prod = self._product({n: t[0] for n, t in tangents.items()}, x, y)
                out += self.spec.flatten(prod)[None]
            else:  # one vectorised pass for all k vectors
                prod = vmap(self._product, in_dims=(0, None, None), chunk_size=self.chunk_size,
                            randomness="same")(tangents, x, y)
                out += self.spec.flatten(prod)
        return out.T


class HessianOperator(_CurvatureOperator):
    """The Hessian of the mean loss over ``data`` w.r.t. the model's parameters (or the subset ``params``).

    ``data``: a Dataset, an ``(x, y)`` pair, or a list of them (batches of any sizes);
    ``batch_size`` cuts it into chunks to bound memory (the operator is the same);
    ``chunk_size`` bounds how many vectors ``matmat`` pushes through at once.
    Example (a quadratic model, whose Hessian is known)::

        model = labkit.models.mlp(3, [], 1, bias=False, seed=0)   # f = w.x
        x = torch.eye(3, dtype=torch.float64); y = torch.zeros(3, 1, dtype=torch.float64)
        H = HessianOperator(model.double(), "mse", (x, y))         # L = mean (w.x)^2 -> H = 2/3 I
    """

    def _product(self, v: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        gradient = grad(self.batch_loss)  # theta -> dL_b/dtheta
        return jvp(lambda p: gradient(p, x, y), (self.params,), (v,))[1]  # d/dt grad(theta + t v) = H v


class GaussNewtonOperator(_CurvatureOperator):
    """The generalised Gauss-Newton matrix ``G = (1/N) sum_i J_i^T H_out,i J_i`` (same arguments as the Hessian)."""

    def _product(self, v: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        weight = len(x) / self.num_examples
        f = lambda p: self.forward(p, x)  # noqa: E731  theta -> outputs (n_b, out)
        out, Jv = jvp(f, (self.params,), (v,))  # J v
        out_grad = grad(lambda o: self.loss(o, y) * weight)  # dL_b/d outputs
        HJv = jvp(out_grad, (out,), (Jv,))[1]  # H_out J v
        return vjp(f, self.params)[1](HJv)[0]  # J^T H_out J v


def residual_operator(model: nn.Module, loss: Any = "auto", data: Any = None, **kwargs: Any) -> LinearOperator:
    """``R = H - G``: the part of the Hessian that comes from the network's own curvature."""
    return HessianOperator(model, loss, data, **kwargs) - GaussNewtonOperator(model, loss, data, **kwargs)


def dense_hessian(model: nn.Module, loss: Any = "auto", data: Any = None, *,
                  params: Iterable[str] | None = None) -> torch.Tensor:
    """The exact ``(P, P)`` Hessian by ``torch.func.hessian`` of the flat mean loss (small models only).

    Independent of the HVP path (reverse-over-reverse on one flat vector), so tests and
    students can use it as ground truth.
    """
    op = HessianOperator(model, loss, data, params=None if params is None else list(params))

    def flat_loss(vec: torch.Tensor) -> torch.Tensor:
        p = op.spec.unflatten(vec)
        return sum(op.batch_loss(p, x, y) for x, y in op.batches)

    H = torch.func.hessian(flat_loss)(op.spec.flatten(op.params))
    return (H + H.T) / 2
