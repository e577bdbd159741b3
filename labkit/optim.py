"""Optimisers and learning-rate schedules.

``fit`` uses ``torch.optim`` (built by :func:`torch_optimizer`); ``fit_many``'s
vmap engine uses :class:`Functional`, the same update rules written on stacked
parameter tensors so that a whole population of networks steps in one call, and
its batched engine the same rules on one flat ``(members, parameters)`` buffer
(``labkit.batched``). The tests check each against ``torch.optim`` in float64.

Update rules (``g`` includes L2 weight decay ``wd * p`` except for AdamW):

- ``sgd``: ``p -= lr g``
- ``momentum``: ``m = 0.9 m + g`` (``m = g`` at the first step); ``p -= lr m``
- ``adam`` / ``adamw``: Kingma & Ba with bias correction, betas (0.9, 0.999),
  eps 1e-8; AdamW decays ``p *= 1 - lr wd`` before the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from labkit import _checks

__all__ = ["OPTIMIZERS", "SCHEDULES", "Functional", "cosine", "schedule", "torch_optimizer", "warmup"]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
MOMENTUM = 0.9
BETAS = (0.9, 0.999)
EPS = 1e-8


def torch_optimizer(
    optimizer: str | Callable[..., torch.optim.Optimizer],
    params: Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimiser by name, or from a callable ``f(params, lr=..., weight_decay=...)``."""
    if callable(optimizer):
        return optimizer(params, lr=lr, weight_decay=weight_decay)
    _checks.choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=weight_decay)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=weight_decay)


