"""Optimisers and learning-rate schedules.

``fit`` uses ``torch.optim`` (built by :func:`torch_optimizer`); ``fit_many``'s
vmap engine uses :class:`Functional`, the same update rules written on stacked
parameter tensors so that a whole population of networks steps in one call, and
its batched engine the same rules on one flat ``(members, parameters)`` buffer
(``labkit.population.batched``). The tests check each against ``torch.optim`` in float64.

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

__all__ = [
    "OPTIMIZERS", "READABLE", "SCHEDULES", "Functional", "adam_denominator", "cosine", "describe", "preconditioner",
    "schedule", "second_moment_", "torch_optimizer", "update_", "warmup",
]

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


def _axpy_(p: torch.Tensor, x: torch.Tensor, a: Any) -> None:
    """``p -= a x`` in place, for a number or a tensor ``a`` that broadcasts against ``p``."""
    if isinstance(a, torch.Tensor):
        p.addcmul_(x, a, value=-1.0)
    else:
        p.add_(x, alpha=-a)


def second_moment_(v: torch.Tensor, g: torch.Tensor, beta2: float) -> torch.Tensor:
    """Adam's (and RMSprop's) running mean of squared gradients, in place: ``v = beta2 v + (1 - beta2) g^2``."""
    return v.mul_(beta2).addcmul_(g, g, value=1 - beta2)


def adam_denominator(v: torch.Tensor, t: int, beta2: float = BETAS[1], eps: float = EPS) -> torch.Tensor:
    """Adam's diagonal ``P = sqrt(v / (1 - beta2^t)) + eps`` at step ``t``: what its update divides by
    (computed as ``torch.optim.Adam`` does, so the two agree to the last bit)."""
    _checks.positive("t", t, integer=True)
    return (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)


@torch.no_grad()
def update_(name: str, p: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None, v: torch.Tensor | None, t: int,
            lr: Any, wd: Any = 0.0, *, decay: bool = True) -> None:
    """One step of optimiser ``name`` at step ``t`` (1, 2, ...), in place: ``p``, the state ``m`` (momentum or
    Adam's first moment) and ``v`` (Adam's second moment) are updated; ``g`` receives the L2 term.

    The one definition of labkit's update rules (module docstring). Elementwise, so ``p`` may be one parameter,
    a stack ``(members, *shape)`` (``fit_many``'s vmap engine) or a flat ``(members, P)`` buffer (its batched
    engine); ``lr`` and ``wd`` are numbers or tensors that broadcast against ``p``. ``decay=False`` skips weight
    decay (all ``wd`` zero), saving two passes over the parameters.
    """
    if decay and name != "adamw":
        if isinstance(wd, torch.Tensor):
            g.addcmul_(p, wd)  # L2: g + wd p
        else:
            g.add_(p, alpha=wd)
    if name == "sgd":
        _axpy_(p, g, lr)
    elif name == "momentum":
        if t == 1:
            m.copy_(g)
        else:
            m.mul_(MOMENTUM).add_(g)
        _axpy_(p, m, lr)
    else:
        if decay and name == "adamw":
            p.mul_(1 - lr * wd)
        b1, b2 = BETAS
        m.lerp_(g, 1 - b1)
        second_moment_(v, g, b2)
        p.addcdiv_(m * (lr / (1 - b1**t)), adam_denominator(v, t, b2, EPS), value=-1.0)


class Functional:
    """One optimiser over stacked parameters ``{name: (N, *shape)}`` with per-member lr and wd ``(N,)``.

    Its state (``m``, ``v``: dicts like the parameters; ``t``: steps taken) is what :class:`labkit.train.StepInfo`
    exposes as ``optimizer_state`` during :func:`labkit.train.fit_many`.
    """

    def __init__(self, name: str, params: dict[str, torch.Tensor]):
        self.name = _checks.choice("optimizer", name, OPTIMIZERS)
        self.t = 0
        self.m = {k: torch.zeros_like(v) for k, v in params.items()} if name != "sgd" else {}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()} if name in ("adam", "adamw") else {}

    @torch.no_grad()
    def step(
        self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: torch.Tensor, wd: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return the updated parameters (inputs are not modified): :func:`update_` on each stacked tensor."""
        self.t += 1
        out = {}
        for k, p in params.items():
            shape = (-1,) + (1,) * (p.ndim - 1)
            out[k] = p.clone()
            update_(self.name, out[k], grads[k].clone(), self.m.get(k), self.v.get(k), self.t, lr.reshape(shape),
                    wd.reshape(shape))
        return out


# ---------------------------------------------------------------- what a torch optimiser divides by

#: ``torch.optim`` classes :func:`describe` reads, by the name labkit gives their update rule.
READABLE = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")


def describe(opt: Any) -> tuple[str, float]:
    """``(kind, beta)`` of a ``torch.optim`` optimiser: its rule (:data:`READABLE`) and its momentum or ``beta1``.

    Raises TypeError naming the optimiser when its rule is not one of those (Adagrad, SGD with dampening,
    centred or momentum RMSprop, ...).
    """
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"need a torch.optim optimiser to read, got {type(opt).__name__}")
    group = opt.param_groups[0]
    if isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
        return ("adamw" if isinstance(opt, torch.optim.AdamW) else "adam"), float(group["betas"][0])
    if isinstance(opt, torch.optim.RMSprop):
        if group.get("momentum", 0) or group.get("centered", False):
            raise TypeError("RMSprop with momentum or centring is not readable (plain RMSprop is)")
        return "rmsprop", 0.0
    if isinstance(opt, torch.optim.SGD):
        if group.get("dampening", 0):
            raise TypeError("SGD with dampening is not readable (plain, heavy-ball or Nesterov SGD is)")
        beta = float(group["momentum"])
        return ("nesterov" if group.get("nesterov") else "momentum" if beta else "sgd"), beta
    raise TypeError(f"readable optimisers are torch.optim SGD, Adam, AdamW and RMSprop, not {type(opt).__name__}")


def _flat(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


@torch.no_grad()
def preconditioner(opt: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter]) -> torch.Tensor | None:
    """The diagonal ``P`` (flat, over ``params``) that ``opt``'s coming step divides the gradient by.

    Read between ``backward()`` and ``opt.step()``: ``P`` is built from ``opt``'s second-moment state advanced by
    the gradients now in ``p.grad`` (the state that step will hold), with :func:`second_moment_` and
    :func:`adam_denominator`. None for SGD, heavy-ball and Nesterov momentum (``P = I``).
    """
    kind, _ = describe(opt)
    if kind in ("sgd", "momentum", "nesterov"):
        return None
    group = opt.param_groups[0]
    params = list(params)
    g = _flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
    if kind != "adamw" and group["weight_decay"]:  # torch's Adam and RMSprop add L2 to the gradient first
        g = g + group["weight_decay"] * _flat([p.detach() for p in params])
    slot = "square_avg" if kind == "rmsprop" else "exp_avg_sq"
    state = [opt.state[p].get(slot) for p in params]
    v = torch.zeros_like(g) if state[0] is None else _flat(state).clone()
    if kind == "rmsprop":  # no bias correction
        return second_moment_(v, g, group["alpha"]).sqrt_().add_(group["eps"])
    step = int(opt.state[params[0]]["step"]) + 1 if state[0] is not None else 1
    b2 = group["betas"][1]
    return adam_denominator(second_moment_(v, g, b2), step, b2, group["eps"])


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
