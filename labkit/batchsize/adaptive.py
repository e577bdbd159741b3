"""An adaptive batch size driven by the norm test: grow B when the gradient is mostly noise.

Byrd, Chin, Nocedal, Wu (2012), "Sample size selection in optimization methods for machine learning";
Bollapragada, Byrd, Nocedal (2018), "Adaptive Sampling Strategies for Stochastic Optimization"; for adaptive
optimisers, "AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient Methods" (Lau et al. 2024). Every
``test_every`` steps the norm test (:mod:`labkit.batchsize.instruments`) is measured on a batch of the current
size; when ``tr(S) / (B |g_B|^2) > theta^2`` the batch grows to ``ceil(tr(S) / (theta^2 |g_B|^2))``, the size at
which the test would pass (``B_simple / theta^2``), never shrinking and capped at ``max_batch``.

:func:`fit_adaptive` trains with :func:`labkit.train.fit` in segments of ``test_every`` steps, one batch size
per segment, with one optimiser whose state (momentum, Adam moments) carries across segments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from labkit import _checks
from labkit.batchsize.instruments import GradientTests, gradient_tests
from labkit.data import as_dataset
from labkit.optim import torch_optimizer
from labkit.risk import Risk
from labkit.train import Callback, History, StepInfo, fit

__all__ = ["AdaptiveRun", "NormTestSchedule", "fit_adaptive"]


@dataclass(frozen=True)
class NormTestSchedule:
    """The rule: ``B' = min(max_batch, max(B, ceil(B_simple / theta^2)))`` when the norm test fails at ``theta``.

    The test at batch ``B`` is ``B_simple / B <= theta^2`` (``B_simple = tr(S) / |g_B|^2``, measured on any batch:
    :attr:`GradientTests.norm_test` is the same test at the measured batch's own size).
    """

    theta: float = 1.0
    max_batch: int | None = None

    def __post_init__(self) -> None:
        _checks.positive("theta", self.theta)
        if self.max_batch is not None:
            _checks.positive("max_batch", self.max_batch, integer=True)

    def next_batch(self, batch_size: int, tests: GradientTests) -> int:
        """The batch size after a measurement ``tests`` taken at ``batch_size``."""
        _checks.positive("batch_size", batch_size, integer=True)
        passes = tests.b_simple <= self.theta**2 * batch_size
        grown = batch_size if passes else max(batch_size, tests.suggested_batch(self.theta))
        return grown if self.max_batch is None else min(grown, self.max_batch)


@dataclass
class AdaptiveRun:
    """What :func:`fit_adaptive` did: the merged :class:`History`, the batch size of every step, and each test.

    ``decisions``: one dict per measurement ``{step, batch_size, norm_test, b_simple, next_batch}``.
    """

    history: History
    batch_sizes: list[int] = field(default_factory=list)
    decisions: list[dict[str, float]] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.batch_sizes)

    @property
    def examples(self) -> int:
        """Training examples used (the sum of the batch sizes of the steps taken)."""
        return int(sum(self.batch_sizes))

    def reached(self, target: float) -> tuple[int, int] | None:
        """``(steps, examples)`` at the first evaluation with loss ``<= target``, or None."""
        for s, v in zip(self.history.eval_steps, self.history.eval.get("loss", [])):
            if v <= target:
                return s, int(sum(self.batch_sizes[:s]))
        return None


class _StopAtTarget(Callback):
    def __init__(self, target: float | None):
        self.target, self.hit = target, False

    def on_step(self, info: StepInfo) -> bool:
        loss = info.metrics.get("loss")
        if self.target is not None and loss is not None and loss <= self.target:
            self.hit = True
        return self.hit


def fit_adaptive(
    model: nn.Module,
    data: Any,
    *,
    initial_batch: int = 2,
    schedule: NormTestSchedule | None = None,
    test_every: int = 10,
    steps: int = 1000,
    target: float | None = None,
    loss: Any = "auto",
    optimizer: str | Callable[..., torch.optim.Optimizer] = "sgd",
    lr: float = 0.1,
    weight_decay: float = 0.0,
    eval_every: int | None = None,
    seed: int = 0,
    callbacks: Iterable[Callback | Callable] = (),
    progress: bool = True,
) -> AdaptiveRun:
    """Train ``model`` in place with the norm-test batch schedule (see the module docstring).

    Starts at ``initial_batch``; before every segment of ``test_every`` steps measures the norm test on a fresh
    batch of the current size (drawn with ``seed`` and the step) and applies ``schedule`` (default
    ``NormTestSchedule(theta=1, max_batch=len(data))``). Stops after ``steps`` steps or, given ``target``, at
    the first evaluation (every ``eval_every`` steps, default ``test_every``, on the whole training set) with
    loss ``<= target``. ``callbacks`` see every ``fit`` step (their ``info.step`` counts within a segment).
    """
    ds = as_dataset(data)
    n = len(ds)
    schedule = NormTestSchedule(1.0, n) if schedule is None else schedule
    if not isinstance(schedule, NormTestSchedule):
        raise TypeError(f"schedule must be a NormTestSchedule, got {type(schedule).__name__}")
    _checks.in_range("initial_batch", initial_batch, 2, n)
    _checks.positive("test_every", test_every, integer=True)
    _checks.positive("steps", steps, integer=True)
    eval_every = test_every if eval_every is None else _checks.positive("eval_every", eval_every, integer=True)
    cap = min(n, schedule.max_batch or n)
    opt = torch_optimizer(optimizer, model.parameters(), lr, weight_decay)
    shared = lambda params, lr, weight_decay: opt  # noqa: E731  one optimiser state for all segments
    stop = _StopAtTarget(target)
    run = AdaptiveRun(History(hparams={"lr": lr, "initial_batch": initial_batch, "theta": schedule.theta,
                                       "test_every": test_every, "seed": seed}))
    from labkit.history import progress_bar

    bar = progress_bar(steps, "fit_adaptive", progress)
    batch, done = initial_batch, 0
    try:
        while done < steps and not stop.hit:
            risk = Risk(model, loss, ds)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + done)
            idx = torch.randperm(n, generator=gen)[:batch]
            tests = gradient_tests(risk.subset(idx))
            new = min(cap, schedule.next_batch(batch, tests))
            run.decisions.append({"step": done, "batch_size": batch, "norm_test": tests.norm_test,
                                  "b_simple": tests.b_simple, "next_batch": new})
            batch = max(2, new) if math.isfinite(tests.b_simple) else batch  # undefined (g_B = 0): keep B
            seg = min(test_every, steps - done)
            h = fit(model, ds, loss=loss, optimizer=shared, lr=lr, batch_size=batch, steps=seg,
                    seed=seed * 1_000_003 + done, eval_every=eval_every, callbacks=[*callbacks, stop], progress=False)
            _append(run.history, h, done)
            run.batch_sizes += [batch] * len(h.loss)
            done += len(h.loss)
            bar.update(len(h.loss))
            if h.diverged:
                break
    finally:
        bar.close()
    return run


def _append(into: History, h: History, offset: int) -> None:
    """Append segment ``h`` (its steps counted from ``offset``) to the merged history."""
    into.loss += h.loss
    into.lr += h.lr
    into.wall_time += h.wall_time
    into.diverged, into.diverged_at = h.diverged, None if h.diverged_at is None else offset + h.diverged_at
    into.stopped_early = h.stopped_early
    for j, s in enumerate(h.eval_steps):
        if into.eval_steps and into.eval_steps[-1] == offset + s:
            continue  # the previous segment's last evaluation is this one's first
        into.record_eval(offset + s, {k: v[j] for k, v in h.eval.items()})
