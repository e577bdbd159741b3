"""The edge of stability, once: the threshold, the sharpness tracker, the at-the-edge check, the demo run.

On a quadratic with curvature ``lambda`` each optimiser is stable iff ``lr lambda`` stays below a number that
depends only on its momentum (update rules as in :mod:`labkit.optim`; Cohen et al. 2021, "Gradient descent on
neural networks typically occurs at the edge of stability"; Cohen et al. 2022, "Adaptive gradient methods at the
edge of stability"):

- ``sgd`` (``p -= lr g``): ``lambda_max(H) < 2 / lr``;
- ``momentum`` beta (``m = beta m + g; p -= lr m``): ``lambda_max(H) < (2 + 2 beta) / lr``;
- ``nesterov`` beta (``m = beta m + g; p -= lr (g + beta m)``, torch's form):
  ``lambda_max(H) < (2 + 2 beta) / ((1 + 2 beta) lr)``;
- ``rmsprop`` (``v = a v + (1 - a) g^2; p -= lr g / P``): ``lambda_max(P^-1/2 H P^-1/2) < 2 / lr``;
- ``adam``/``adamw`` beta1 (``m = beta1 m + (1 - beta1) g; p -= lr m_hat / P`` with ``P = sqrt(v_hat) + eps``
  held fixed): ``lambda_max(P^-1/2 H P^-1/2) < (2 + 2 beta1) / ((1 - beta1) lr)``.

For Adam (and AdamW, and RMSprop) the curvature that matters is that of the *preconditioned* Hessian
``P^-1/2 H P^-1/2`` (38/lr for beta1 = 0.9, Cohen et al. 2022); the raw sharpness need not come near 2/lr, and
no threshold on it exists. :func:`threshold` is the table; :class:`EdgeOfStability` the one tracker (top-``k``
Hessian eigenvalues every ``every`` steps of :func:`labkit.train.fit`, warm-started, plus the preconditioned
sharpness for adaptive optimisers, read from the optimiser's own state through ``StepInfo.optimizer_state``);
:func:`at_edge` the one criterion, returning its evidence (:class:`EdgeVerdict`); :func:`monitor` the live
figure. The one demonstration (a tanh MLP trained full batch to its edge) is lesson code:
:func:`labkit.lessons.edge.demo_run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labkit import _checks, _deprecated, linalg, optim
from labkit.curvature import HessianOperator
from labkit.data import as_dataset
from labkit.history import StepInfo
from labkit.linalg import LinearOperator
from labkit.optim import BETAS, EPS, MOMENTUM
from labkit.tracking import Every

__all__ = [
    "EdgeOfStability",
    "EdgeVerdict",
    "Preconditioned",
    "adam_preconditioner",
    "at_edge",
    "edge_ratio",
    "hovers",
    "monitor",
    "threshold",
]

ADAPTIVE = ("adam", "adamw", "rmsprop")
KINDS = ("sgd", "momentum", "nesterov", *ADAPTIVE)


def threshold(lr: float, optimizer: str = "sgd", *, beta: float | None = None) -> float:
    """The sharpness at which ``optimizer`` becomes unstable on a quadratic (the table in the module docstring).

    ``beta`` is the momentum (``"momentum"``, ``"nesterov"``; default labkit's 0.9) or ``beta1`` (``"adam"``,
    ``"adamw"``; default 0.9). For ``"adam"``, ``"adamw"`` and ``"rmsprop"`` the threshold is on the
    *preconditioned* sharpness ``lambda_max(P^-1/2 H P^-1/2)``; for the others on ``lambda_max(H)``.
    """
    lr = _checks.positive("lr", lr)
    _checks.choice("optimizer", optimizer, KINDS)
    if optimizer in ("sgd", "rmsprop"):
        b = 0.0 if beta is None else beta
    else:
        b = (MOMENTUM if optimizer in ("momentum", "nesterov") else BETAS[0]) if beta is None else beta
    if not 0 <= b < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    if optimizer in ("adam", "adamw"):  # heavy ball with an EMA of the gradient: effective step lr (1 - beta1)
        return (2 + 2 * b) / ((1 - b) * lr)
    if optimizer == "nesterov":  # the look-ahead adds beta lr lambda to each step's contraction
        return (2 + 2 * b) / ((1 + 2 * b) * lr)
    return (2 + 2 * b) / lr


def adam_preconditioner(exp_avg_sq: torch.Tensor, step: int, beta2: float = BETAS[1],
                        eps: float = EPS) -> torch.Tensor:
    """Adam's diagonal ``P = sqrt(v / (1 - beta2^step)) + eps`` (:func:`labkit.optim.adam_denominator`)."""
    _checks.positive("step", step, integer=True)
    return optim.adam_denominator(exp_avg_sq, step, beta2, eps)


