"""The experiments of notebook 12 (batch size in practice), each returning its numbers and a verdict.

Closed-form ones (instant): the critical batch size against the data budget and the model size
(:func:`critical_batch_scaling`, on :class:`~labkit.batchsize.regression.OnlineRegression`), the examples
``B x S`` at a fixed learning rate (:func:`sfo_complexity`, on the NQM) and the EMA scaling rule
(:func:`ema_scaling`, on the NQM). Trained ones: warm-up and LARS at a 32x batch (:func:`warmup_at_scale`),
tuned baselines against LARS/LAMB (:func:`optimizer_reality_check`), the best AdamW weight decay against the
batch (:func:`weight_decay_scaling`) and the norm-test schedule against fixed batches (:func:`adaptive_vs_fixed`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from labkit import _checks
from labkit.batchsize.nqm import NQM
from labkit.batchsize.regression import OnlineRegression

__all__ = ["critical_batch_scaling", "ema_curves", "ema_scaling", "log_slope", "sfo_complexity"]


def log_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The least-squares slope of ``log y`` against ``log x``."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if lx.size < 2 or np.ptp(lx) == 0:
        raise ValueError(f"log_slope needs at least two distinct x values, got {list(x)}")
    return float(np.polyfit(lx, ly, 1)[0])


# ---------------------------------------------------------------- B_crit against data and model size


def critical_batch_scaling(
    dims: Sequence[int],
    targets: Sequence[float],
    *,
    exponent: float = 2.0,
    source: float = 1.0,
    noise: float = 0.1,
    lrs: Sequence[float] | None = None,
    batch_sizes: Sequence[int] = tuple(2**k for k in range(12)),
    max_steps: int = 4000,
) -> dict[str, Any]:
    """``B_crit`` (McCandlish's fit to a closed-form Shallue sweep) of one-pass regression for every model size
    ``dims`` (features) and excess-loss target (the data budget ``E_min`` grows as the target falls).

    Returns ``b_crit`` and ``e_min`` as ``(len(dims), len(targets))`` arrays, ``data_slope`` (log-log slope of
    B_crit against E_min at the largest model, over the targets) and ``model_slope`` (of B_crit against the
    dimension at the smallest target). Targets are scaled by ``loss0`` of each model relative to the first.
    """
    lrs = list(np.geomspace(0.005, 2.0, 16)) if lrs is None else list(lrs)
    b_crit = np.full((len(dims), len(targets)), math.nan)
    e_min = np.full_like(b_crit, math.nan)
    for i, d in enumerate(dims):
        model = OnlineRegression.power_law(d, exponent, noise=noise, source=source)
        for j, sweep in enumerate(model.steps_to_target(list(targets), lrs, batch_sizes, max_steps=max_steps)):
            fit = sweep.tradeoff()
            b_crit[i, j], e_min[i, j] = fit.b_crit, fit.e_min
    return {"b_crit": b_crit, "e_min": e_min, "dims": list(dims), "targets": list(targets),
            "data_slope": log_slope(e_min[-1], b_crit[-1]), "model_slope": log_slope(dims, b_crit[:, -1])}


# ---------------------------------------------------------------- examples B x S at a fixed learning rate


def sfo_complexity(nqm: NQM, target: float, lr: float | None, batch_sizes: Sequence[int], *,
                   lrs: Sequence[float] | None = None, max_steps: int = 10**5) -> dict[str, Any]:
    """Examples ``B x S(B)`` to reach ``target`` on the NQM at one fixed ``lr`` (``lr=None``: the best of ``lrs``
    per batch size, Shallue's protocol). Returns ``batch_sizes``, ``examples`` (NaN: never reached), ``b_star``
    (the minimiser), ``b_first`` (the smallest batch that reaches the target) and ``interior`` (the minimum is
    strictly inside the reached range: the convex curve of Iiduka and co-authors' critical batch)."""
    bs = np.asarray(batch_sizes)
    if lr is not None:
        _checks.positive("lr", lr)
        steps = np.array([nqm.first_step_below(target, [lr], int(b), max_steps)[0] for b in bs])
    else:
        steps = nqm.steps_to_target(target, list(lrs), [int(b) for b in bs], max_steps=max_steps).best()["steps"]
    examples = steps * bs
    ok = np.isfinite(examples)
    if not ok.any():
        raise ValueError(f"no batch size reached the target {target} within {max_steps} steps")
    k = int(np.nanargmin(examples))
    reached = np.flatnonzero(ok)
    return {"batch_sizes": bs, "examples": examples, "b_star": int(bs[k]), "b_first": int(bs[reached[0]]),
            "interior": bool(reached[0] < k < reached[-1])}


# ---------------------------------------------------------------- the EMA scaling rule


def ema_curves(nqm: NQM, lr: float, batch_size: float, steps: int, rho: float) -> dict[str, np.ndarray]:
    """Expected loss of SGD's iterate and of its EMA ``e' = rho e + (1 - rho) theta'`` on the NQM, exactly.

    Second moments per coordinate of ``(theta, e)``: ``theta' = a theta - lr xi`` (``a = 1 - lr h``, noise
    variance ``c / B``), ``E theta' e = a E theta e``, and ``e'`` mixes them. Returns ``loss`` and ``ema_loss``
    at steps ``0..steps``.
    """
    _checks.positive("steps", steps, integer=True)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    a, noise = 1.0 - lr * nqm.h, lr**2 * nqm.c / batch_size
    tt = nqm.theta0**2
    te, ee = tt.copy(), tt.copy()  # the EMA starts at theta0
    loss, ema = [0.5 * nqm.h @ tt], [0.5 * nqm.h @ ee]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            tt_new = a * a * tt + noise
            cross = a * te  # E theta' e (the new noise is independent of e)
            ee = rho * rho * ee + 2 * rho * (1 - rho) * cross + (1 - rho) ** 2 * tt_new
            te = rho * cross + (1 - rho) * tt_new
            tt = tt_new
            loss.append(0.5 * nqm.h @ tt)
            ema.append(0.5 * nqm.h @ ee)
    return {"loss": np.asarray(loss), "ema_loss": np.asarray(ema)}


def ema_scaling(nqm: NQM, *, lr: float, batch_size: int, rho: float, k: int, steps: int,
                rule: str = "power", skip: float = 0.1) -> dict[str, Any]:
    """Busbridge et al.'s rule on the NQM: base run ``(lr, B, rho)`` for ``steps`` steps against ``(k lr, k B,
    rho_k)`` for ``steps // k`` steps, compared at equal examples. ``rule="power"``: ``rho_k = rho^k``;
    ``"fixed"``: ``rho_k = rho`` (the control). Returns ``ema_gap`` (max relative difference of the EMA losses
    after the first ``skip`` of training), ``iterate_gap`` (the same for the iterates: what the linear lr rule
    alone leaves) and the curves at equal examples."""
    _checks.positive("k", k, integer=True)
    _checks.choice("rule", rule, ("power", "fixed"))
    base = ema_curves(nqm, lr, batch_size, steps, rho)
    scaled = ema_curves(nqm, k * lr, k * batch_size, steps // k, rho**k if rule == "power" else rho)
    b_ema, b_it = base["ema_loss"][::k][: steps // k + 1], base["loss"][::k][: steps // k + 1]
    start = int(skip * len(b_ema))
    gap = lambda s, b: float(np.max(np.abs(s[start:] / b[start:] - 1)))  # noqa: E731
    return {"ema_gap": gap(scaled["ema_loss"], b_ema), "iterate_gap": gap(scaled["loss"], b_it),
            "examples": np.arange(len(b_ema)) * k * batch_size, "base_ema": b_ema, "scaled_ema": scaled["ema_loss"]}
