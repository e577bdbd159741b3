"""Loss values on lines and planes through parameter space: every grid one vectorised computation.

A point of a landscape is ``theta = origin + sum_k c_k d_k`` for coordinates ``c`` and directions ``d_k``
(flat vectors, :class:`labkit.models.ParamSpec` order); its value is the mean loss of :class:`labkit.risk.Risk`
there. :func:`evaluate` computes a whole block of points at once. When the network starts with a dense layer,
that layer is not run per point at all: its pre-activations are linear in ``c`` (``z(c) = z_0 + sum_k c_k x
D_k^T``), so ``k + 1`` matrix products serve the whole grid. A ``labkit.models.mlp`` (Dense layers and named
activations, every parameter on the grid) then runs fused: per chunk of points one matrix product gives the
first layer's pre-activations, one more every later layer's per-point weights, each later layer is one ``bmm``,
activations and the loss work in place, and chunks are sized to stay in cache. Any other network runs
``torch.func.vmap`` of a functional call over the chunk's stacked parameter points. Chunks are sized under
``max_memory`` (a grid that cannot fit is refused before anything is computed, naming the largest that fits)
and, given an ``executor`` (:mod:`labkit.parallel`), tiles of the grid run on Dask workers.

- :func:`interpolate` -- the 1-D line from one parameter point to another (Goodfellow, Vinyals & Saxe 2015,
  "Qualitatively characterizing neural network optimization problems"): a :class:`Line` with its barrier;
- :func:`plane` -- a 2-D plane spanned by random, filter-normalised, Hessian or PCA directions, with the
  optimiser's path projected onto it: a :class:`Plane`.

Both results have ``figure()``, ``to_dict()`` and atomic ``save()`` / ``load()``.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from labkit import _checks, threads
from labkit.landscape.directions import (
    PCA,
    check_directions,
    filter_normalize,
    hessian_directions,
    pca_directions,
    random_directions,
)
from labkit.losses import LOSSES
from labkit.machine import MAX_MEMORY
from labkit.models import ACTIVATIONS, Dense, ParamSpec, param_dict
from labkit.population.batched import dense_layers
from labkit.risk import Risk

__all__ = ["DIRECTIONS", "Line", "Plane", "estimate_memory", "evaluate", "interpolate", "plane", "point", "project"]

#: the named direction kinds :func:`plane` builds itself
DIRECTIONS = ("filter", "random", "hessian")
_CPU_CHUNK_BYTES = 64 << 20  # working memory of one vmap chunk on a CPU (~40 digits-MLP points: overhead amortised)
# activations of one fused chunk (one block of examples) on a CPU. Measured on the 2-core machine, 41x41 digits-MLP
# plane, 1 thread (ms, float64 / float32, 500 examples): 85 / 55 at 1 MiB, 73 / 43 at 4, 70 / 40 at 16, 205 / 70 at
# 64 MiB; 1797 examples: 248 / 171, 240 / 150, 286 / 147, 657 / 300. Small chunks pay per-op overhead (~15 us an
# op), large ones fall out of cache.
_FUSED_CHUNK_BYTES = 8 << 20
_FUSED_BLOCK = 512  # examples per block of a fused chunk: the points of a chunk share one block at a time
_RESULT_BYTES = 8  # float64 value per grid point (coordinates are generated per chunk, never stored)


# ---------------------------------------------------------------- parameter points


def point(name: str, value: Any, spec: ParamSpec) -> torch.Tensor:
    """A parameter point (a module, a parameter dict or a flat vector) as a flat vector of the model's layout."""
    if isinstance(value, nn.Module):
        value = param_dict(value)
    if isinstance(value, dict):
        missing = [n for n in spec.names if n not in value]
        if missing:
            raise ValueError(f"{name} lacks the parameters {missing}")
        bad = [n for n in spec.names if tuple(value[n].shape) != tuple(spec.shapes[spec.names.index(n)])]
        if bad:
            raise ValueError(f"{name}: parameters {bad} have the wrong shape for this model")
        value = spec.flatten({n: value[n].to(spec.device) for n in spec.names})
    _checks.tensor(name, value)
    if value.ndim != 1 or value.shape[0] != spec.numel:
        raise ValueError(f"{name} must be a flat vector of shape ({spec.numel},), a parameter dict or a module, "
                         f"got shape {tuple(value.shape)}")
    if value.dtype != spec.dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but the model's parameters are {spec.dtype}")
    return _checks.finite(name, value.to(spec.device))


def _risk(model: nn.Module | Risk, loss: Any, data: Any, batch_size: int | None) -> Risk:
    if isinstance(model, Risk):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a labkit Risk, got {type(model).__name__}")
    return Risk(model, loss, data, batch_size=batch_size)


# ---------------------------------------------------------------- the vectorised evaluator


