"""Training primitives: ``fit`` one network, ``fit_many`` a population at once.

``fit`` is defined here; ``fit_many`` (and ``grid``, ``ENGINES``) live in :mod:`labkit.population`, the
``History``/``StepInfo``/``Callback`` types in :mod:`labkit.history` and ``evaluate`` in :mod:`labkit.prepare`;
all are re-exported here, their historical home.

Divergence is an outcome, not an error: a non-finite loss ends that run,
``History.diverged`` becomes True and ``History.diverged_at`` records the step.
Callbacks (live plots, sharpness, noise-scale and kernel trackers) see every
step and can stop training::

    hist = fit(model, ds, lr=0.1, steps=200, callbacks=[live_plot])
    hists = fit_many(lambda seed: mlp(2, [32], 1, seed=seed), ds,
                     hparams={"lr": [0.01, 0.1, 1.0], "seed": [0, 0, 0]}, steps=200)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from labkit import _checks, threads
from labkit.data import as_dataset
from labkit.history import Callback, History, StepInfo, as_callbacks, progress_bar
from labkit.losses import Loss
from labkit.optim import schedule, torch_optimizer
from labkit.population.fit import ENGINES, fit_many, grid
from labkit.prepare import DataLike, check_model_fits, check_settings, evaluate, prepare
from labkit.risk import resolve_loss

__all__ = ["ENGINES", "Callback", "History", "StepInfo", "evaluate", "fit", "fit_many", "grid"]


# ---------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    data: DataLike,
    *,
    loss: str | Loss | Callable = "auto",
    optimizer: str | Callable[..., torch.optim.Optimizer] = "sgd",
    lr: float = 0.1,
    batch_size: int | None = None,
    steps: int = 100,
    lr_schedule: str | Callable[[int], float] | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    eval_data: DataLike | None = None,
    eval_every: int | None = None,
    callbacks: Iterable[Callback | Callable] = (),
    progress: bool = True,
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    ``optimizer`` is ``"sgd"``, ``"momentum"`` (0.9), ``"adam"``, ``"adamw"`` or a
    callable ``f(params, lr=..., weight_decay=...)`` returning a torch optimiser.
    ``batch_size=None`` trains on the full batch; otherwise mini-batches come
    from ``data.batches(batch_size, seed)``. ``lr_schedule`` multiplies ``lr``
    (``"warmup"``, ``"cosine"`` or ``f(step) -> float``). ``device`` defaults to
    the model's device; the data is moved there and cast to the model's dtype.
    Ctrl-C (or a callback returning True) stops cleanly with ``stopped_early``.
    """
    ds = prepare(data, model, device)
    loss_fn = resolve_loss(loss, ds)
    check_settings(ds, loss_fn, optimizer, steps, batch_size, [lr], [weight_decay])
    check_model_fits(model, ds, loss_fn)
    eval_ds = ds if eval_data is None else as_dataset(eval_data).to(ds.inputs.device, ds.inputs.dtype)
    eval_every = max(1, steps // 50) if eval_every is None else eval_every
    _checks.positive("eval_every", eval_every, integer=True)
    cbs = as_callbacks(callbacks)

    hist = History(hparams={"lr": lr, "weight_decay": weight_decay, "seed": seed, "batch_size": batch_size,
                            "optimizer": optimizer if isinstance(optimizer, str) else repr(optimizer)})
    opt = torch_optimizer(optimizer, model.parameters(), lr, weight_decay)
    mult = schedule(lr_schedule, steps)
    batches = ds.batches(batch_size, seed=seed) if batch_size is not None else None
    metrics: dict[str, float] = {}

    def info(step: int, value: float, lr_t: float) -> StepInfo:
        return StepInfo(step, value, lr_t, metrics, model, None, loss_fn, ds, batch_size, optimizer, hist, opt)

    for cb in cbs:
        cb.on_start(info(0, math.nan, lr * mult(0)))
    start = time.perf_counter()
    bar = progress_bar(steps, "fit", progress)
    taken = 0  # updates applied: the step label of the current parameters
    # one thread when a step's ops are too small to amortise a barrier, or a busy neighbour holds a core
    with threads.for_work(threads.layer_flops(model, batch_size or len(ds))):
        try:
            for t in range(steps):
                lr_t = lr * mult(t)
                for group in opt.param_groups:
                    group["lr"] = lr_t
                x, y = next(batches) if batches is not None else (ds.inputs, ds.targets)
                opt.zero_grad(set_to_none=True)
                value_t = loss_fn(model(x), y)
                value = float(value_t.detach())
                hist.loss.append(value)
                hist.lr.append(lr_t)
                if not math.isfinite(value):
                    hist.diverged, hist.diverged_at = True, t
                    break
                if t % eval_every == 0:
                    metrics = evaluate(model, eval_ds, loss=loss_fn)
                    hist.record_eval(t, metrics)
                value_t.backward()
                stop = [cb.on_step(info(t, value, lr_t)) for cb in cbs]
                opt.step()
                taken = t + 1
                bar.update(1)
                if any(stop):
                    hist.stopped_early = True
                    break
        except KeyboardInterrupt:
            warnings.warn(f"fit interrupted at step {taken}; returning the history so far", stacklevel=2)
            hist.stopped_early = True
        finally:
            bar.close()
            if not hist.diverged:  # keep only the steps whose update was applied (as fit_many does)
                del hist.loss[taken:], hist.lr[taken:]
    if not hist.diverged and (not hist.eval_steps or hist.eval_steps[-1] != taken):
        hist.record_eval(taken, evaluate(model, eval_ds, loss=loss_fn))
    hist.wall_time = time.perf_counter() - start
    for cb in cbs:
        cb.on_end(hist)
    return hist