class Preconditioned(LinearOperator):
    """``P^-1/2 A P^-1/2`` for a symmetric operator ``A`` and a positive diagonal ``P`` (a flat vector).

    Symmetric, with the eigenvalues of ``P^-1 A``: the curvature an update ``p -= lr P^-1 g`` sees.
    """

    def __init__(self, op: LinearOperator, diagonal: torch.Tensor):
        op = linalg.as_operator(op)
        if not isinstance(diagonal, torch.Tensor) or diagonal.shape != (op.size,):
            got = tuple(diagonal.shape) if isinstance(diagonal, torch.Tensor) else type(diagonal).__name__
            raise ValueError(f"diagonal must be a tensor of shape ({op.size},), got {got}")
        if not bool(torch.isfinite(diagonal).all()) or not bool((diagonal > 0).all()):
            raise ValueError("diagonal must be finite and > 0 (a preconditioner P = sqrt(v) + eps)")
        super().__init__(op.size, op.dtype, op.device)
        self.op = op
        self.scale = diagonal.to(op.device, op.dtype).rsqrt()

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        s = self.scale[:, None]
        return s * self.op.matmat(s * V)



def _old_reader(name: str, key: str, array: bool = False) -> property:
    """A deprecated property ``tracker.<name>``: ``tracker.series(key)`` (as an array if ``array``)."""

    def get(self: EdgeOfStability) -> Any:
        _deprecated.warn(f"EdgeOfStability.{name}", f'EdgeOfStability.series("{key}")')
        return self._array(key) if array else self.series(key)

    return property(get, doc=f'Deprecated: ``tracker.series("{key}")``.')

