"""The noisy quadratic model (NQM): batch-size effects in closed form, instantly.

Outside reference (not in labkit's seed list): Zhang, Li, Nado, Martens, Sachdeva, Dahl,
Shallue, Grosse (2019), "Which Algorithmic Choices Matter at Which Batch Sizes? Insights
From a Noisy Quadratic Model", NeurIPS, arXiv:1907.04164.

The loss is ``L(theta) = 1/2 sum_i h_i theta_i^2`` (Hessian ``diag(h)``), and a batch of ``B``
examples returns the gradient ``h theta + xi`` with noise ``xi ~ (0, diag(c) / B)``, so the
per-example gradient covariance is ``Sigma = diag(c)`` (by default ``c = h``, as in the
paper). Heavy-ball momentum ``beta`` and a diagonal preconditioner ``P = diag(h)^-p``
(``p = 0``: SGD; ``p = 1/2``: an Adam-like preconditioner; Zhang et al. use ``p`` between
0 and 1) give per-coordinate linear dynamics::

    v' = beta v - lr P (h theta + xi),   theta' = theta + v'

whose second moments ``s = (E theta^2, E theta v, E v^2)`` follow an exact affine recurrence
``s' = A s + b``. The expected loss is ``1/2 sum_i h_i E theta_i^2``; nothing is sampled.
Steps to a target use powers ``A^(2^k)`` (binary lifting), so a whole learning-rate grid
of a batch size costs ``O(log max_steps)`` batched 4x4 products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from labkit import _checks
from labkit.batchsize.sweep import Sweep

__all__ = ["NQM", "OPTIMIZERS", "BatchSizeChooser"]


@dataclass(frozen=True)
class NQM:
    """Curvatures ``h``, per-example gradient variances ``c`` and the start ``theta0`` (all ``(d,)``)."""

    h: np.ndarray
    c: np.ndarray
    theta0: np.ndarray

    @classmethod
    def power_law(cls, dim: int = 100, exponent: float = 1.0, noise: float = 1.0, theta0: float = 1.0) -> NQM:
        """``h_i = i^-exponent`` (i = 1..dim), ``c = noise * h`` and ``theta0_i = theta0`` (Zhang et al.'s setup)."""
        _checks.positive("dim", dim, integer=True)
        _checks.positive("exponent", exponent, allow_zero=True)
        _checks.positive("noise", noise)
        h = np.arange(1, dim + 1, dtype=float) ** -float(exponent)
        return cls(h, noise * h, np.full(dim, float(theta0)))

    @property
    def loss0(self) -> float:
        """The loss at ``theta0``."""
        return 0.5 * float(np.sum(self.h * self.theta0**2))

    def _transition(self, lr: torch.Tensor, batch_size: float, momentum: float, precondition: float) -> torch.Tensor:
        """Affine maps ``(L, d, 4, 4)`` on ``(E theta^2, E theta v, E v^2, 1)`` for each lr of ``lr (L,)``."""
        h = torch.as_tensor(self.h, dtype=torch.float64)
        p = h ** (-precondition)
        q = lr[:, None] * p * h  # lr P h: the effective step on each coordinate
        a = 1.0 - q
        s2 = lr[:, None] ** 2 * p**2 * torch.as_tensor(self.c, dtype=torch.float64) / batch_size  # lr^2 P^2 c / B
        b = torch.full_like(q, momentum)
        z, one = torch.zeros_like(q), torch.ones_like(q)
        rows = [
            [a * a, 2 * a * b, b * b, s2],  # theta' = a theta + beta v - lr P xi
            [-a * q, b * (a - q), b * b, s2],  # v' = -q theta + beta v - lr P xi
            [q * q, -2 * q * b, b * b, s2],
            [z, z, z, one],
        ]
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    def _start(self, n_lr: int) -> torch.Tensor:
        t0 = torch.as_tensor(self.theta0, dtype=torch.float64)
        s = torch.stack([t0**2, torch.zeros_like(t0), torch.zeros_like(t0), torch.ones_like(t0)], -1)
        return s.expand(n_lr, -1, -1).clone()  # (L, d, 4)

    def _loss(self, s: torch.Tensor) -> torch.Tensor:
        return 0.5 * (s[..., 0] * torch.as_tensor(self.h, dtype=torch.float64)).sum(-1)

    def curve(self, lr: float | Sequence[float], batch_size: float, steps: int, *, momentum: float = 0.0,
              precondition: float = 0.0) -> np.ndarray:
        """Expected loss at steps ``0..steps``: ``(steps + 1,)``, or ``(len(lr), steps + 1)`` for a list of lrs."""
        _checks.positive("steps", steps, integer=True, allow_zero=True)
        lrs = torch.as_tensor(np.atleast_1d(np.asarray(lr, dtype=float)))
        A = self._check(lrs, batch_size, momentum, precondition)
        s = self._start(len(lrs))
        out = [self._loss(s)]
        for _ in range(steps):
            s = (A @ s.unsqueeze(-1)).squeeze(-1)
            out.append(self._loss(s))
        res = torch.stack(out, -1).numpy()
        return res[0] if np.ndim(lr) == 0 else res

    def _check(self, lrs: torch.Tensor, batch_size: float, momentum: float, precondition: float) -> torch.Tensor:
        if not bool((lrs > 0).all()):
            raise ValueError(f"learning rates must be > 0, got {lrs.tolist()}")
        batch_size, momentum, precondition = (v.item() if isinstance(v, np.generic) else v
                                              for v in (batch_size, momentum, precondition))
        _checks.positive("batch_size", batch_size)
        _checks.positive("momentum", momentum, allow_zero=True)
        if momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        _checks.positive("precondition", precondition, allow_zero=True)
        return self._transition(lrs, float(batch_size), float(momentum), float(precondition))

    def first_step_below(self, target: float, lrs: Sequence[float], batch_size: float, max_steps: int, *,
                         momentum: float = 0.0, precondition: float = 0.0) -> np.ndarray:
        """For each lr, the first step at which the expected loss is ``<= target`` (NaN if not by ``max_steps``).

        Binary lifting over ``A^(2^k)`` finds the last step above the target, assuming that
        once below it the loss stays below (true for SGD whenever every coordinate starts
        above its noise floor; with momentum the loss can oscillate and a later crossing may
        be returned). Diverging learning rates never reach the target.
        """
        _checks.positive("max_steps", max_steps, integer=True)
        lr_t = torch.as_tensor(np.asarray(lrs, dtype=float))
        A = self._check(lr_t, batch_size, momentum, precondition)
        s = self._start(len(lr_t))
        above = lambda state: ~(self._loss(state) <= target)  # noqa: E731  (NaN counts as above)
        t = torch.zeros(len(lr_t), dtype=torch.long)
        powers = [A]
        while 2 ** len(powers) <= max_steps:
            powers.append(powers[-1] @ powers[-1])
        alive = above(s)
        for k in range(len(powers) - 1, -1, -1):
            cand = (powers[k] @ s.unsqueeze(-1)).squeeze(-1)
            move = alive & above(cand) & (t + 2**k < max_steps + 1)
            s = torch.where(move[:, None, None], cand, s)
            t = t + move.long() * 2**k
        nxt = (A @ s.unsqueeze(-1)).squeeze(-1)
        first = torch.where(alive, t + 1, torch.zeros_like(t)).double()
        ok = ~alive | (~above(nxt) & (t + 1 <= max_steps))
        return torch.where(ok, first, torch.full_like(first, math.nan)).numpy()

    def steps_to_target(self, target: float, lrs: Sequence[float], batch_sizes: Sequence[int], *,
                        max_steps: int = 10**5, momentum: float = 0.0, precondition: float = 0.0) -> Sweep:
        """The Shallue et al. experiment in closed form, as a :class:`~labkit.batchsize.Sweep` (one "seed").

        ``target`` is a loss; every lr of the grid is tried at every batch size.
        """
        _checks.positive("target", target)
        rows = []
        for b in batch_sizes:
            steps = self.first_step_below(target, lrs, b, max_steps, momentum=momentum, precondition=precondition)
            for lr, s in zip(lrs, steps):
                hit = bool(np.isfinite(s))
                rows.append(dict(batch_size=b, lr=float(lr), seed=0, steps=int(s) if hit else None,
                                 examples=int(s) * b if hit else None, reached=hit, diverged=False))
        return Sweep(rows, float(target), "loss", max_steps, 1)

    def noise_scales(self, theta_sq: np.ndarray | None = None) -> tuple[float, float]:
        """``(B_simple, B_noise)`` at second moments ``theta_sq = E theta^2`` (default ``theta0^2``).

        ``G = h theta`` and ``Sigma = diag(c)``, so ``B_simple = sum c / sum h^2 theta^2`` and
        ``B_noise = tr(H Sigma) / G^T H G = sum h c / sum h^3 theta^2`` (expectations of the
        squared gradient over the iterate's distribution).
        """
        t2 = self.theta0**2 if theta_sq is None else np.asarray(theta_sq, dtype=float)
        return float(self.c.sum() / (self.h**2 * t2).sum()), float((self.h * self.c).sum() / (self.h**3 * t2).sum())

    def second_moments(self, lr: float, batch_size: float, steps: int, *, momentum: float = 0.0,
                       precondition: float = 0.0) -> np.ndarray:
        """``E theta^2`` per coordinate after ``steps`` steps, ``(d,)``."""
        A = self._check(torch.tensor([float(lr)], dtype=torch.float64), batch_size, momentum, precondition)
        s = self._start(1)
        P = torch.linalg.matrix_power(A, steps)
        return (P @ s.unsqueeze(-1)).squeeze(-1)[0, :, 0].numpy()


#: optimisers of the NQM explorer: keyword arguments of :meth:`NQM.steps_to_target`
OPTIMIZERS = {"SGD": {}, "momentum 0.9": {"momentum": 0.9}, "preconditioned (p = 1/2)": {"precondition": 0.5}}


class BatchSizeChooser:
    """Steps to a target against batch size on an NQM, for several optimisers: where does a batch size fall?

    Computes each optimiser's :meth:`NQM.steps_to_target` sweep and its :class:`Tradeoff` once;
    :meth:`at` then answers for one batch size (for a slider): steps, cost relative to ``S_min`` and
    ``E_min``, the regime (:func:`~labkit.batchsize.tradeoff.regime`) and a figure.
    """

    def __init__(self, nqm: NQM, target: float, lrs: Sequence[float], batch_sizes: Sequence[int], *,
                 max_steps: int = 10**5, optimizers: dict[str, dict] | None = None):
        self.nqm, self.target, self.lrs, self.max_steps = nqm, float(target), list(lrs), max_steps
        self.optimizers = dict(OPTIMIZERS if optimizers is None else optimizers)
        self.sweeps = {name: nqm.steps_to_target(target, lrs, batch_sizes, max_steps=max_steps, **kw)
                       for name, kw in self.optimizers.items()}
        self.fits = {name: sw.tradeoff() for name, sw in self.sweeps.items()}

    def at(self, batch_size: int, optimizer: str = "SGD") -> dict:
        """``steps`` (best lr of the grid), ``steps_ratio`` (to ``S_min``), ``examples_ratio`` (to ``E_min``),
        ``regime``, ``b_crit``, ``summary`` (one line) and ``figure`` for ``batch_size`` and ``optimizer``."""
        from labkit.batchsize.tradeoff import draw_regimes, regime
        from labkit.viz.theme import figure

        _checks.choice("optimizer", optimizer, list(self.optimizers))
        _checks.positive("batch_size", batch_size)
        t = self.fits[optimizer]
        steps = float(np.nanmin(self.nqm.first_step_below(self.target, self.lrs, batch_size, self.max_steps,
                                                          **self.optimizers[optimizer])))
        out = {"steps": steps, "steps_ratio": steps / t.s_min, "examples_ratio": steps * batch_size / t.e_min,
               "regime": regime(batch_size, t.b_crit), "b_crit": t.b_crit}
        out["summary"] = (f"B = {batch_size}: {steps:.0f} steps ({out['steps_ratio']:.2f} x S_min), "
                          f"{steps * batch_size:.0f} examples ({out['examples_ratio']:.2f} x E_min); "
                          f"regime: {out['regime']}")
        fig = figure(f"NQM, {optimizer}: steps to the target", "batch size B", "steps", log_x=True, log_y=True,
                     height=360)
        for name, sw in self.sweeps.items():
            best = sw.best()
            fig.add_scatter(x=best["batch_size"], y=best["steps"], name=name, mode="lines",
                            opacity=1.0 if name == optimizer else 0.35)
        fig.add_scatter(x=[batch_size], y=[steps], mode="markers", name=f"B = {batch_size}",
                        marker=dict(size=14, symbol="star"))
        bs = self.sweeps[optimizer].batch_sizes
        draw_regimes(fig, t.b_crit, (min(bs[0], batch_size) / 1.5, max(bs[-1], batch_size) * 1.5))
        out["figure"] = fig
        return out
