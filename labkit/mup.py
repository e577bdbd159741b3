"""The maximal-update parameterisation (muP) for MLPs: its experiments (the coordinate check, lr transfer).

The parameterisation itself (the table below) is :func:`labkit.models.mup_mlp` and
:func:`labkit.models.mup_multipliers`, beside the standard, NTK and mean-field ones; ``mup.mlp`` and
``mup.multipliers`` are the same functions.

Yang et al. 2021 ("Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter
Transfer", arXiv:2203.03466), Table 3, with ``m = width / base_width`` (so muP *is* the standard
parameterisation at ``base_width``), ``d`` the input and ``n`` the hidden width:

==========================  ===================  ================  ================
layer                       init variance        SGD lr            Adam lr
==========================  ===================  ================  ================
input weights, all biases   ``sigma^2 / d``       ``lr m``          ``lr``
hidden weights              ``sigma^2 / n``       ``lr``            ``lr / m``
output weights              ``sigma^2 / (n m)``   ``lr / m``        ``lr / m``
==========================  ===================  ================  ================

(output biases are treated as "all biases" with fan_out the fixed output size: lr unchanged.)
``fit`` has one learning rate, so a layer's lr multiplier ``l`` is put in the forward pass: the
trained tensor is ``theta`` and the layer uses ``w = c theta`` (:class:`labkit.models.Dense`'s
``weight_mult``/``bias_mult``), with ``c = sqrt(l)`` for SGD (a step on theta moves w by
``c^2 lr``) and ``c = l`` for Adam (its step on theta has size ``lr`` whatever the gradient's
scale), and ``theta`` initialised with ``std(w) / c``. The function is the same as the table's.

:func:`coord_check` is the standard diagnostic: the typical size of each layer's pre-activations
(and of their change since initialisation) after a few steps, across widths; under muP it does
not depend on width, under the standard parameterisation it grows or vanishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks
from labkit.machine import MAX_MEMORY
from labkit.models import Dense, mup_mlp, mup_multipliers
from labkit.scaling import loglog_slope

#: The muP network and its table are a parameterisation of :mod:`labkit.models` (``models.mlp(...,
#: parameterization="mup")``, :func:`labkit.models.mup_mlp`); this module keeps the experiments.
mlp = mup_mlp
multipliers = mup_multipliers

__all__ = ["coord_check", "lr_sweep", "mlp", "multipliers", "slopes"]


def _preactivations(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    out, h = [], x
    for layer in model:
        h = layer(h)
        if isinstance(layer, (Dense, nn.Linear)):
            out.append(h)
    return out


def coord_check(make_model: Callable[[int, int], nn.Module], widths: Sequence[int], data: Any, *, lr: float,
                steps: int = 3, optimizer: str = "sgd", seeds: Sequence[int] = (0, 1), loss: Any = "auto",
                batch_size: int | None = None) -> dict[str, np.ndarray]:
    """The coordinate check: per width and layer, the mean ``|h|`` and ``|h_t - h_0|`` after ``steps`` steps.

    ``make_model(width, seed)`` builds a network; it is trained with :func:`labkit.train.fit` and the
    pre-activations of each Dense layer on ``data``'s inputs are compared with those at init.
    Returns ``{"widths": (W,), "size": (W, layers), "change": (W, layers)}``, averaged over ``seeds``.
    """
    from labkit.data import as_dataset
    from labkit.train import fit

    widths = [_checks.positive("widths[]", w, integer=True) for w in widths]
    if len(widths) < 2:
        raise ValueError(f"coord_check compares widths: pass at least 2, got {widths}")
    ds = as_dataset(data)
    size, change = [], []
    for w in widths:
        s_w, c_w = [], []
        for seed in seeds:
            net = make_model(w, seed)
            x = ds.inputs.to(next(net.parameters()).dtype)
            with torch.no_grad():
                h0 = _preactivations(net, x)
            fit(net, ds, loss=loss, optimizer=optimizer, lr=lr, steps=steps, batch_size=batch_size, seed=seed,
                progress=False)
            with torch.no_grad():
                ht = _preactivations(net, x)
            s_w.append([float(h.abs().mean()) for h in ht])
            c_w.append([float((h - a).abs().mean()) for h, a in zip(ht, h0)])
        size.append(np.mean(s_w, 0))
        change.append(np.mean(c_w, 0))
    return {"widths": np.array(widths, dtype=float), "size": np.array(size), "change": np.array(change)}


def slopes(widths: Any, values: Any) -> np.ndarray:
    """Per layer, the least-squares slope of ``log value`` against ``log width`` (0: width-independent):
    :func:`labkit.scaling.loglog_slope` on each column of ``values`` ``(widths, layers)``."""
    return np.asarray(loglog_slope(widths, np.asarray(values, dtype=float).reshape(len(widths), -1))[0])


def lr_sweep(make_model: Callable[[int, int], nn.Module], widths: Sequence[int], lrs: Sequence[float], data: Any, *,
             optimizer: str = "adam", steps: int = 100, seeds: Sequence[int] = (0,), batch_size: int | None = None,
             loss: Any = "auto", progress: bool = True, executor: Any = None,
             max_memory: int = MAX_MEMORY) -> dict[str, np.ndarray]:
    """Final training loss per (width, lr), mean over ``seeds``: one :func:`labkit.train.fit_many` per width.

    Diverged runs count as ``inf``. Returns ``{"widths", "lrs", "loss": (W, L), "best_lr": (W,)}``.
    ``progress``, ``executor`` (:mod:`labkit.parallel`) and ``max_memory`` are handed to each ``fit_many`` call.
    """
    from labkit.train import fit_many, grid

    lrs = [_checks.positive("lrs[]", lr) for lr in lrs]
    widths = [_checks.positive("widths[]", w, integer=True) for w in widths]
    if not widths or not lrs:
        raise ValueError(f"widths and lrs must not be empty, got {len(widths)} width(s) and {len(lrs)} lr(s)")
    out = []
    for w in widths:
        hs = fit_many(lambda seed, w=w: make_model(w, seed), data, hparams=grid(lr=lrs, seed=list(seeds)),
                      optimizer=optimizer, steps=steps, batch_size=batch_size, loss=loss, progress=progress,
                      executor=executor, max_memory=max_memory)
        final = np.array([math.inf if h.diverged or not h.eval.get("loss") else h.eval["loss"][-1] for h in hs])
        final = np.where(np.isfinite(final), final, math.inf).reshape(len(lrs), len(seeds)).mean(1)
        out.append(final)
    loss_ = np.array(out)
    return {"widths": np.array(widths, dtype=float), "lrs": np.array(lrs), "loss": loss_,
            "best_lr": np.array(lrs)[np.argmin(loss_, 1)]}
