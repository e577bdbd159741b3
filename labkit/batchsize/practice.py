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

__all__ = ["adaptive_vs_fixed", "critical_batch_scaling", "digits_split", "ema_curves", "ema_scaling", "log_slope",
           "noisy_regression", "optimizer_reality_check", "sfo_complexity", "sharpness", "stable", "warmup_at_scale",
           "weight_decay_scaling"]


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
    dimension at the smallest target). Targets are given for ``dims[0]`` and scaled by each model's starting
    loss relative to it (the same fraction of the way down for every model).
    """
    lrs = list(np.geomspace(0.005, 2.0, 16)) if lrs is None else list(lrs)
    b_crit = np.full((len(dims), len(targets)), math.nan)
    e_min = np.full_like(b_crit, math.nan)
    loss0 = OnlineRegression.power_law(dims[0], exponent, noise=noise, source=source).loss0
    for i, d in enumerate(dims):
        model = OnlineRegression.power_law(d, exponent, noise=noise, source=source)
        scaled = [t * model.loss0 / loss0 for t in targets]
        for j, sweep in enumerate(model.steps_to_target(scaled, lrs, batch_sizes, max_steps=max_steps)):
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


# ---------------------------------------------------------------- trained experiments (digits, small MLPs)


def digits_split(n_train: int = 1400, *, seed: int = 0) -> tuple[Any, Any]:
    """The 8x8 digits (flattened), split into ``n_train`` training and the rest held-out examples."""
    from labkit import data

    ds = data.digits(flat=True)
    return ds.split(n_train / len(ds), seed=seed)


def _mlp(seed: int = 0, width: int = 64) -> torch.nn.Module:
    from labkit.models import mlp

    return mlp(64, [width], 10, activation="relu", seed=seed)


def _curve(hist: Any) -> np.ndarray:
    return np.asarray(hist.eval["loss"], dtype=float)


def stable(hist: Any) -> bool:
    """A run is stable when it did not diverge, never rose above its starting loss (no spike) and ended below
    half of it."""
    loss = _curve(hist)
    return bool(not hist.diverged and np.all(np.isfinite(loss)) and loss[1:].max() <= loss[0]
                and loss[-1] < 0.5 * loss[0])


def sharpness(model: torch.nn.Module, data: Any, *, examples: int = 256, tol: float = 1e-3) -> float:
    """``lambda_max`` of the loss Hessian on the first ``examples`` examples (float64, Lanczos)."""
    from labkit import linalg
    from labkit.curvature import HessianOperator
    from labkit.data import as_dataset

    ds = as_dataset(data)
    m = min(examples, len(ds))
    H = HessianOperator(model.double(), "auto", (ds.inputs[:m].double(), ds.targets[:m]))
    return float(linalg.top_eigenvalues(H, k=1, tol=tol).values[0])


def warmup_at_scale(*, base_batch: int = 8, base_lr: float = 0.1, k: int = 32, steps: int = 200,
                    warmup: float = 0.05, lars_lr: float = 2.0, seed: int = 0) -> dict[str, Any]:
    """Goyal et al.'s linear rule at a ``k``-times batch with and without a ``warmup`` fraction of linear
    warm-up, and LARS (You et al. 2017) at the same batch, on the digits; plus ``lambda_max`` of the full-batch
    Hessian at initialisation (the stability limit ``2 / lambda_max`` that the scaled lr must respect).

    Returns the Histories (``plain``, ``warmup``, ``lars``), whether each is :func:`stable`, ``lr`` and
    ``lambda0``.
    """
    from labkit.optim import LARS, warmup_fraction
    from labkit.train import fit

    train, _ = digits_split(seed=seed)
    big, lr = base_batch * k, base_lr * k
    runs = {"plain": fit(_mlp(seed), train, lr=lr, batch_size=big, steps=steps, eval_every=2, seed=seed,
                         progress=False),
            "warmup": fit(_mlp(seed), train, lr=lr, batch_size=big, steps=steps, eval_every=2, seed=seed,
                          lr_schedule=warmup_fraction(warmup, steps), progress=False),
            "lars": fit(_mlp(seed), train, optimizer=LARS, lr=lars_lr, batch_size=big, steps=steps, eval_every=2,
                        seed=seed, progress=False)}
    return {"runs": runs, "stable": {name: stable(h) for name, h in runs.items()}, "lr": lr,
            "lambda0": sharpness(_mlp(seed), train), "batch_size": big}


def _held_out(model: torch.nn.Module, test: Any) -> dict[str, float]:
    from labkit.train import evaluate

    return evaluate(model, test)


def optimizer_reality_check(*, batch_size: int = 256, steps: int = 150, grids: dict[str, Sequence[float]] | None = None,
                            untuned: dict[str, float] | None = None, seed: int = 0) -> dict[str, Any]:
    """Nado et al.'s question at a large batch on the digits: does a well-tuned momentum (Nesterov-like heavy ball)
    or Adam match LARS and LAMB? Each optimiser's learning rate is tuned on a grid (``grids``); the score is the
    held-out accuracy after ``steps`` steps. ``untuned`` runs each named optimiser once at a learning rate tuned
    for a small batch (the control). Returns ``best`` ``{optimiser: (accuracy, lr)}`` and ``untuned``
    ``{optimiser: accuracy}``."""
    from labkit.optim import LAMB, LARS
    from labkit.train import fit

    grids = grids or {"momentum": [0.03, 0.1, 0.3, 1.0], "adam": [1e-3, 3e-3, 1e-2, 3e-2],
                      "lars": [0.5, 1.0, 2.0, 4.0], "lamb": [3e-3, 1e-2, 3e-2, 1e-1]}
    untuned = {"momentum": 0.003, "adam": 1e-4} if untuned is None else untuned
    opts: dict[str, Any] = {"momentum": "momentum", "adam": "adam", "lars": LARS, "lamb": LAMB}
    train, test = digits_split(seed=seed)

    def score(name: str, lr: float) -> float:
        model = _mlp(seed)
        h = fit(model, train, optimizer=opts[name], lr=lr, batch_size=batch_size, steps=steps, seed=seed,
                eval_every=steps, progress=False)
        return math.nan if h.diverged else _held_out(model, test)["accuracy"]

    best = {}
    for name, lrs in grids.items():
        scores = [score(name, lr) for lr in lrs]
        j = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        best[name] = (float(scores[j]), float(lrs[j]))
    return {"best": best, "untuned": {name: score(name, lr) for name, lr in untuned.items()},
            "batch_size": batch_size, "steps": steps}


def noisy_regression(n: int = 512, *, seed: int = 0) -> tuple[Any, Callable[[int], torch.nn.Module]]:
    """Notebook 04's task: a tanh teacher with label noise 0.1 (loss floor 0.01), and a tanh MLP 8-32-1 maker."""
    from labkit import data
    from labkit.models import mlp

    ds = data.teacher_student(n=n, dim=8, teacher_width=16, noise=0.1, seed=seed)
    return ds, lambda s: mlp(8, [32], 1, activation="tanh", seed=s)