class EdgeOfStability(Every):
    """The sharpness tracker: Hessian eigenvalues against the optimiser's threshold every ``every`` steps of ``fit``.

    Each measurement runs Lanczos warm-started from the previous eigenvectors (typically a few tens of HVPs).
    Records ``sharpness`` (top eigenvalue of ``H``), ``values`` (its top ``k``), ``preconditioned`` (top of
    ``P^-1/2 H P^-1/2`` with the ``P`` this step's update divides by; equal to ``sharpness`` for SGD and
    momentum, where ``P = I``), ``threshold`` (:func:`threshold` at the current lr: on ``preconditioned`` for
    adaptive optimisers, on ``sharpness`` otherwise), ``gd_threshold`` (``2/lr``), ``lr`` and ``n_matvec``.
    ``data``/``max_examples``: the data the Hessian is taken on (default the training data; Cohen et al. used
    the first 5,000 examples). ``live``: a LivePlot (see :func:`monitor`).

    The optimiser is read from ``StepInfo.optimizer_state`` (the ``torch.optim`` optimiser ``fit`` steps):
    SGD (plain, heavy-ball, Nesterov), Adam, AdamW and RMSprop; others are refused before the first step.
    """

    def __init__(self, every: int = 10, k: int = 1, *, data: Any = None, max_examples: int | None = None,
                 tol: float = 1e-4, live: Any = None):
        super().__init__(every, live=live)
        self.k = _checks.positive("k", k, integer=True)
        self.data, self.max_examples, self.tol = data, max_examples, tol
        self._v0: dict[str, torch.Tensor | None] = {"raw": None, "pre": None}
        self._kind: str | None = None
        self._beta: float = 0.0

    def optimizer(self, cls: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
                  **kwargs: Any) -> Callable[..., torch.optim.Optimizer]:
        """A factory for ``fit(optimizer=...)``: ``cls(params, lr=, weight_decay=, **kwargs)`` (any readable class)."""
        def make(params: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
            return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)
        return make

    def on_start(self, info: StepInfo) -> None:
        super().on_start(info)
        try:
            self._kind, self._beta = optim.describe(info.optimizer_state)
        except TypeError as err:
            raise TypeError(f"EdgeOfStability needs an optimiser whose update it can read: {err}") from None
        self._v0 = {"raw": None, "pre": None}

    def measure(self, info: StepInfo) -> dict[str, Any]:
        ds = as_dataset(self.data if self.data is not None else info.data)
        if self.max_examples is not None:
            ds = ds[: self.max_examples]
        H = HessianOperator(info.model, info.loss_fn, ds)
        res = self._top(H, "raw", self.k)
        values = [float(v) for v in res.values]
        n_matvec = res.n_matvec
        P = optim.preconditioner(info.optimizer_state, [p for p in info.model.parameters() if p.requires_grad])
        pre = values[0]
        if P is not None:
            res_p = self._top(Preconditioned(H, P.to(H.dtype)), "pre", 1)
            pre, n_matvec = float(res_p.values[0]), n_matvec + res_p.n_matvec
        lr = float(info.lr)
        return {"sharpness": values[0], "values": values, "preconditioned": pre,
                "threshold": threshold(lr, self._kind, beta=self._beta), "gd_threshold": 2.0 / lr, "lr": lr,
                "n_matvec": n_matvec}

    def _top(self, op: LinearOperator, key: str, k: int) -> linalg.EigResult:
        res = linalg.top_eigenvalues(op, k, tol=self.tol, v0=self._v0[key], dense=False)
        self._v0[key] = res.vectors
        return res

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        out = {"sharpness": record["sharpness"], "threshold": record["threshold"]}
        if self._kind in ADAPTIVE:
            out["preconditioned"] = record["preconditioned"]
        return out

    # A tracker is read one way, ``tracker.series(key)`` with key ``"sharpness"``, ``"preconditioned"``,
    # ``"threshold"``, ``"gd_threshold"``, ``"values"``, ``"lr"``, ``"n_matvec"``; the readers below are the
    # old spellings, kept one release.
    def array(self, key: str) -> np.ndarray:
        """Deprecated: ``np.asarray(tracker.series(key))``."""
        _deprecated.warn("EdgeOfStability.array(key)", "EdgeOfStability.series(key) (np.asarray it for an array)")
        return self._array(key)

    array.__deprecated__ = True

    def _array(self, key: str) -> np.ndarray:
        return np.array(self.series(key), dtype=float)

    top = _old_reader("top", "sharpness", array=True)
    values = _old_reader("values", "values")
    lrs = _old_reader("lrs", "lr")
    thresholds = _old_reader("thresholds", "threshold")
    n_matvec = _old_reader("n_matvec", "n_matvec")

    def verdict(self, **kwargs: Any) -> EdgeVerdict:
        """:func:`at_edge` on the sharpness this optimiser's threshold applies to (preconditioned if adaptive)."""
        key = "preconditioned" if self._kind in ADAPTIVE else "sharpness"
        return at_edge(self._array(key), self._array("threshold"), **kwargs)

    def figure(self) -> Any:
        """Sharpness (and preconditioned sharpness) against step, with the threshold."""
        from labkit.viz import theme

        adaptive = self._kind in ADAPTIVE  # the preconditioned sharpness is orders of magnitude above the raw one
        fig = theme.figure(f"Edge of stability ({self._kind})", "step",
                           "top eigenvalue (log scale)" if adaptive else "top eigenvalue", log_y=adaptive)
        fig.add_scatter(x=self.steps, y=self._array("sharpness"), mode="lines+markers", name="sharpness of H")
        if adaptive:
            fig.add_scatter(x=self.steps, y=self._array("preconditioned"), mode="lines+markers",
                            name="sharpness of P^-1/2 H P^-1/2")
        fig.add_scatter(x=self.steps, y=self._array("threshold"), mode="lines", name="threshold",
                        line={"dash": "dash", "color": theme.REFERENCE})
        return fig


def monitor(optimizer: str = "sgd", title: str | None = None, **kwargs: Any) -> Any:
    """A LivePlot for any run: the loss, and the sharpness (preconditioned for Adam) against its threshold.

    Pass it as ``live=`` to :class:`EdgeOfStability` and as a ``fit`` callback (for the loss).
    """
    from labkit.viz import LivePlot

    adaptive = optimizer in ADAPTIVE
    curv = ["sharpness", "threshold"] + (["preconditioned"] if adaptive else [])
    # Adam's preconditioned sharpness (~38/lr) and its raw one (~2/lr or less) differ by orders of magnitude
    kwargs.setdefault("log_y", ["loss", "sharpness"] if adaptive else None)
    return LivePlot({"loss": ["loss"], "sharpness": curv},
                    title=title or f"{optimizer}: sharpness against its edge-of-stability threshold", **kwargs)



