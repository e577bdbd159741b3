"""How hyperparameters should move when the batch size changes by ``k = to_batch / from_batch``.

- SGD, **linear rule** (Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training
  ImageNet in 1 Hour", arXiv:1706.02677): ``lr -> k lr``, with a gradual linear warm-up
  from the small-batch lr (:func:`warmup`). Holds while ``B`` is well below the critical
  batch size and after the first steps.
- Adam/RMSprop, **square-root rule** (Malladi, Lyu, Panigrahi, Arora 2022, "On the SDEs
  and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS, arXiv:2205.10287):
  ``lr -> sqrt(k) lr``, ``1 - beta_i -> k (1 - beta_i)``, ``eps -> eps / sqrt(k)``
  (:func:`scale_adam`).
- **Model EMA** (Busbridge et al. 2023, "How to Scale Your EMA", NeurIPS,
  arXiv:2307.13813): ``rho -> rho^k``, so the EMA forgets at the same rate per example
  (:func:`scale_ema`).
- **Adam's beta2 at small batch** (Marek, Lotfi, Somasundaram, Wilson, Goldblum 2025,
  "Small Batch Size Training for Language Models: When Vanilla SGD Works, and Why
  Gradient Accumulation Is Wasteful", arXiv:2507.07101): keep the half-life of the
  second-moment average fixed in *examples* (tokens), ``beta2 -> beta2^k``
  (:func:`scale_beta2`); at batch size 1 this gives beta2 close to 1.

``beta^k`` and ``1 - k (1 - beta)`` agree to first order in ``1 - beta``; the power form
stays in (0, 1) for every ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from labkit import _checks

__all__ = ["RULES", "compare_rule", "scale_adam", "scale_beta2", "scale_ema", "scale_lr", "warmup"]

RULES = ("linear", "sqrt", "none")


def _ratio(from_batch: int, to_batch: int) -> float:
    _checks.positive("from_batch", from_batch, integer=True)
    _checks.positive("to_batch", to_batch, integer=True)
    return to_batch / from_batch


def scale_lr(lr: float, from_batch: int, to_batch: int, rule: str = "linear") -> float:
    """The learning rate for ``to_batch`` given a good one for ``from_batch``.

    ``rule="linear"``: ``lr k`` (SGD, Goyal et al. 2017); ``"sqrt"``: ``lr sqrt(k)``
    (Adam, Malladi et al. 2022); ``"none"``: ``lr``.

    >>> scale_lr(0.1, 256, 1024), scale_lr(1e-3, 64, 256, rule="sqrt")
    (0.4, 0.002)
    """
    _checks.positive("lr", lr)
    _checks.choice("rule", rule, RULES)
    k = _ratio(from_batch, to_batch)
    return lr * {"linear": k, "sqrt": math.sqrt(k), "none": 1.0}[rule]


def warmup(from_batch: int, to_batch: int, warmup_steps: int) -> Callable[[int], float]:
    """Goyal et al.'s gradual warm-up as an lr multiplier ``step -> float`` for ``fit(lr_schedule=...)``.

    Use it with the linearly scaled lr ``k lr``: the multiplier rises linearly from
    ``1/k`` (the small-batch lr) at step 0 to 1 at ``warmup_steps``, then stays at 1.

    >>> f = warmup(32, 256, 10)
    >>> f(0), f(10), f(100)
    (0.125, 1.0, 1.0)
    """
    k = _ratio(from_batch, to_batch)
    _checks.positive("warmup_steps", warmup_steps, integer=True)
    start = min(1.0, 1.0 / k)
    return lambda step: start + (1.0 - start) * min(1.0, step / warmup_steps)


def _check_beta(name: str, beta: float) -> float:
    _checks.positive(name, beta, allow_zero=True)
    if not beta < 1:
        raise ValueError(f"{name} must be in [0, 1), got {beta!r}")
    return beta


def scale_ema(momentum: float, from_batch: int, to_batch: int) -> float:
    """The model-EMA momentum ``rho^k`` for ``to_batch`` (Busbridge et al. 2023, "How to Scale Your EMA").

    One step at batch ``k B`` should average as much as ``k`` steps at batch ``B``.

    >>> round(scale_ema(0.99, 64, 128), 6)
    0.9801
    """
    return _check_beta("momentum", momentum) ** _ratio(from_batch, to_batch)


def scale_beta2(beta2: float, from_batch: int, to_batch: int) -> float:
    """Adam's ``beta2^k``: the second-moment half-life fixed in examples (Marek et al. 2025).

    Marek et al. find that small batches (down to 1) train as well as large ones when
    beta2 is scaled this way, e.g. 0.95 at batch 512 becomes ``0.95^(1/512) ~ 0.9999`` at 1.
    The half-life in steps is ``log(0.5) / log(beta2)``, in examples that times the batch.

    >>> round(scale_beta2(0.95, 512, 1), 5)
    0.9999
    """
    return _check_beta("beta2", beta2) ** _ratio(from_batch, to_batch)


def scale_adam(
    lr: float, betas: tuple[float, float], eps: float, from_batch: int, to_batch: int
) -> tuple[float, tuple[float, float], float]:
    """Malladi et al.'s (2022) square-root rule for Adam: ``(sqrt(k) lr, 1 - k(1 - beta_i), eps / sqrt(k))``.

    Derived from the SDE of Adam; the betas follow ``1 - beta -> k (1 - beta)`` (clipped
    at 0 when ``k (1 - beta) > 1``, where the rule has left its range).

    >>> scale_adam(1e-3, (0.9, 0.999), 1e-8, 64, 256)
    (0.002, (0.6, 0.996), 5e-09)
    """
    k = _ratio(from_batch, to_batch)
    b1, b2 = (_check_beta(f"betas[{i}]", b) for i, b in enumerate(betas))
    _checks.positive("eps", eps, allow_zero=True)
    new = tuple(round(max(0.0, 1.0 - k * (1.0 - b)), 15) for b in (b1, b2))
    return scale_lr(lr, from_batch, to_batch, "sqrt"), new, eps / math.sqrt(k)


def compare_rule(make_model: Callable[[int], Any], data: Any, *, base_batch: int, k: int, lr: float, steps: int,
                 rule: str = "linear", optimizer: str = "sgd", skip: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Does a scaling rule make ``k`` times larger batches train like the base run, at equal examples?

    Trains ``make_model(seed)`` for ``steps`` steps at ``base_batch`` with ``lr`` (evaluated on the
    whole training set every ``k`` steps) and for ``steps // k`` steps at ``k * base_batch`` with the
    learning rate (and, for ``rule="adam_sqrt"``, Adam's betas and eps: :func:`scale_adam`) moved
    by ``rule`` (evaluated every step): both are evaluated every ``k * base_batch`` examples.
    Returns ``gap``: the mean relative difference ``|L_scaled / L_base - 1|`` of the two evaluation
    losses after the first ``skip`` of training (``inf`` if the scaled run diverged, NaN if the base run
    did: choose a stable base learning rate), ``diverged`` and ``base_diverged`` (the loss overflowed or
    ended above where it started),
    ``examples`` (at each evaluation), ``base`` and ``scaled`` (their evaluation losses) and the
    scaled ``lr``.
    """
    import numpy as np
    import torch

    from labkit.train import fit

    _checks.positive("k", k, integer=True)
    _checks.positive("steps", steps, integer=True)
    _checks.choice("rule", rule, ("linear", "sqrt", "none", "adam_sqrt"))
    if steps // k < 1:
        raise ValueError(f"steps must be at least k so the scaled run takes a step, got steps={steps}, k={k}")
    big = k * base_batch
    if rule == "adam_sqrt":  # Malladi et al.: lr, betas and eps together
        new_lr, betas, eps = scale_adam(lr, (0.9, 0.999), 1e-8, base_batch, big)
        opt: Any = lambda params, lr, weight_decay: torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)  # noqa: E731
    else:
        new_lr, opt = scale_lr(lr, base_batch, big, rule), optimizer
    base = fit(make_model(seed), data, optimizer=optimizer, lr=lr, batch_size=base_batch, steps=steps, eval_every=k,
               seed=seed, progress=False)
    scaled = fit(make_model(seed), data, optimizer=opt, lr=new_lr, batch_size=big, steps=steps // k, eval_every=1,
                 seed=seed, progress=False)
    a, b = np.asarray(base.eval["loss"], dtype=float), np.asarray(scaled.eval["loss"], dtype=float)
    m = min(len(a), len(b))
    start = int(skip * m)
    blew_up = lambda h, v: bool(h.diverged or not np.all(np.isfinite(v)) or v[-1] > v[0])  # noqa: E731
    diverged, base_diverged = blew_up(scaled, b), blew_up(base, a)
    if base_diverged:  # nothing to compare with
        gap = math.nan
    else:
        gap = math.inf if diverged else float(np.mean(np.abs(b[start:m] / a[start:m] - 1)))
    return {"gap": gap, "diverged": diverged, "lr": new_lr, "examples": np.arange(m) * big,
            "base": a[:m], "scaled": b[:m], "base_diverged": base_diverged}