def adaptive_vs_fixed(data: Any = None, make_model: Callable[[int], torch.nn.Module] | None = None, *,
                      target: float = 0.02, lr: float = 0.1, theta: float = 1.0, batch_sizes: Sequence[int] = (
                          2, 4, 8, 16, 32, 64, 128, 256, 512), initial_batch: int = 2, test_every: int = 10,
                      max_steps: int = 4000, eval_every: int = 2, seed: int = 0) -> dict[str, Any]:
    """The norm-test schedule (:func:`~labkit.batchsize.fit_adaptive`, from ``initial_batch``) against every fixed
    batch at the same ``lr`` (one vectorised :func:`~labkit.batchsize.steps_to_target` sweep): steps and examples
    to the ``target`` loss. Returns ``fixed`` (the sweep's best table), ``adaptive`` ``(steps, examples)`` or
    None, the schedule's ``batch_sizes`` per step, and ``fewer_steps`` (than the smallest fixed batch) and
    ``no_more_examples`` (than the best fixed batch), AdAdaGrad's two claims."""
    from labkit.batchsize.adaptive import NormTestSchedule, fit_adaptive
    from labkit.batchsize.sweep import steps_to_target

    if data is None or make_model is None:
        data, make_model = noisy_regression(seed=seed)
    sweep = steps_to_target(make_model, data, batch_sizes=list(batch_sizes), target=target, lrs=[lr],
                            max_steps=max_steps, eval_every=eval_every, seeds=[seed], progress=False)
    fixed = sweep.best()
    run = fit_adaptive(make_model(seed), data, initial_batch=initial_batch, schedule=NormTestSchedule(theta),
                       test_every=test_every, steps=max_steps, lr=lr, target=target, eval_every=eval_every, seed=seed,
                       progress=False)
    hit = run.reached(target)
    small = fixed["steps"][0] if fixed["reached"][0] else math.inf
    best_examples = np.nanmin(fixed["examples"]) if fixed["reached"].any() else math.inf
    return {"fixed": fixed, "adaptive": hit, "batch_sizes": run.batch_sizes, "run": run,
            "fewer_steps": hit is not None and hit[0] < small,
            "no_more_examples": hit is not None and hit[1] <= best_examples}


def weight_decay_scaling(batch_sizes: Sequence[int] = (8, 32, 128), *, lr: float = 1e-2, epochs: int = 100,
                         n_train: int = 300, weight_decays: Sequence[float] | None = None, width: int = 256,
                         seed: int = 0) -> dict[str, Any]:
    """"Power Lines": AdamW's timescale ``tau = B / (lr lambda D)`` is what should stay fixed, so at fixed ``lr``
    and data ``D`` (``epochs`` passes over ``n_train`` digits) the best weight decay grows like ``B``.
    For every batch size one vectorised ``fit_many`` over the ``weight_decays`` grid; the best by held-out loss.
    Returns ``best`` (one per batch size) and ``slope`` (log-log, best decay against B; the claim: 1)."""
    from labkit.models import mlp
    from labkit.train import fit_many

    train, test = digits_split(n_train, seed=seed)
    wds = list(np.geomspace(0.01, 30, 8)) if weight_decays is None else list(weight_decays)
    best, losses = [], []
    for b in batch_sizes:
        steps = max(1, int(epochs * len(train) / b))
        hs = fit_many(lambda s: mlp(64, [width], 10, activation="relu", seed=s), train,
                      hparams={"weight_decay": wds, "seed": seed}, optimizer="adamw", lr=lr, batch_size=b, steps=steps,
                      eval_data=test, eval_every=steps, progress=False)
        held = [h.eval["loss"][-1] if not h.diverged else math.inf for h in hs]
        losses.append(held)
        best.append(wds[int(np.argmin(held))])
    return {"batch_sizes": list(batch_sizes), "best": best, "losses": np.asarray(losses), "weight_decays": wds,
            "slope": log_slope(batch_sizes, best)}