#: The run must start clearly below its threshold (or "ends at the threshold" is true from step 0) ...
START_BELOW = 0.7
#: ... and end within this fraction of it: above it the optimiser is unstable, and at the edge it does not fall back.
WITHIN = 0.1
#: The end is the median over this last fraction of the measurements (a third: long enough to average the
#: oscillation at the edge, short enough to leave out the climb).
TAIL = 1 / 3


@dataclass(frozen=True)
class EdgeVerdict:
    """The evidence of :func:`at_edge`: ``start`` and ``end`` as fractions of the threshold, and the rule's limits.

    True (``holds``) iff ``start < start_below`` and ``|end - 1| <= within``.
    """

    threshold: float  # the threshold at the first measurement
    start: float  # first measurement / its threshold
    end: float  # median of measurement / threshold over the last `tail` of the measurements
    n_end: int  # how many measurements that median is over
    start_below: float = START_BELOW
    within: float = WITHIN

    @property
    def holds(self) -> bool:
        """The run climbed from below its threshold to it: start < start_below, end within ``within`` of 1."""
        return bool(self.start < self.start_below and abs(self.end - 1) <= self.within)

    def __bool__(self) -> bool:
        return self.holds


def at_edge(values: Any, thresholds: Any, *, start_below: float = START_BELOW, within: float = WITHIN,
            tail: float = TAIL) -> EdgeVerdict:
    """The one at-the-edge criterion, a check that can fail: did the sharpness climb from below its threshold to it?

    ``values`` are sharpness measurements (the preconditioned ones for adaptive optimisers: see
    :func:`threshold`), ``thresholds`` one threshold or one per measurement. Holds iff the first value is below
    ``start_below`` (0.7) x its threshold (the run starts away from the edge) and the median of
    ``value / threshold`` over the last ``tail`` (a third) of the measurements is within ``within`` (10%) of 1.
    Returns the evidence (:class:`EdgeVerdict`), which is truthy iff the criterion holds.
    """
    v, thr = _series(values, thresholds)
    if len(v) < 3:
        raise ValueError(f"values must be a 1-D series of at least 3 measurements, got shape {v.shape}")
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be a fraction in (0, 1], got {tail!r}")
    n_end = max(1, round(len(v) * tail))
    return EdgeVerdict(float(thr[0]), float(v[0] / thr[0]), edge_ratio(v, thr, tail), n_end, start_below, within)


def hovers(values: Any, threshold: float, *, within: float = WITHIN, rise: float = 0.05, tail: float = TAIL) -> bool:
    """Has the sharpness stopped at ``threshold``? The median of the last ``tail`` within ``within`` of it, and the
    least-squares rise over that tail below ``rise`` x threshold (half the band).

    The second half tells "stopped at 2/lr" from "passing through 2/lr while still climbing": at half the
    learning rate the same network's sharpness crosses the first run's 2/lr and keeps rising.
    """
    v = np.asarray(values, dtype=float) / float(threshold)
    k = max(3, round(len(v) * tail))
    if len(v) < k:
        raise ValueError(f"need at least {k} measurements, got {len(v)}")
    climb = float(np.polyfit(np.arange(k), v[-k:], 1)[0] * (k - 1))
    return bool(abs(float(np.median(v[-k:])) - 1) <= within and climb < rise)


def _series(values: Any, thresholds: Any) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as a 1-D float array and ``thresholds`` (one, or one per value) broadcast to it."""
    v, t = np.asarray(values, dtype=float), np.asarray(thresholds, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"values must be a 1-D series of measurements, got shape {v.shape}")
    if t.ndim > 1 or (t.ndim == 1 and len(t) != len(v)):
        raise ValueError(f"thresholds must be one number or one per value ({len(v)}), got shape {t.shape}")
    return v, np.broadcast_to(t, v.shape)


def edge_ratio(values: Any, thresholds: Any, tail: float = TAIL) -> float:
    """Median of ``value / threshold`` over the last ``tail`` of the measurements (:attr:`EdgeVerdict.end`)."""
    v, thr = _series(values, thresholds)
    k = max(1, round(len(v) * tail))
    return float(np.median(v[-k:] / thr[-k:]))


__getattr__ = _deprecated.moved(__name__, {"demo_run": "labkit.lessons.edge:demo_run",
                                          "demo_data": "labkit.lessons.edge:demo_data"})