def _first_dense(risk: Risk) -> str | None:
    """The name of a leading dense layer whose parameters all vary (its pre-activations are linear in c)."""
    m = risk.model
    if not isinstance(m, nn.Sequential) or len(m) < 2 or risk.frozen:
        return None
    name, first = next(iter(m._modules.items()))
    if not isinstance(first, (Dense, nn.Linear)):
        return None
    own = [f"{name}.weight"] + ([f"{name}.bias"] if first.bias is not None else [])
    names = list(risk.params)
    # its parameters lead the flat vector and later layers have some: the rest is one slice of it
    return name if sorted(names[: len(own)]) == sorted(own) and len(names) > len(own) else None


def _activation_numel(model: nn.Module, x: torch.Tensor) -> int:
    """Entries of every leaf module's output for one example: the per-example working set of a forward pass."""
    total = [0]

    def count(_module: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out[0].numel() if out.ndim else 1

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return max(total[0], 1)


def _mean_cross_entropy(logits: torch.Tensor, y: torch.Tensor, dim: int) -> torch.Tensor:
    """``(m,)`` mean cross-entropies of ``m`` points' logits, classes along ``dim`` (``(m, n, C)``: 2; ``(m, C, n)``:
    1), labels ``y (n,)``.

    ``-log softmax(o)_y = log sum_j exp(o_j - o_y)``: one subtraction, one exp, one sum and one log, no max pass
    (``logsumexp`` shifts by the max first: two more passes). Exact unless ``exp`` overflows (a logit more than
    ~88 (float32) or ~709 (float64) above the target's, a loss that large); those examples are redone with
    ``logsumexp`` (a rare, divergent corner of a plane).
    """
    idx = y.view(1, -1, 1) if dim == 2 else y.view(1, 1, -1)
    picked = logits.gather(dim, idx.expand(len(logits), *idx.shape[1:]))  # the target logits, (m, n, 1) or (m, 1, n)
    per = torch.sub(logits, picked).exp_().sum(dim).log_()  # (m, n)
    bad = ~torch.isfinite(per)
    if bad.any():
        rows = logits if dim == 2 else logits.transpose(1, 2)
        per[bad] = rows[bad].logsumexp(1) - picked.squeeze(dim)[bad]
    return per.mean(1)


class _Evaluator:
    """``coords (m, k) -> mean loss (m,)`` at ``origin + coords @ directions``, for one risk and plane: any
    network, through ``vmap`` of a functional call (see :class:`_DenseEvaluator` for the fused MLP path)."""

    def __init__(self, risk: Risk, origin: torch.Tensor, directions: torch.Tensor):
        self.risk, self.spec = risk, risk.spec
        self.origin, self.directions = origin, directions
        self.first = _first_dense(risk)
        self.rows = max(len(x) for x, _ in risk.batches)
        self.itemsize = torch.finfo(risk.dtype).bits // 8
        self._pre: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if self.first is not None:  # where the later layers' parameters start in the flat vector, and their layout
            own = sum(1 for n in self.spec.names if n.startswith(self.first + "."))
            lo = sum(self.spec.sizes[:own])
            self._rest = (lo, ParamSpec(self.spec.names[own:], self.spec.shapes[own:], self.spec.dtype,
                                        self.spec.device))

    def bytes_per_point(self) -> int:
        """Working memory of one parameter point of a chunk (its vector and its activations on a batch)."""
        return self.itemsize * (2 * self.spec.numel + 3 * self.rows * _activation_numel(self.risk.model,
                                                                                     self.risk.batches[0][0]))

    def fixed_bytes(self) -> int:
        """Memory held for the whole grid: origin, directions and the first layer's ``k + 1`` pre-activations."""
        k = self.directions.shape[0]
        fixed = (k + 1) * self.spec.numel
        if self.first is not None:
            out = self.risk.model[0].out_features
            fixed += (k + 1) * self.risk.num_examples * out
        return self.itemsize * fixed

    def op_flops(self, points: int) -> float:
        """FLOPs of the largest op of a chunk of ``points`` (what :func:`labkit.threads.for_work` weighs)."""
        return threads.layer_flops(self.risk.model, self.rows, points)

    def chunk_points(self) -> int | None:
        """The most points a chunk should hold for speed (None: as many as ``max_memory`` allows, off CPUs). A
        vmap chunk amortises its Python and dispatch overhead over ~64 MiB of working memory."""
        if self.risk.device.type != "cpu":
            return None
        return max(1, _CPU_CHUNK_BYTES // self.bytes_per_point())

    # ------------------------------------------------------------ the first layer, once for the whole grid

    def _precompute(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        layer = self.risk.model[0]
        wm, bm = getattr(layer, "weight_mult", 1.0), getattr(layer, "bias_mult", 1.0)
        w_name, b_name = f"{self.first}.weight", f"{self.first}.bias"
        p0 = self.spec.unflatten(self.origin)
        dk = self.spec.unflatten(self.directions)  # {name: (k, *shape)}
        pre = []
        for x, _ in self.risk.batches:
            z0 = wm * x @ p0[w_name].T
            zk = wm * torch.einsum("ni,khi->knh", x, dk[w_name])
            if layer.bias is not None:
                z0 = z0 + bm * p0[b_name]
                zk = zk + bm * dk[b_name][:, None, :]
            pre.append((z0, zk))
        return pre

    def _mean_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(m,)`` mean losses of ``m`` points' outputs ``(m, n, ...)`` on one batch, as one flat call."""
        m, n = out.shape[:2]
        loss = self.risk.loss
        if loss is LOSSES["cross_entropy"] and out.ndim == 3:
            return _mean_cross_entropy(out, y, 2)
        if loss is LOSSES.get(loss.name):  # per-example losses: the m points' examples are just more rows
            rows = loss.per_example(out.reshape(m * n, *out.shape[2:]), y.repeat(m, *([1] * (y.ndim - 1))))
            return rows.reshape(m, n).mean(1)
        return vmap(loss, in_dims=(0, None))(out, y)  # a user's callable: mean per point

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        risk = self.risk
        c = coords.to(risk.device, risk.dtype)
        total = torch.zeros(len(c), dtype=risk.dtype, device=risk.device)
        with torch.no_grad():
            if self.first is None:
                params = self.spec.unflatten(self.origin + c @ self.directions)  # {name: (m, *shape)}
                forward = vmap(risk.forward, in_dims=(0, None))
                for x, y in risk.batches:
                    total += self._mean_losses(forward(params, x), y) * (len(x) / risk.num_examples)
                return total
            if self._pre is None:
                self._pre = self._precompute()
            rest = nn.Sequential(OrderedDict(list(risk.model._modules.items())[1:]))
            # only the later layers' parameters vary per point: the first layer's are in the pre-activations
            lo, spec = self._rest
            rest_params = spec.unflatten(self.origin[lo:] + c @ self.directions[:, lo:])
            forward = vmap(lambda p, z: functional_call(rest, p, (z,)), in_dims=(0, 0))
            for (_, y), (z0, zk) in zip(risk.batches, self._pre):
                z = z0 + torch.einsum("mk,knh->mnh", c, zk)
                total += self._mean_losses(forward(rest_params, z), y) * (len(y) / risk.num_examples)
        return total


# the activations that have an in-place kernel (the others allocate their output)
_IN_PLACE: dict[str, Any] = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "erf": torch.erf_}


def _activate(z: torch.Tensor, name: str | None) -> torch.Tensor:
    if name is None or name == "identity":
        return z
    inplace = _IN_PLACE.get(name)
    return inplace(z) if inplace is not None else ACTIVATIONS[name](z)


def _dense_mlp(risk: Risk) -> list | None:
    """The layers of a ``labkit.models.mlp`` (:func:`labkit.population.batched.dense_layers`) whose parameters are
    exactly the grid's, in the flat vector's order, on flat inputs and without buffers; None for anything else."""
    layers = dense_layers(risk.model)
    if isinstance(layers, str) or risk.frozen or next(risk.model.buffers(), None) is not None:
        return None
    names = tuple(n for la in layers for n in la.names if n is not None)
    if names != tuple(risk.spec.names) or any(x.ndim != 2 for x, _ in risk.batches):
        return None
    return layers


class _DenseEvaluator(_Evaluator):
    """The fused evaluator of a ``labkit.models.mlp``: the same values as :class:`_Evaluator`, without ``vmap``.

    Per chunk of ``m`` points and block of ``n`` examples: the first layer's pre-activations are one product
    ``[1, c] @ [z_0; z_k]`` of the precomputed ``z_0, z_k`` (``k + 1`` products for the whole grid; no broadcast
    copy of ``z_0``), every later layer's per-point weights one ``addmm`` of the chunk's coordinates (multipliers
    folded in once), each later layer one ``bmm`` (its bias added in place);
    activations run in place and the cross-entropy without a max pass (:func:`_mean_cross_entropy`). Arrays are
    ``(points, features, examples)``: the loss's sums over a few classes then run along contiguous rows of
    examples instead of over a short last axis. On a CPU a chunk goes through the data in blocks of ``block``
    examples, and holds as many points as keep one block's arrays in cache (:meth:`chunk_points`).
    """

    def __init__(self, risk: Risk, origin: torch.Tensor, directions: torch.Tensor, layers: list):
        super().__init__(risk, origin, directions)
        self.layers, self.block = layers, _FUSED_BLOCK
        self._pre_blocks: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.first = layers[0].names[0].rsplit(".", 1)[0]  # fixed_bytes counts its pre-activations
        own = 2 if layers[0].names[1] is not None else 1
        lo = sum(risk.spec.sizes[:own])
        scale, self._slices, at = [], [], lo
        for la in layers[1:]:  # per later layer: (weight start, stop, bias stop or None), relative to lo
            w_end = at + la.out_features * la.in_features
            b_end = w_end + la.out_features if la.names[1] is not None else None
            self._slices.append((at - lo, w_end - lo, None if b_end is None else b_end - lo))
            scale += [torch.full((w_end - at,), la.weight_mult, dtype=risk.dtype, device=risk.device)]
            if b_end is not None:
                scale += [torch.full((la.out_features,), la.bias_mult, dtype=risk.dtype, device=risk.device)]
            at = b_end if b_end is not None else w_end
        s = torch.cat(scale) if scale else origin.new_zeros(0)
        # the later layers' parameters with their multipliers folded in: theta(c) = theta_0 + c @ D, one addmm
        self._theta0, self._dirs = (origin[lo:] * s)[None], directions[:, lo:] * s

    def op_flops(self, points: int) -> float:
        """The work of a chunk's smallest ops, the loss's passes over its outputs (points x examples x outputs, a
        few FLOPs each): a chunk is a dozen parallel regions, and the short ones decide whether a second thread
        pays beside a busy process (measured: 201x201 digits plane at load 3.8, 2 threads 29 s, 1 thread 3.4 s)."""
        return 2.0 * points * min(self.rows, self.block) * self.layers[-1].out_features

    def chunk_points(self) -> int | None:
        """Points per chunk on a CPU: their activations (every layer's output on one block of examples) in about
        ``_FUSED_CHUNK_BYTES``, so a chunk's arrays stay in cache from one layer to the next."""
        if self.risk.device.type != "cpu":
            return None
        per_point = self.itemsize * min(self.rows, self.block) * sum(la.out_features for la in self.layers)
        return max(1, _FUSED_CHUNK_BYTES // per_point)

    def _first_layer(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block of examples the first layer's pre-activations at the origin and along each direction,
        stacked ``(1 + k, h n)`` (features before examples; ``[1, c] @`` it is the chunk's: one product, no
        broadcast copy of the origin's), and the block's targets."""
        la, k = self.layers[0], self.directions.shape[0]
        p0, dk = self.spec.unflatten(self.origin), self.spec.unflatten(self.directions)
        w, b = la.names
        pre = []
        for x, y in self._blocks():
            z0 = (p0[w] @ x.T).mul_(la.weight_mult)  # (h, n)
            zk = torch.einsum("khi,ni->khn", dk[w], x).mul_(la.weight_mult)
            if b is not None:
                z0.add_(p0[b][:, None], alpha=la.bias_mult)
                zk.add_(dk[b][:, :, None], alpha=la.bias_mult)
            pre.append((torch.cat([z0.reshape(1, -1), zk.reshape(k, -1)]), y))
        return pre

    def _blocks(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The data's batches cut into blocks of at most ``block`` examples (on a CPU; whole batches elsewhere)."""
        step = self.block if self.risk.device.type == "cpu" else self.rows
        return [(x[i : i + step], y[i : i + step]) for x, y in self.risk.batches for i in range(0, len(x), step)]

    def _feature_major_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(m,)`` mean losses of outputs ``(m, C, n)``."""
        loss, n = self.risk.loss, out.shape[2]
        if loss is LOSSES["cross_entropy"] and y.ndim == 1:
            return _mean_cross_entropy(out, y, 1)
        if loss is LOSSES["mse"]:
            r = out - y.reshape(n, -1).T
            return r.mul_(r).sum(1).mean(1)
        return self._mean_losses(out.transpose(1, 2), y)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        risk = self.risk
        c = coords.to(risk.device, risk.dtype)
        m = len(c)
        total = torch.zeros(m, dtype=risk.dtype, device=risk.device)
        with torch.no_grad():
            if self._pre_blocks is None:
                self._pre_blocks = self._first_layer()
            theta = torch.addmm(self._theta0, c, self._dirs)  # (m, P - first layer's): every later layer's
            ones_c = torch.cat([c.new_ones(m, 1), c], 1)  # (m, 1 + k)
            later = [(theta[:, a:b].view(m, la.out_features, la.in_features),
                      None if e is None else theta[:, b:e].unsqueeze(2), la.activation)
                     for (a, b, e), la in zip(self._slices, self.layers[1:])]
            for z, y in self._pre_blocks:
                n = len(y)
                h = _activate(torch.mm(ones_c, z).view(m, -1, n), self.layers[0].activation)
                for w, bias, act in later:
                    h = _activate(torch.bmm(w, h) if bias is None else torch.bmm(w, h).add_(bias), act)
                total += self._feature_major_losses(h, y) * (n / risk.num_examples)
        return total


def _evaluator(risk: Risk, origin: torch.Tensor, directions: torch.Tensor) -> _Evaluator:
    """The fused evaluator for a ``labkit.models.mlp``, the vmap one for every other network."""
    layers = _dense_mlp(risk)
    return _Evaluator(risk, origin, directions) if layers is None else _DenseEvaluator(risk, origin, directions,
                                                                                       layers)


def estimate_memory(model: nn.Module | Risk, data: Any = None, points: int = 41 * 41, *, k: int = 2,
                    loss: Any = "auto", batch_size: int | None = None) -> dict[str, int]:
    """Bytes a grid of ``points`` needs at least: ``{"result", "fixed", "per_point", "total"}``, computing nothing.

    ``result`` is the float64 values, ``fixed`` what the whole grid shares (origin, ``k`` directions, a leading
    dense layer's pre-activations on the data), ``per_point`` the working memory of one point of a chunk;
    ``total`` is their sum with one-point chunks: the least ``max_memory`` the grid accepts.
    """
    risk = _risk(model, loss, data, batch_size)
    spec = risk.spec
    ev = _evaluator(risk, torch.zeros(spec.numel, dtype=spec.dtype, device=spec.device),
                    torch.zeros(k, spec.numel, dtype=spec.dtype, device=spec.device))
    need = {"result": int(points) * _RESULT_BYTES, "fixed": ev.fixed_bytes(), "per_point": ev.bytes_per_point()}
    need["total"] = sum(need.values())
    return need


def _budget(ev: _Evaluator, shape: tuple[int, ...], max_memory: int, chunk_size: int | None) -> int:
    """Refuse a grid that cannot fit ``max_memory``; else the points per chunk."""
    _checks.positive("max_memory", max_memory, integer=True)
    n = math.prod(shape)
    result, fixed, per_point = n * _RESULT_BYTES, ev.fixed_bytes(), ev.bytes_per_point()
    if result + fixed + per_point > max_memory:
        mib = 2**20
        room = max_memory - fixed - per_point
        if room < _RESULT_BYTES:
            fits = ("no grid fits: one point alone needs "
                    f"{(fixed + per_point) / mib:.1f} MiB; evaluate on fewer examples or pass batch_size=")
        else:
            side = math.isqrt(room // _RESULT_BYTES)
            fits = (f"at most {side}x{side} points fit" if len(shape) == 2
                    else f"at most {room // _RESULT_BYTES} points fit")
        grid = "x".join(str(s) for s in shape)
        raise ValueError(f"a {grid} grid needs at least {(result + fixed + per_point) / mib:.1f} MiB "
                         f"({fixed / mib:.1f} MiB shared, {per_point / mib:.2f} MiB per point in a chunk, "
                         f"{result / mib:.1f} MiB of values), more than max_memory={max_memory / mib:.1f} MiB; "
                         f"{fits}, or raise max_memory")
    cap = (max_memory - result - fixed) // per_point
    fast = ev.chunk_points()  # the chunk that is fastest on this device (None: as large as fits)
    cap = max(1, cap if fast is None else min(cap, fast))
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
        cap = min(cap, chunk_size)
    return int(cap)


def _tile(risk: Risk, origin: torch.Tensor, directions: torch.Tensor, coords: np.ndarray, size: int) -> np.ndarray:
    """Values at ``coords`` (a task for a worker: the same chunks as in-process)."""
    ev = _evaluator(risk, origin, directions)
    c = torch.as_tensor(coords, dtype=torch.float64)
    return np.concatenate([ev(c[i : i + size]).double().cpu().numpy() for i in range(0, len(c), size)])


def evaluate(model: nn.Module | Risk, data: Any, origin: Any, directions: Any, coords: Any, *, loss: Any = "auto",
             batch_size: int | None = None, max_memory: int = MAX_MEMORY, chunk_size: int | None = None,
             executor: Any = None, tile_size: int | None = None, progress: bool = True,
             shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The mean loss at ``origin + coords @ directions`` for every row of ``coords (n, k)``: float64 ``(n,)``.

    ``model`` is the network (its own parameters are not used: ``origin`` is a module, a parameter dict or a
    flat vector) or a :class:`labkit.risk.Risk` (then ``data`` is None); ``directions (k, P)`` are checked
    (shape, dtype, nonzero). The points are evaluated in chunks sized under ``max_memory`` (refused up
    front when even one-point chunks would not fit); ``executor`` (:mod:`labkit.parallel`) runs tiles of
    ``tile_size`` points on Dask workers (default: about four tiles per worker). ``shape`` is the grid's shape, for
    the refusal's message (``(201, 201)``: "at most 150x150 points fit").
    """
    risk = _risk(model, loss, data, batch_size)
    theta0 = point("origin", origin, risk.spec)
    d = check_directions("directions", directions, risk.spec)
    c = np.asarray(coords, dtype=np.float64)
    c = c[:, None] if c.ndim == 1 and d.shape[0] == 1 else c
    if c.ndim != 2 or c.shape[1] != d.shape[0]:
        raise ValueError(f"coords must have shape (n, {d.shape[0]}) (one coordinate per direction), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("coords contain NaN or inf")
    ev = _evaluator(risk, theta0, d)
    size = _budget(ev, shape or (len(c),), max_memory, chunk_size)
    out = np.empty(len(c))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(c), desc="landscape", unit="pt", delay=2, disable=not progress)
    try:
        if executor is None:
            ct = torch.as_tensor(c)
            for lo in range(0, len(c), size):
                hi = min(len(c), lo + size)
                # decided per chunk (the probe is cached for seconds): a co-tenant that starts mid-grid is seen
                with threads.for_work(ev.op_flops(hi - lo)):
                    out[lo:hi] = ev(ct[lo:hi]).double().cpu().numpy()
                bar.update(hi - lo)
        else:
            from labkit import parallel

            if tile_size is None:
                tile_size = -(-len(c) // (4 * parallel.n_workers(executor)))
            _checks.positive("tile_size", tile_size, integer=True)
            tile_size = -(-tile_size // size) * size  # a multiple of the chunk: the same chunks as in-process
            bounds = [*range(0, len(c), tile_size), len(c)]
            args = [(risk, theta0.cpu(), d.cpu(), c[lo:hi], size) for lo, hi in itertools.pairwise(bounds)]
            for i, values in parallel.submit(_tile, args, name="landscape-tile", executor=executor):
                out[bounds[i] : bounds[i + 1]] = values
                bar.update(bounds[i + 1] - bounds[i])
    finally:
        bar.close()
    return out


# ---------------------------------------------------------------- results


class _Saved:
    """``to_dict`` / atomic ``save`` / ``load`` for a dataclass of numpy arrays and JSON-able fields."""

    _ARRAYS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain Python (arrays as nested lists, non-finite numbers as None): valid JSON."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = np.where(np.isfinite(v), v, np.nan).tolist() if v.dtype.kind == "f" else v.tolist()
                v = json.loads(json.dumps(v).replace("NaN", "null"))
            elif isinstance(v, float) and not math.isfinite(v):
                v = None
            out[f.name] = v
        return {"result": type(self).__name__, **out}

    def save(self, path: str | Path) -> Path:
        """Save as ``.npz`` (appended when missing; written atomically); read back with :meth:`load`."""
        from labkit import _io

        path = _io.with_suffix(path, ".npz")
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._ARRAYS}
        with _io.atomic(path) as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps({"result": type(self).__name__, **meta})), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            result = meta.pop("result")
            if result != cls.__name__:
                raise ValueError(f"{str(path)!r} holds a {result}, not a {cls.__name__}")
            arrays = {k: f[k] for k in cls._ARRAYS if k in f.files}
        return cls(**meta, **{k: arrays.get(k) for k in cls._ARRAYS})


@dataclass
class Line(_Saved):
    """The loss along ``theta(t) = start + t (end - start)``: ``t (n,)``, ``values (n,)``."""

    t: np.ndarray
    values: np.ndarray
    label: str = ""
    wall_time: float = 0.0
    _ARRAYS: ClassVar[tuple[str, ...]] = ("t", "values")

    def value_at(self, t: float) -> float:
        """The loss at ``t`` (linear interpolation between grid points)."""
        return float(np.interp(t, self.t, self.values))

    @property
    def barrier(self) -> float:
        """The largest excess of the loss over the straight line between the endpoint losses, for t in [0, 1].

        ``max_t L(theta(t)) - ((1 - t) L(start) + t L(end))`` (Frankle et al. 2020's definition); 0 when the
        path is convex; NaN when the grid does not cover [0, 1].
        """
        if self.t.min() > 0 or self.t.max() < 1:
            return math.nan
        inside = (self.t >= 0) & (self.t <= 1)
        t = self.t[inside]
        chord = (1 - t) * self.value_at(0.0) + t * self.value_at(1.0)
        return float(max(0.0, np.max(self.values[inside] - chord)))

    def curvature(self) -> float:
        """``d^2 L / dt^2`` at ``t = 0`` from a least-squares quadratic through the points (a short symmetric
        grid about 0 makes it the slice's curvature: ``d^T H d`` for the direction ``d = end - start``)."""
        return float(2 * np.polyfit(self.t, self.values, 2)[0])

    def figure(self, title: str | None = None) -> Any:
        """The loss along the line, the endpoints marked."""
        import plotly.graph_objects as go

        from labkit import viz

        fig = viz.figure(title or (self.label or "loss along the line"), "t", "loss", height=320)
        fig.add_trace(go.Scatter(x=self.t, y=self.values, mode="lines", name="loss"))
        ends = [t for t in (0.0, 1.0) if self.t.min() <= t <= self.t.max()]
        fig.add_trace(go.Scatter(x=ends, y=[self.value_at(t) for t in ends], mode="markers", name="start / end",
                                 marker=dict(size=10, symbol=["circle", "star"][: len(ends)])))
        return fig


@dataclass
class Plane(_Saved):
    """The loss on ``origin + a d_1 + b d_2``: ``values (ny, nx)`` at ``a = x``, ``b = y``.

    ``kind`` names the directions; ``path (T, 2)`` is the trajectory projected onto the plane (``path_steps``
    its step labels; None without one); ``explained`` the fraction of the trajectory's variance the two
    directions explain (PCA planes), ``eigenvalues`` the Hessian's (Hessian planes).
    """

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    kind: str = "custom"
    path: np.ndarray | None = None
    path_steps: list[int] = field(default_factory=list)
    explained: list[float] | None = None
    eigenvalues: list[float] | None = None
    wall_time: float = 0.0
    _ARRAYS: ClassVar[tuple[str, ...]] = ("x", "y", "values", "path")

    @property
    def origin_value(self) -> float:
        """The loss at the grid point nearest the origin."""
        return float(self.values[np.abs(self.y).argmin(), np.abs(self.x).argmin()])

    def figure(self, title: str | None = None, levels: int = 30, log: bool = True) -> Any:
        """Contours of the loss (log scale by default), the path over them, its start and end marked."""
        import plotly.graph_objects as go

        from labkit import viz

        z = np.log10(np.maximum(self.values, 1e-12)) if log else self.values
        what = f"{self.kind} directions" + (f", {100 * sum(self.explained):.1f}% of the path's variance"
                                            if self.explained else "")
        fig = viz.figure(title or f"loss landscape ({what})", "direction 1", "direction 2", height=460, width=540)
        finite = np.isfinite(z)
        lo, hi = (float(z[finite].min()), float(z[finite].max())) if finite.any() else (0.0, 1.0)
        fig.add_trace(go.Contour(x=self.x, y=self.y, z=np.where(finite, z, None), ncontours=levels,
                                 colorscale="Viridis", contours=dict(start=lo, end=hi, size=(hi - lo) / levels or 1),
                                 colorbar=dict(title="log10 loss" if log else "loss"), name="loss",
                                 hovertemplate="a=%{x:.3g}<br>b=%{y:.3g}<br>loss=%{z:.4g}<extra></extra>"))
        if self.path is not None and len(self.path):
            p = np.asarray(self.path)
            fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="lines+markers", name="path",
                                     line=dict(color="white", width=2), marker=dict(size=4, color="white")))
            fig.add_trace(go.Scatter(x=p[:1, 0], y=p[:1, 1], mode="markers", name="start",
                                     marker=dict(size=12, symbol="circle", color="#ef553b")))
            fig.add_trace(go.Scatter(x=p[-1:, 0], y=p[-1:, 1], mode="markers", name="end",
                                     marker=dict(size=14, symbol="star", color="#ffd700")))
        else:
            fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="origin",
                                     marker=dict(size=12, symbol="star", color="#ffd700")))
        return fig


# ---------------------------------------------------------------- the public entry points


def _axis(name: str, rng: Any, n: int) -> np.ndarray:
    if not isinstance(rng, (tuple, list)) or len(rng) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {rng!r}")
    lo, hi = float(rng[0]), float(rng[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with low < high, got {rng!r}")
    return np.linspace(lo, hi, n)


def interpolate(model: nn.Module | Risk, data: Any, start: Any, end: Any, *, loss: Any = "auto",
                resolution: int = 41, t_range: tuple[float, float] = (0.0, 1.0), batch_size: int | None = None,
                max_memory: int = MAX_MEMORY, progress: bool = True) -> Line:
    """The loss on the straight line from ``start`` to ``end`` (modules, parameter dicts or flat vectors).

    ``t_range`` extends the line beyond the endpoints (``(-0.5, 1.5)``); ``data`` may be the training data or
    any held-out set. One vectorised evaluation of ``resolution`` points.
    """
    risk = _risk(model, loss, data, batch_size)
    _checks.in_range("resolution", resolution, 2, 10**6)
    a, b = point("start", start, risk.spec), point("end", end, risk.spec)
    if torch.equal(a, b):
        raise ValueError("start and end are the same point: the line has no direction")
    t = _axis("t_range", t_range, resolution)
    begin = time.perf_counter()
    values = evaluate(risk, None, a, (b - a)[None], t[:, None], max_memory=max_memory, progress=progress)
    return Line(t, values, wall_time=time.perf_counter() - begin)


def _plane_directions(risk: Risk, directions: Any, origin: torch.Tensor, seed: int) -> tuple[torch.Tensor, str, dict]:
    extra: dict[str, Any] = {}
    if isinstance(directions, str):
        _checks.choice("directions", directions, DIRECTIONS)
        at = risk.spec.unflatten(origin)
        if directions == "hessian":
            values, d = hessian_directions(risk.at(_module_at(risk, at)), k=2, seed=seed)
            extra["eigenvalues"] = [float(v) for v in values]
            return d, "hessian", extra
        d = random_directions(risk.spec, 2, seed=seed)
        if directions == "filter":
            d = filter_normalize(d, at)
        return d, directions, extra
    return check_directions("directions", directions, risk.spec), "custom", extra


def _module_at(risk: Risk, params: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the risk's model holding ``params`` (for operators that read a module's parameters)."""
    import copy

    net = copy.deepcopy(risk.model)
    with torch.no_grad():
        for name, value in params.items():
            net.get_parameter(name).copy_(value)
    return net


def project(points: torch.Tensor, origin: torch.Tensor, directions: torch.Tensor) -> np.ndarray:
    """Coordinates ``(T, k)`` of ``points (T, P)`` in the (not necessarily orthogonal) directions: least squares."""
    d = directions.double()
    gram = d @ d.T
    return torch.linalg.solve(gram, d @ (points.double() - origin.double()).T).T.cpu().numpy()


def plane(model: nn.Module | Risk, data: Any = None, directions: Any = "filter", *, loss: Any = "auto",
          origin: Any = None, x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
          resolution: int | tuple[int, int] = 41, path: Any = None, seed: int = 0, batch_size: int | None = None,
          max_memory: int = MAX_MEMORY, chunk_size: int | None = None, executor: Any = None,
          tile_size: int | None = None,
          progress: bool = True) -> Plane:
    """The loss on a plane through ``origin`` (default: the model's parameters) as one vectorised grid.

    ``directions``: ``"filter"`` (random, filter-normalised at the origin; Li et al. 2018), ``"random"``
    (Gaussian, not normalised), ``"hessian"`` (the top two Hessian eigenvectors at the origin, unit norm), a
    :class:`labkit.landscape.PCA` or a :class:`labkit.landscape.Trajectory` (its first two principal
    components; the origin becomes the final snapshot and the path the projected trajectory), or a ``(2, P)``
    tensor. ``path`` (a Trajectory or ``(T, P)`` snapshots) is projected onto the plane (least squares).
    Ranges default to ``(-1, 1)`` (filter / random / custom), ``+-2/sqrt(lambda_1)`` (Hessian) or the path's
    extent plus a margin (PCA). ``resolution`` is ``n`` or ``(nx, ny)``. ``max_memory``, ``chunk_size``,
    ``executor``, ``tile_size``: as in :func:`evaluate`.
    """
    risk = _risk(model, loss, data, batch_size)
    begin = time.perf_counter()
    nx, ny = (resolution, resolution) if not isinstance(resolution, (tuple, list)) else resolution
    _checks.in_range("resolution", nx, 2, 100_000)
    _checks.in_range("resolution", ny, 2, 100_000)
    extra: dict[str, Any] = {}
    if hasattr(directions, "snapshots") and hasattr(directions, "steps"):  # a Trajectory
        directions = pca_directions(directions)
    if isinstance(directions, PCA):
        pca = directions
        theta0 = point("origin", pca.origin if origin is None else origin, risk.spec)
        d, kind = check_directions("directions", pca.directions, risk.spec), "pca"
        path_xy, steps = pca.coords, pca.steps
        extra["explained"] = [float(e) for e in pca.explained]
        if not torch.equal(theta0, pca.origin):
            path_xy = None
    else:
        theta0 = point("origin", risk.params if origin is None else origin, risk.spec)
        d, kind, extra = _plane_directions(risk, directions, theta0, seed)
        path_xy, steps = None, []
    if d.shape[0] != 2:
        raise ValueError(f"a plane needs exactly 2 directions, got {d.shape[0]}")
    if path is not None:
        if hasattr(path, "snapshots"):
            snaps, steps = path.snapshots, list(path.steps)
        else:
            snaps = _checks.tensor("path", path)
            steps = list(range(len(snaps)))
        if snaps.ndim != 2 or snaps.shape[1] != risk.spec.numel:
            raise ValueError(f"path must be (T, {risk.spec.numel}) snapshots, got {tuple(snaps.shape)}")
        path_xy = project(snaps.to(risk.device), theta0, d)
    if x_range is None or y_range is None:
        if kind == "pca" and path_xy is not None:
            span = np.abs(path_xy).max(0) * 1.25 + 1e-12
            default = [(-s, s) for s in span]
        elif kind == "hessian":
            default = [(-2 / math.sqrt(abs(v)), 2 / math.sqrt(abs(v))) for v in extra["eigenvalues"]]
        else:
            default = [(-1.0, 1.0), (-1.0, 1.0)]
        x_range = default[0] if x_range is None else x_range
        y_range = default[1] if y_range is None else y_range
    xs, ys = _axis("x_range", x_range, nx), _axis("y_range", y_range, ny)
    a, b = np.meshgrid(xs, ys)  # row-major: value[j, i] at (xs[i], ys[j])
    coords = np.stack([a.ravel(), b.ravel()], 1)
    values = evaluate(risk, None, theta0, d, coords, max_memory=max_memory, chunk_size=chunk_size,
                      executor=executor, tile_size=tile_size, progress=progress, shape=(ny, nx))
    return Plane(xs, ys, values.reshape(ny, nx), kind, path_xy, [int(s) for s in steps], extra.get("explained"),
                 extra.get("eigenvalues"), time.perf_counter() - begin)
