"""Steps to a target against batch size: the measurement of Shallue et al. (2018).

Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl (2018), "Measuring the Effects of
Data Parallelism on Neural Network Training", JMLR 2019, arXiv:1811.03600. For every batch
size, tune the learning rate separately, record the first step at which the evaluation
metric reaches the goal and keep the best trial. On log-log axes steps fall with slope -1
(perfect scaling), then flatten (diminishing returns) and finally stop falling (maximal
data parallelism); McCandlish et al.'s ``S = S_min (1 + B_crit / B)`` (:func:`fit_tradeoff`)
summarises the curve.

Every (learning rate, seed) trial of one batch size trains in one vectorised
:func:`labkit.train.fit_many` call; a trial equals ``fit(make_model(seed), data, lr=lr,
batch_size=B, seed=seed, ...)`` run on its own, so the steps reached are the same.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit import _checks
from labkit.batchsize.rules import RULES, scale_lr
from labkit.batchsize.tradeoff import Tradeoff, draw_regimes, fit_tradeoff
from labkit.data import as_dataset
from labkit.machine import MAX_MEMORY
from labkit.train import Callback, History, StepInfo, fit_many, grid

__all__ = ["METRICS", "Sweep", "first_reached", "repeat_example", "steps_to_target"]

#: metric -> True when larger is better
METRICS = {"loss": False, "accuracy": True}


def first_reached(history: History, target: float, metric: str = "loss") -> int | None:
    """The first evaluation step of ``history`` at which ``metric`` reaches ``target``, or None.

    ``loss`` reaches the target when ``<= target``, ``accuracy`` when ``>= target``. Steps
    are counts of updates (``History.eval_steps``): step 0 is the initialisation.
    """
    higher = METRICS[_checks.choice("metric", metric, METRICS)]
    for step, value in zip(history.eval_steps, history.eval.get(metric, [])):
        if (value >= target) if higher else (value <= target):
            return int(step)
    return None


def repeat_example(data: Any, index: int = 0) -> Any:
    """A control without gradient noise: ``data``'s example ``index`` repeated ``len(data)`` times.

    Every batch of it has the same gradient as the full batch, so the batch size cannot change the
    steps to a target: no perfect-scaling regime exists.
    """
    ds = as_dataset(data)
    _checks.in_range("index", index, 0, len(ds) - 1)
    rows = torch.full((len(ds),), index, dtype=torch.long)
    return ds[rows]


class _StopWhenDone(Callback):
    """Stops a fit_many group once every member has reached the target or diverged."""

    def __init__(self, target: float, metric: str):
        self.target, self.metric, self.done = target, metric, None

    def on_step(self, info: StepInfo) -> bool | None:
        alive = torch.isfinite(info.loss)
        if self.done is None:
            self.done = torch.zeros_like(alive)
        value = info.metrics.get(self.metric)
        if value is not None:
            hit = value >= self.target if METRICS[self.metric] else value <= self.target
            self.done = self.done | (alive & hit)
        return bool((self.done | ~alive).all())


@dataclass
class Sweep:
    """All trials of a steps-to-target sweep.

    ``rows``: one dict per (batch size, lr, seed) trial with ``batch_size, lr, seed,
    steps, examples, reached, diverged``; ``steps`` and ``examples`` are None when the
    target was never reached (never ``max_steps``).
    """

    rows: list[dict[str, Any]]
    target: float
    metric: str
    max_steps: int
    eval_every: int
    histories: list[History] = field(default_factory=list, repr=False)

    def table(self) -> list[dict[str, Any]]:
        """The trials as a list of dicts (one per trial)."""
        return [dict(r) for r in self.rows]

    def __repr__(self) -> str:
        lines = [f"Sweep({self.metric} -> {self.target:g}, {len(self.rows)} trials, max_steps={self.max_steps})",
                 f"{'batch':>7} {'lr':>10} {'seed':>5} {'steps':>7} {'examples':>10}"]
        for r in self.rows:
            s = "-" if r["steps"] is None else r["steps"]
            e = "-" if r["examples"] is None else r["examples"]
            flag = " diverged" if r["diverged"] and not r["reached"] else ""
            lines.append(f"{r['batch_size']:>7} {r['lr']:>10.4g} {r['seed']:>5} {s!s:>7} {e!s:>10}{flag}")
        return "\n".join(lines)

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({r["batch_size"] for r in self.rows})

    def best(self) -> dict[str, np.ndarray]:
        """Per batch size, the learning rate with the fewest steps (mean over seeds; all seeds must reach).

        Returns arrays ``batch_size, lr, steps, examples, reached, lr_at_edge`` (``steps``
        NaN where no learning rate reached the target; ``lr_at_edge`` flags a best lr at
        either end of the grid, a sign the grid is too narrow).
        """
        out: dict[str, list] = {k: [] for k in ("batch_size", "lr", "steps", "examples", "reached", "lr_at_edge")}
        for b in self.batch_sizes:
            lrs = sorted({r["lr"] for r in self.rows if r["batch_size"] == b})
            scores = []
            for lr in lrs:
                trial = [r for r in self.rows if r["batch_size"] == b and r["lr"] == lr]
                ok = all(r["reached"] for r in trial)
                scores.append(float(np.mean([r["steps"] for r in trial])) if ok else math.inf)
            j = int(np.argmin(scores))
            reached = math.isfinite(scores[j])
            out["batch_size"].append(b)
            out["lr"].append(lrs[j] if reached else math.nan)
            out["steps"].append(scores[j] if reached else math.nan)
            out["examples"].append(scores[j] * b if reached else math.nan)
            out["reached"].append(reached)
            out["lr_at_edge"].append(reached and len(lrs) > 1 and j in (0, len(lrs) - 1))
        return {k: np.asarray(v) for k, v in out.items()}

    def slopes(self) -> np.ndarray:
        """Log-log slopes of the best steps between consecutive batch sizes that reached the target.

        Near -1: perfect scaling (doubling the batch halves the steps); near 0: maximal data parallelism.
        """
        best = self.best()
        ok = best["reached"]
        return np.diff(np.log(best["steps"][ok])) / np.diff(np.log(best["batch_size"][ok].astype(float)))

    def tradeoff(self) -> Tradeoff:
        """:func:`fit_tradeoff` on the best trial of every batch size that reached the target."""
        best = self.best()
        return fit_tradeoff(best["steps"], best["examples"])

    def figure(self, fit: bool = True) -> Any:
        """Steps to target against batch size (log-log): every trial, the best per batch size, and the regimes.

        With ``fit`` (and >= 3 reached batch sizes) the fitted ``S_min (1 + B_crit / B)`` is
        drawn and the three regimes of Shallue et al. are shaded (:func:`draw_regimes`) where the
        fitted curve's log-log slope ``-B_crit / (B + B_crit)`` is below -0.8 (perfect scaling,
        B < B_crit/4), between (diminishing returns) and above -0.2 (maximal data parallelism,
        B > 4 B_crit).
        """
        from labkit.viz.theme import COLORS, figure

        fig = figure(f"Steps to {self.metric} {'≥' if METRICS[self.metric] else '≤'} {self.target:g}",
                     "batch size B", "steps to target", log_x=True, log_y=True)
        hit = [r for r in self.rows if r["reached"]]
        fig.add_scatter(x=[r["batch_size"] for r in hit], y=[r["steps"] for r in hit], mode="markers",
                        name="trials", marker=dict(color="#BBBBBB", size=5),
                        text=[f"lr={r['lr']:.3g}, seed={r['seed']}" for r in hit])
        best = self.best()
        ok = best["reached"]
        fig.add_scatter(x=best["batch_size"][ok], y=best["steps"][ok], mode="lines+markers", name="best lr",
                        marker=dict(color=COLORS[0], size=9), text=[f"lr={v:.3g}" for v in best["lr"][ok]])
        if fit and ok.sum() >= 3:
            t = self.tradeoff()
            b = np.geomspace(best["batch_size"][0] / 2, best["batch_size"][-1] * 2, 200)
            fig.add_scatter(x=b, y=t.steps_at(b), mode="lines", name=f"S_min(1+B_crit/B), B_crit={t.b_crit:.3g}",
                            line=dict(dash="dash", color=COLORS[1]))
            draw_regimes(fig, t.b_crit, (b[0], b[-1]))
        return fig

    def lr_figure(self) -> Any:
        """The best learning rate against batch size (log-log) with linear and square-root reference lines."""
        from labkit.viz.theme import COLORS, REFERENCE, figure

        best = self.best()
        ok = best["reached"]
        fig = figure("Best learning rate per batch size", "batch size B", "best lr", log_x=True, log_y=True)
        fig.add_scatter(x=best["batch_size"][ok], y=best["lr"][ok], mode="lines+markers", name="best lr",
                        marker=dict(color=COLORS[0], size=9))
        if ok.any():
            b0, lr0 = best["batch_size"][ok][0], best["lr"][ok][0]
            b = np.asarray(self.batch_sizes, dtype=float)
            fig.add_scatter(x=b, y=lr0 * b / b0, mode="lines", name="linear rule", line=dict(dash="dash",
                            color=REFERENCE))
            fig.add_scatter(x=b, y=lr0 * np.sqrt(b / b0), mode="lines", name="sqrt rule", line=dict(dash="dot",
                            color=REFERENCE))
        return fig


def _check_batch_sizes(batch_sizes: Any, n: int) -> list[int]:
    if isinstance(batch_sizes, (int, str)) or not isinstance(batch_sizes, Sequence) or not batch_sizes:
        raise TypeError(f"batch_sizes must be a non-empty sequence of ints, got {batch_sizes!r}")
    out = [_checks.in_range(f"batch_sizes[{i}]", int(b) if isinstance(b, np.integer) else b, 1, n)
           for i, b in enumerate(batch_sizes)]
    if any(b1 <= b0 for b0, b1 in itertools.pairwise(out)):
        raise ValueError(f"batch_sizes must be strictly increasing, got {list(batch_sizes)}")
    return out


def _run_batch_size(make_model: Callable, ds: Any, hp: dict, batch_size: int, options: dict,
                    stop: tuple[float, str] | None) -> list:
    """One batch size of a sweep: every (lr, seed) member in one vectorised ``fit_many`` (a task for a worker).

    ``stop = (target, metric)`` stops the run once every member reached the target or diverged (a fresh
    callback per batch size: it keeps state).
    """
    callbacks = [_StopWhenDone(*stop)] if stop is not None else []
    return fit_many(make_model, ds, hparams=hp, batch_size=batch_size, callbacks=callbacks, **options)


def steps_to_target(
    make_model: Callable[[int], nn.Module],
    data: Any,
    *,
    batch_sizes: Sequence[int],
    target: float,
    metric: str = "loss",
    lrs: Sequence[float],
    lr_rule: str = "none",
    seeds: Sequence[int] = (0,),
    optimizer: str = "sgd",
    loss: Any = "auto",
    max_steps: int = 1000,
    eval_data: Any = None,
    eval_every: int = 1,
    lr_schedule: Any = None,
    keep_histories: bool = False,
    stop_early: bool = True,
    progress: bool = True,
    executor: Any = None,
    max_memory: int = MAX_MEMORY,
) -> Sweep:
    """Steps (and examples) to reach ``target`` for every batch size, learning rate and seed.

    ``metric`` (``"loss"``: reached when ``<= target``; ``"accuracy"``: when ``>= target``,
    classification only) is measured on ``eval_data`` (default: the whole training set)
    every ``eval_every`` steps, at the same steps for every trial, so "steps to target" is
    the first evaluation step that meets the target; a trial that never does is reported
    as not reached (``steps=None``). ``lrs`` is the learning-rate grid at ``batch_sizes[0]``;
    ``lr_rule`` (``"none"``, ``"linear"``, ``"sqrt"``) moves the whole grid with the batch
    size (see :func:`scale_lr`). With ``stop_early`` a batch size stops once all its trials
    reached the target or diverged (the recorded steps do not change; ``keep_histories``
    with ``stop_early=False`` keeps full ``max_steps`` curves). Each batch size is one vectorised
    ``fit_many`` run; with an ``executor`` (:mod:`labkit.parallel`) the batch sizes run on workers at once
    (the data travels once) and the sweep is identical to the in-process one. ``max_memory`` bounds each
    ``fit_many`` call (its refusal names it).
    """
    ds = as_dataset(data)
    bs = _check_batch_sizes(batch_sizes, len(ds))
    _checks.choice("metric", metric, METRICS)
    task = (as_dataset(eval_data) if eval_data is not None else ds).task
    if metric == "accuracy" and task != "classification":
        raise ValueError(f"metric='accuracy' needs a classification task, but the data is {task!r}; use metric='loss'")
    _checks.positive("target", target, allow_zero=metric == "loss")
    if metric == "accuracy" and target > 1:
        raise ValueError(f"target accuracy must be at most 1, got {target!r}")
    _checks.choice("lr_rule", lr_rule, RULES)
    if isinstance(lrs, (int, float)) or not lrs:
        raise TypeError(f"lrs must be a non-empty sequence of learning rates, got {lrs!r}")
    for i, lr in enumerate(lrs):
        _checks.positive(f"lrs[{i}]", lr)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of ints")
    _checks.positive("max_steps", max_steps, integer=True)
    _checks.positive("eval_every", eval_every, integer=True)

    from labkit import parallel

    plans = [(b, grid(lr=[scale_lr(lr, bs[0], b, lr_rule) for lr in lrs], seed=seeds)) for b in bs]
    options = dict(optimizer=optimizer, loss=loss, steps=max_steps, eval_data=eval_data, eval_every=eval_every,
                   lr_schedule=lr_schedule, progress=progress and executor is None, max_memory=max_memory)
    stop = (target, metric) if stop_early else None
    client = parallel.client(executor)
    shared = ds if client is None else client.scatter(ds, broadcast=True)
    runs: dict[int, list] = {}
    args = [(make_model, shared, hp, b, options, stop) for b, hp in plans]
    for i, hists in parallel.submit(_run_batch_size, args, name="steps-to-target", executor=client):
        runs[i] = hists
    rows, histories = [], []
    for i, (b, hp) in enumerate(plans):
        hists = runs[i]
        for lr, seed, h in zip(hp["lr"], hp["seed"], hists):
            s = first_reached(h, target, metric)
            rows.append(dict(batch_size=b, lr=lr, seed=seed, steps=s, examples=None if s is None else s * b,
                             reached=s is not None, diverged=h.diverged))
        if keep_histories:
            histories.extend(hists)
    return Sweep(rows, float(target), metric, max_steps, eval_every, histories)
