"""One-pass (online) linear regression with mini-batch SGD: its expected loss in closed form.

Every step draws ``B`` fresh examples ``x ~ N(0, diag(h))``, ``y = x . w* + noise`` (variance ``noise``), so
the data budget is ``B x steps`` and nothing is reused. For the error ``e = w - w*`` with second moments
``s_i = E e_i^2`` (diagonal, as at a start ``e0`` on the axes), Gaussian fourth moments
(``E[x x^T A x x^T] = 2 H A H + tr(H A) H``) give the exact recurrence of ``w -= lr * mean_B grad``::

    s' = (1 - lr h)^2 s + (lr^2 / B) (h^2 s + h (h . s + noise))

and the excess loss ``1/2 h . s``. Unlike the noisy quadratic model (:mod:`labkit.batchsize.nqm`, additive
noise of fixed size) the gradient noise here has a part that shrinks with the loss (``h . s``) and a part that
does not (the label ``noise``): with ``noise = 0`` (realisable data) the noise falls with the loss.
Used for the critical batch size against the sample budget and the model size (notebook 12).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labkit import _checks
from labkit.batchsize.sweep import Sweep

__all__ = ["OnlineRegression"]


@dataclass(frozen=True)
class OnlineRegression:
    """Feature variances ``h`` (the Hessian's eigenvalues), label ``noise`` variance and the start ``e0^2``."""

    h: np.ndarray
    noise: float
    e0_sq: np.ndarray

    @classmethod
    def power_law(cls, dim: int = 100, exponent: float = 1.0, noise: float = 0.1,
                  source: float = 1.0) -> OnlineRegression:
        """``h_i = i^-exponent`` and ``e0_i^2 = i^-source`` (the target's coefficients decay: a larger ``dim`` adds
        features of ever smaller weight, a larger model of the same data), label ``noise`` variance."""
        _checks.positive("dim", dim, integer=True)
        _checks.positive("exponent", exponent, allow_zero=True)
        _checks.positive("noise", noise, allow_zero=True)
        _checks.positive("source", source, allow_zero=True)
        i = np.arange(1, dim + 1, dtype=float)
        return cls(i ** -float(exponent), float(noise), i ** -float(source))

    @property
    def loss0(self) -> float:
        """The excess loss at the start."""
        return 0.5 * float(self.h @ self.e0_sq)

    def curves(self, lrs: Sequence[float], batch_sizes: Sequence[float], steps: int) -> np.ndarray:
        """Expected excess loss ``(len(batch_sizes), len(lrs), steps + 1)``; all runs advance together."""
        _checks.positive("steps", steps, integer=True)
        lr = np.asarray(lrs, dtype=float)[None, :, None]
        b = np.asarray(batch_sizes, dtype=float)[:, None, None]
        if (lr <= 0).any() or (b <= 0).any():
            raise ValueError(f"learning rates and batch sizes must be > 0, got {list(lrs)} and {list(batch_sizes)}")
        h = self.h[None, None, :]
        a = (1 - lr * h) ** 2 + lr**2 * h**2 / b  # (B, L, d)
        q = lr**2 * h / b
        s = np.broadcast_to(self.e0_sq, a.shape).copy()
        out = np.empty((*a.shape[:2], steps + 1))
        hs = s @ self.h
        out[..., 0] = 0.5 * hs
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(1, steps + 1):
                s = a * s + q * (hs + self.noise)[..., None]
                hs = s @ self.h
                out[..., t] = 0.5 * hs
        return out

    def steps_to_target(self, targets: float | Sequence[float], lrs: Sequence[float], batch_sizes: Sequence[int], *,
                        max_steps: int = 4000) -> Sweep | list[Sweep]:
        """Shallue et al.'s sweep in closed form for one excess-loss target (a :class:`Sweep`) or several (a list)."""
        many = not np.isscalar(targets)
        tl = [float(t) for t in (targets if many else [targets])]
        for i, t in enumerate(tl):
            _checks.positive(f"targets[{i}]", t)
        c = self.curves(lrs, batch_sizes, max_steps)
        sweeps = []
        for target in tl:
            below = c <= target  # NaN (diverged) is never below
            first = np.where(below.any(-1), below.argmax(-1), -1)
            rows = []
            for i, b in enumerate(batch_sizes):
                for j, lr in enumerate(lrs):
                    s = int(first[i, j])
                    hit = s >= 0
                    rows.append(dict(batch_size=int(b), lr=float(lr), seed=0, steps=s if hit else None,
                                     examples=s * int(b) if hit else None, reached=hit,
                                     diverged=bool(not np.isfinite(c[i, j, -1]))))
            sweeps.append(Sweep(rows, target, "loss", max_steps, 1))
        return sweeps if many else sweeps[0]