class Functional:
    """One optimiser over stacked parameters ``{name: (N, *shape)}`` with per-member lr and wd ``(N,)``."""

    def __init__(self, name: str, params: dict[str, torch.Tensor]):
        self.name = _checks.choice("optimizer", name, OPTIMIZERS)
        self.t = 0
        zeros = {k: torch.zeros_like(v) for k, v in params.items()}
        self.m = zeros if name != "sgd" else {}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()} if name in ("adam", "adamw") else {}

    @torch.no_grad()
    def step(
        self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: torch.Tensor, wd: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return the updated parameters (inputs are not modified)."""
        self.t += 1
        out = {}
        for k, p in params.items():
            shape = (-1,) + (1,) * (p.ndim - 1)
            lr_k, wd_k = lr.reshape(shape), wd.reshape(shape)
            g = grads[k]
            if self.name != "adamw":
                g = g + wd_k * p
            if self.name == "sgd":
                out[k] = p - lr_k * g
            elif self.name == "momentum":
                self.m[k] = g.clone() if self.t == 1 else MOMENTUM * self.m[k] + g
                out[k] = p - lr_k * self.m[k]
            else:
                if self.name == "adamw":
                    p = p * (1 - lr_k * wd_k)
                b1, b2 = BETAS
                self.m[k] = b1 * self.m[k] + (1 - b1) * g
                self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
                m_hat = self.m[k] / (1 - b1**self.t)
                v_hat = self.v[k] / (1 - b2**self.t)
                out[k] = p - lr_k * m_hat / (v_hat.sqrt() + EPS)
        return out


# ---------------------------------------------------------------- schedules


def warmup(warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up (Goyal et al. 2017): multiplier ``(step + 1) / warmup_steps`` up to 1."""
    _checks.positive("warmup_steps", warmup_steps, integer=True)
    return lambda step: min(1.0, (step + 1) / warmup_steps)


def cosine(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """Optional linear warm-up, then cosine decay from 1 to 0 over the remaining steps."""
    _checks.positive("total_steps", total_steps, integer=True)
    _checks.positive("warmup_steps", warmup_steps, integer=True, allow_zero=True)

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return f


SCHEDULES = ("warmup", "cosine")


def _multiplier(fn: Callable[[int], Any], step: int) -> float:
    value = fn(step)
    try:
        x = float(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"lr_schedule must return a number, got {value!r} ({type(value).__name__}) "
                        f"at step {step}") from err
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"lr_schedule returned {x!r} at step {step}; a learning-rate multiplier must be a "
                         "finite number >= 0")
    return x


def _checked(fn: Callable[[int], Any], steps: int) -> Callable[[int], float]:
    """``fn`` tabulated on ``0 .. steps - 1`` (each value checked); other steps are checked when asked for."""
    table = [_multiplier(fn, t) for t in range(steps)]
    return lambda step: table[step] if 0 <= step < steps else _multiplier(fn, step)


def schedule(spec: Any, steps: int) -> Callable[[int], float]:
    """A multiplier function ``step -> float`` from ``None``, ``"warmup"``, ``"cosine"`` or a callable.

    ``"warmup"`` warms up linearly over the first 10% of ``steps``; ``"cosine"``
    decays to zero over ``steps``. A callable is evaluated at every step up front: a
    multiplier that is negative, NaN, inf or not a number is an error before training
    starts, not a divergence at that step.
    """
    if spec is None:
        return lambda step: 1.0
    _checks.positive("steps", steps, integer=True)
    if callable(spec):
        return _checked(spec, steps)
    _checks.choice("lr_schedule", spec, SCHEDULES)
    if spec == "warmup":
        return warmup(max(1, steps // 10))
    return cosine(steps)


# ---------------------------------------------------------------- layer-wise trust ratios (large batches)

__all__ += ["LAMB", "LARS", "polynomial", "warmup_fraction"]


def _trust_ratio(w_norm: torch.Tensor, u_norm: torch.Tensor) -> torch.Tensor:
    """``|w| / |u|``, or 1 where either norm is 0 (a fresh zero bias, a zero update): no rescaling there."""
    ok = (w_norm > 0) & (u_norm > 0)
    return torch.where(ok, w_norm / torch.where(ok, u_norm, torch.ones_like(u_norm)), torch.ones_like(w_norm))


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional
    Networks", arXiv:1708.03888).

    For every parameter tensor ``w`` (a layer's weight or bias) with gradient ``g``: the local rate
    ``trust_coefficient * |w| / (|g| + weight_decay |w|)`` (1 when a norm is 0), then momentum SGD with weight
    decay on the rescaled step::

        v = momentum v + lr * local * (g + weight_decay w);   w -= v

    Usable in :func:`labkit.train.fit` as ``optimizer=LARS`` (or ``functools.partial(LARS, momentum=0.0)``).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1.0, *, momentum: float = MOMENTUM,
                 weight_decay: float = 0.0, trust_coefficient: float = 1e-3):
        _checks.positive("lr", lr)
        _checks.positive("weight_decay", weight_decay, allow_zero=True)
        _checks.positive("trust_coefficient", trust_coefficient)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            wd, mom = group["weight_decay"], group["momentum"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                w_norm, g_norm = w.norm(), g.norm()
                local = group["trust_coefficient"] * _trust_ratio(w_norm, g_norm + wd * w_norm)
                update = (g + wd * w) * (group["lr"] * local)
                state = self.state[w]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(w)
                v = state["velocity"]
                v.mul_(mom).add_(update)
                w.sub_(v)
        return loss


class LAMB(torch.optim.Optimizer):
    """Layer-wise Adaptive Moments for Batch training (You et al. 2019, "Large Batch Optimization for Deep
    Learning: Training BERT in 76 minutes", arXiv:1904.00962).

    Adam's bias-corrected direction ``r = m_hat / (sqrt(v_hat) + eps)`` plus decoupled weight decay,
    ``u = r + weight_decay w``, scaled per parameter tensor by the trust ratio ``|w| / |u|`` (1 when a norm is
    0; the paper's scaling function phi is the identity here)::

        w -= lr * (|w| / |u|) * u

    Usable in :func:`labkit.train.fit` as ``optimizer=LAMB``.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, *, betas: tuple[float, float] = BETAS,
                 eps: float = 1e-6, weight_decay: float = 0.0):
        _checks.positive("lr", lr)
        _checks.positive("weight_decay", weight_decay, allow_zero=True)
        _checks.positive("eps", eps, allow_zero=True)
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                state = self.state[w]
                if not state:
                    state["step"], state["m"], state["v"] = 0, torch.zeros_like(w), torch.zeros_like(w)
                state["step"] += 1
                t, m, v = state["step"], state["m"], state["v"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                r = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
                u = r + group["weight_decay"] * w
                w.sub_(u * (group["lr"] * _trust_ratio(w.norm(), u.norm())))
        return loss


def polynomial(total_steps: int, warmup_steps: int = 0, power: float = 2.0) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then polynomial decay ``(1 - progress)^power`` to 0 at ``total_steps``
    (the schedule of LARS and LAMB, You et al. 2017, 2019), as an lr multiplier for ``fit(lr_schedule=...)``."""
    _checks.positive("total_steps", total_steps, integer=True)
    _checks.positive("warmup_steps", warmup_steps, integer=True, allow_zero=True)
    _checks.positive("power", power)

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return (1.0 - min(1.0, (step - warmup_steps) / span)) ** power

    return f


def warmup_fraction(fraction: float, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over the first ``fraction`` of ``total_steps`` (e.g. 0.05, Goyal et al. 2017), then 1."""
    _checks.positive("fraction", fraction)
    if fraction > 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    _checks.positive("total_steps", total_steps, integer=True)
    steps = max(1, round(fraction * total_steps))
    return warmup(steps)
