"""The functional core: a network as a function of its parameters, and its mean loss on data.

Every probe in labkit (Hessian, Gauss-Newton, Fisher, gradient covariance, NTK, noise scale,
per-example gradients) and :func:`labkit.train.fit` start from the same object:

- :class:`Function` -- ``f(x; theta)`` for a chosen subset of the model's trainable parameters
  (the others stay fixed at the module's own values), with the flat-vector layout
  :class:`labkit.models.ParamSpec`;
- :class:`Risk` -- adds a loss and data: ``L(theta) = (1/N) sum_i l(f(x_i; theta), y_i)``,
  cut into mini-batches weighted by their sizes, so one batch or many give the same numbers.

**Snapshot semantics** (the one rule for every operator built on these): a ``Function`` or
``Risk`` copies the parameters when it is built and every value, gradient and operator
product is evaluated *there*, even if the model is trained afterwards. To evaluate somewhere
else pass ``theta`` explicitly (``risk.value(theta)``) or build a new one (``risk.at(model)``).

**Loss resolution** (the one rule for ``loss="auto"``): :func:`resolve_loss` -- cross-entropy
for a classification task, MSE for regression, where the task is the dataset's (a pair with
integer targets is classification). ``"mse"`` on integer class labels and ``"cross_entropy"`` on
float targets are refused when the risk is built.

>>> import torch, labkit
>>> model = labkit.models.mlp(3, [], 1, bias=False, seed=0).double()    # f = w.x
>>> x = torch.eye(3, dtype=torch.float64)
>>> risk = Risk(model, "mse", (x, torch.zeros(3, 1, dtype=torch.float64)))
>>> theta = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
>>> risk.value(theta)                  # mean of (w.x_i)^2 = (1 + 4 + 9) / 3
4.666666666666667
>>> risk.gradient(theta)               # 2 w / 3
tensor([0.6667, 1.3333, 2.0000], dtype=torch.float64)
>>> risk.per_example_gradients(theta)  # row i: 2 w_i e_i
tensor([[2., 0., 0.],
        [0., 4., 0.],
        [0., 0., 6.]], dtype=torch.float64)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import grad, vmap

from labkit import _checks, structure
from labkit.data import Dataset, as_dataset
from labkit.losses import LOSSES, Loss, resolve
from labkit.models import ParamSpec, call, param_dict

__all__ = ["Function", "Risk", "prepare_batches", "resolve_loss"]

Batch = tuple[torch.Tensor, torch.Tensor]
Params = Mapping[str, torch.Tensor]


def resolve_loss(loss: str | Loss | Callable, data: Dataset | None) -> Loss:
    """The one rule: ``"auto"`` is cross-entropy for classification, MSE for regression; checked against the data.

    ``data`` (a Dataset) gives the task; a named loss that does not fit it is refused here, before any
    computation (MSE on integer labels would broadcast silently; cross-entropy on float targets would
    read them as class probabilities).
    """
    if not isinstance(loss, (str, Loss)) and not callable(loss):
        raise TypeError(f"loss must be 'auto', one of {list(LOSSES)}, a labkit Loss or a callable, got {loss!r}")
    task = data.task if data is not None else None
    fn = resolve(loss, task)
    if data is not None and isinstance(loss, (str, Loss)) and loss != "auto":
        if fn.name == "mse" and task == "classification":
            raise ValueError(
                "loss='mse' needs float regression targets (n, out), but the data is a classification task with "
                "integer labels; use loss='cross_entropy' (or 'auto'), or pass one-hot float targets for MSE"
            )
        if fn.name == "cross_entropy" and task != "classification":
            raise ValueError("loss='cross_entropy' needs a classification task (integer class labels), but the data "
                             "has float regression targets; use loss='mse' (or 'auto')")
    return fn


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(
        isinstance(t, torch.Tensor) or hasattr(t, "__array__") for t in data)  # tensors or numpy arrays


def _parts(data: Any) -> list[Dataset]:
    if data is None:
        raise ValueError("data is required: pass a labkit Dataset, an (inputs, targets) pair or a list of them")
    parts = [data] if isinstance(data, Dataset) or _is_pair(data) else list(data)
    if not parts:
        raise ValueError("data is empty: got an empty list of batches")
    out = [as_dataset(p) for p in parts]
    if any(len(d) == 0 for d in out):
        raise ValueError("data is empty: a batch has 0 rows")
    return out


def prepare_batches(data: Any, batch_size: int | None, dtype: torch.dtype, device: torch.device) -> list[Batch]:
    """``data`` (a Dataset, an ``(x, y)`` pair or a list of them) as a list of ``(x, y)`` batches."""
    if batch_size is not None:
        _checks.positive("batch_size", batch_size, integer=True)
    batches = []
    for ds in _parts(data):
        ds = ds.to(device, dtype)
        step = len(ds) if batch_size is None else batch_size
        batches += [(ds.inputs[i : i + step], ds.targets[i : i + step]) for i in range(0, len(ds), step)]
    return batches


def _choose(every: dict[str, torch.Tensor], params: Sequence[str] | str | None) -> list[str]:
    if params is None:
        return list(every)
    chosen = [params] if isinstance(params, str) else list(params)
    unknown = [p for p in chosen if p not in every]
    if unknown or not chosen:
        raise ValueError(f"params={chosen!r}: {unknown or 'empty'} are not trainable parameters of the model; "
                         f"choose from {list(every)}")
    return chosen


class Function:
    """``f(x; theta)``: ``model`` as a function of the parameters ``params`` (default: all trainable ones).

    Holds a copy of those parameters (``self.params``, the snapshot; see the module docstring),
    the fixed rest (``self.frozen``, the module's own values) and their flat layout ``self.spec``.
    """

    def __init__(self, model: nn.Module, params: Sequence[str] | str | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        every = param_dict(model)  # trainable parameters only; frozen ones stay the module's own
        chosen = set(_choose(every, params))
        self.model = model
        self.params = {n: p.clone() for n, p in every.items() if n in chosen}
        self.frozen = {n: p for n, p in every.items() if n not in chosen}
        self.spec = ParamSpec.of(self.params)

    @property
    def dtype(self) -> torch.dtype:
        return self.spec.dtype

    @property
    def device(self) -> torch.device:
        return self.spec.device

    @property
    def theta(self) -> torch.Tensor:
        """The snapshot as one flat vector."""
        return self.spec.flatten(self.params)

    def as_params(self, theta: torch.Tensor | Params | None = None) -> dict[str, torch.Tensor]:
        """``theta`` (flat vector, dict, or None for the snapshot) as a parameter dict."""
        if theta is None:
            return self.params
        if isinstance(theta, torch.Tensor):
            return self.spec.unflatten(theta.to(self.device, self.dtype))
        return dict(theta)

    def forward(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """Network outputs with parameters ``p`` (the others fixed)."""
        return call(self.model, {**self.frozen, **p}, x)

    def output_fn(self, x: torch.Tensor) -> Callable[[Params], torch.Tensor]:
        """``p -> f(x; p)`` on a fixed batch: what ``jvp`` / ``vjp`` need for Jacobian products."""
        return lambda p: self.forward(p, x)


class Risk(Function):
    """The mean loss ``L(theta) = (1/N) sum_i l(f(x_i; theta), y_i)`` of ``model`` on ``data``.

    ``data``: a Dataset, an ``(x, y)`` pair, or a list of them (batches of any sizes), moved to the
    model's device and dtype; ``batch_size`` cuts it into chunks to bound memory (same numbers);
    ``params`` restricts theta to some of the trainable parameters; ``loss`` as in :func:`resolve_loss`
    (a plain callable must return the batch mean, or per-example values for per-example probes).
    """

    def __init__(self, model: nn.Module, loss: str | Loss | Callable = "auto", data: Any = None, *,
                 params: Sequence[str] | str | None = None, batch_size: int | None = None):
        super().__init__(model, params)
        parts = _parts(data)
        self.task = parts[0].task
        self.loss = resolve_loss(loss, parts[0])
        self.batches = prepare_batches(parts, batch_size, self.dtype, self.device)
        self.num_examples = sum(len(x) for x, _ in self.batches)
        self._check_loss()

    def _check_loss(self) -> None:
        x, y = self.batches[0]
        with torch.no_grad():
            try:
                out = self.model(x[:2])  # at construction the module holds the snapshot: a plain call is cheapest
            except RuntimeError as err:
                raise ValueError(f"model does not accept the data: inputs have shape {tuple(x.shape[1:])} per "
                                 f"example; the model raised: {err}") from err
            if self.loss.name == "cross_entropy" and (out.ndim < 2 or int(y.max()) >= out.shape[1]):
                raise ValueError(f"loss='cross_entropy' needs one output per class: the model gives outputs of shape "
                                 f"{tuple(out.shape[1:])} but the labels go up to {int(y.max())}")
            if self.loss.name == "cross_entropy" and int(y.min()) < 0:
                raise ValueError(f"class labels must be >= 0, got {int(y.min())}")
            if self.loss.name == "mse" and out[0].numel() != y[0].numel():
                raise ValueError(f"loss='mse': model outputs have shape {tuple(out.shape[1:])} per example but the "
                                 f"targets have {tuple(y.shape[1:])}")
            try:
                value = self.loss(out, y[:2])
            except RuntimeError as err:
                raise ValueError(f"loss must return a scalar (the mean over the batch) or per-example values (n,); "
                                 f"it raised: {err}") from err
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"loss must return a scalar (the mean over the batch), got {shape}")

    def at(self, model: nn.Module) -> Risk:
        """The same loss and batches at ``model``'s current parameters (a new snapshot)."""
        new = copy.copy(self)
        Function.__init__(new, model, list(self.params))
        return new

    def examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All inputs and targets, concatenated over the batches."""
        if len(self.batches) == 1:
            return self.batches[0]
        return torch.cat([x for x, _ in self.batches]), torch.cat([y for _, y in self.batches])

    def subset(self, index: torch.Tensor) -> Risk:
        """The same loss at the same snapshot on the examples ``index`` only (one batch)."""
        x, y = self.examples()
        index = torch.as_tensor(index, device=x.device)
        new = copy.copy(self)
        new.batches = [(x[index], y[index])]
        new.num_examples = len(new.batches[0][0])
        if new.num_examples == 0:
            raise ValueError("index selects no examples")
        return new

    # ------------------------------------------------------------ values and gradients

    def batch_loss(self, p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This batch's share of the mean loss: ``(n_b / N) mean_b l``."""
        return self.loss(self.forward(p, x), y) * (len(x) / self.num_examples)

    def value(self, theta: torch.Tensor | Params | None = None) -> float:
        """``L(theta)`` (default: at the snapshot)."""
        p = self.as_params(theta)
        with torch.no_grad():
            return float(sum(self.batch_loss(p, x, y) for x, y in self.batches))

    def gradient(self, theta: torch.Tensor | Params | None = None) -> torch.Tensor:
        """The flat gradient ``dL/dtheta``."""
        p = self.as_params(theta)
        return sum(self.spec.flatten(grad(self.batch_loss)(p, x, y)) for x, y in self.batches)

    def example_loss(self, p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``l(f(x; p), y)`` for one example (no batch dimension)."""
        return self.loss.per_example(self.forward(p, x.unsqueeze(0)), y.unsqueeze(0))[0]

    def per_example_gradients(self, theta: torch.Tensor | Params | None = None, *,
                              chunk_size: int | None = None) -> torch.Tensor:
        """``g_i = dl_i/dtheta`` as rows of an ``(N, P)`` tensor (``vmap(grad)``, ``chunk_size`` examples at a time)."""
        if chunk_size is not None:
            _checks.positive("chunk_size", chunk_size, integer=True)
        p = self.as_params(theta)
        per_example = vmap(grad(self.example_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)
        rows = [self.spec.flatten(per_example(p, x, y)) for x, y in self.batches]
        return rows[0] if len(rows) == 1 else torch.cat(rows)

    def per_example_sq_norms(self, theta: torch.Tensor | Params | None = None, *,
                             chunk_size: int | None = None) -> torch.Tensor:
        """``|g_i|^2``, ``(N,)``: from layer structure (:mod:`labkit.structure`) without forming ``g_i`` when
        every parameter sits in a supported linear layer, else from :meth:`per_example_gradients`."""
        p = self.as_params(theta)
        if not self.frozen and structure.supported(self.model):
            out = []
            for x, y in self.batches:
                sq = _structured_sq_norms(self.model, self.loss, p, x, y)
                if sq is None:
                    break
                out.append(sq)
            else:
                return out[0] if len(out) == 1 else torch.cat(out)
        return self.per_example_gradients(p, chunk_size=chunk_size).square().sum(1)

    def __repr__(self) -> str:
        return (f"Risk({type(self.model).__name__}, loss={self.loss.name!r}, N={self.num_examples}, "
                f"P={self.spec.numel}, batches={len(self.batches)})")


def _structured_sq_norms(model: nn.Module, loss: Loss, p: Params, x: torch.Tensor,
                         y: torch.Tensor) -> torch.Tensor | None:
    def cotangents(out: torch.Tensor) -> torch.Tensor:  # d l_i / d f_i for every example
        return grad(lambda f: loss.per_example(f, y).sum())(out).unsqueeze(0)

    try:
        traces = structure.backprop_layers(model, p, x, cotangents)
    except ValueError:  # e.g. a layer called twice: the generic path still works
        return None
    traced = set()
    for t in traces:
        prefix = f"{t.name}." if t.name else ""
        traced.add(f"{prefix}weight")
        if t.has_bias:
            traced.add(f"{prefix}bias")
    return structure.per_example_sq_norms(traces)[0] if traced == set(p) else None
