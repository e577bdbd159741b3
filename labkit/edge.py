"""The edge of stability for every optimiser: thresholds, Adam's preconditioned Hessian, a tracker, a live monitor.

On a quadratic with curvature ``lambda`` each optimiser is stable iff ``lr lambda`` stays below a
number that depends only on its momentum (Cohen et al. 2021, arXiv:2103.00065; 2022,
"Adaptive Gradient Methods at the Edge of Stability", arXiv:2207.14484):

==================  ==============================================  ================================
optimiser           update (labkit's conventions, :mod:`labkit.optim`)  stable iff
==================  ==============================================  ================================
``sgd``             ``p -= lr g``                                   ``lambda < 2 / lr``
``momentum`` beta   ``m = beta m + g; p -= lr m``                   ``lambda < (2 + 2 beta) / lr``
``adam`` beta1      ``m = beta1 m + (1 - beta1) g; p -= lr m / P``  ``lambda(P^-1/2 H P^-1/2) <
                    with ``P = sqrt(v_hat) + eps`` held fixed        (2 + 2 beta1) / ((1 - beta1) lr)``
==================  ==============================================  ================================

For Adam the curvature that matters is that of the *preconditioned* Hessian ``P^-1/2 H P^-1/2``
(38/lr for beta1 = 0.9); the raw sharpness need not come near 2/lr. :class:`Preconditioned`
builds that operator from any :class:`labkit.linalg.LinearOperator` and a diagonal ``P``;
:class:`EdgeOfStability` (a :class:`labkit.tracking.Every`) records the raw sharpness, the
preconditioned one and the threshold during :func:`labkit.train.fit`, for ``"sgd"``,
``"momentum"``, ``"adam"`` and ``"adamw"`` (Adam's second moment is rebuilt from the gradients
``fit`` computed, exactly as ``torch.optim.Adam`` builds it) or for a torch optimiser made by
:meth:`EdgeOfStability.optimizer` (``torch.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop``: its state is read).
:func:`monitor` is the live figure: loss, sharpness and threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from labkit import _checks, linalg
from labkit.curvature import HessianOperator
from labkit.data import as_dataset
from labkit.linalg import LinearOperator
from labkit.optim import BETAS, EPS, MOMENTUM
from labkit.tracking import Every
from labkit.train import StepInfo

__all__ = [
    "EdgeOfStability",
    "Preconditioned",
    "adam_preconditioner",
    "at_edge",
    "catapult",
    "demo_data",
    "demo_run",
    "edge_ratio",
    "hovers",
    "monitor",
    "sgd_leaves_sharp_region",
    "threshold",
]

ADAPTIVE = ("adam", "adamw", "rmsprop")


def threshold(lr: float, optimizer: str = "sgd", *, beta: float | None = None) -> float:
    """The sharpness at which ``optimizer`` becomes unstable on a quadratic (table in the module docstring).

    ``beta`` is the momentum (``"momentum"``, default labkit's 0.9) or ``beta1`` (``"adam"``, ``"adamw"``,
    default 0.9); for ``"adam"``/``"adamw"``/``"rmsprop"`` the threshold is on the *preconditioned*
    sharpness (``"rmsprop"``: no momentum, ``2/lr``).
    """
    lr = _checks.positive("lr", lr)
    _checks.choice("optimizer", optimizer, ("sgd", "momentum", *ADAPTIVE))
    if optimizer in ("sgd", "rmsprop"):
        b = 0.0 if beta is None else beta
    else:
        b = (MOMENTUM if optimizer == "momentum" else BETAS[0]) if beta is None else beta
    if not 0 <= b < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    if optimizer in ("adam", "adamw"):  # heavy ball with an EMA of the gradient: effective step lr (1 - beta1)
        return (2 + 2 * b) / ((1 - b) * lr)
    return (2 + 2 * b) / lr


def adam_preconditioner(exp_avg_sq: torch.Tensor, step: int, beta2: float = BETAS[1],
                        eps: float = EPS) -> torch.Tensor:
    """Adam's diagonal ``P = sqrt(v / (1 - beta2^step)) + eps`` (Cohen et al. 2022), what torch Adam divides by."""
    _checks.positive("step", step, integer=True)
    return (exp_avg_sq / (1 - beta2**step)).sqrt() + eps


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


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


class EdgeOfStability(Every):
    """Raw sharpness, preconditioned sharpness and the threshold every ``every`` steps of ``fit``.

    Records ``sharpness`` (top eigenvalue of ``H``), ``preconditioned`` (of ``P^-1/2 H P^-1/2``; equal to
    ``sharpness`` for SGD and momentum, where ``P = I``), ``threshold`` (:func:`threshold` at the current
    lr), ``gd_threshold`` (``2/lr``) and ``lr``. ``data``/``max_examples``: the data the Hessian is
    taken on (default the training data). ``live``: a LivePlot (see :func:`monitor`).

    For ``optimizer="adam"``/``"adamw"`` it follows Adam's second moment from the gradients at every
    step (``v = beta2 v + (1 - beta2) g^2`` with ``g`` including L2 weight decay for ``"adam"``);
    for any torch optimiser, build it with :meth:`optimizer` and the state is read from it.
    """

    def __init__(self, every: int = 10, *, data: Any = None, max_examples: int | None = None, tol: float = 1e-4,
                 live: Any = None):
        super().__init__(every, live=live)
        self.data, self.max_examples, self.tol = data, max_examples, tol
        self.torch_optimizer: torch.optim.Optimizer | None = None
        self._v0: dict[str, torch.Tensor | None] = {"raw": None, "pre": None}
        self._v: torch.Tensor | None = None
        self._t = 0
        self._kind: str | None = None
        self._beta: float = 0.0
        self._wd = 0.0

    # ------------------------------------------------------------ a torch optimiser whose state is read

    def optimizer(self, cls: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
                  **kwargs: Any) -> Callable[..., torch.optim.Optimizer]:
        """A factory for ``fit(optimizer=...)``: builds ``cls(params, lr=, weight_decay=, **kwargs)`` and keeps it."""
        def make(params: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
            self.torch_optimizer = cls(params, lr=lr, weight_decay=weight_decay, **kwargs)
            return self.torch_optimizer
        return make

    def _kind_of_torch(self) -> tuple[str, float]:
        opt = self.torch_optimizer
        group = opt.param_groups[0]
        if isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
            return ("adamw" if isinstance(opt, torch.optim.AdamW) else "adam"), group["betas"][0]
        if isinstance(opt, torch.optim.RMSprop):
            if group.get("momentum", 0) or group.get("centered", False):
                raise TypeError("EdgeOfStability reads RMSprop without momentum or centring only")
            return "rmsprop", 0.0
        if isinstance(opt, torch.optim.SGD):
            if group.get("nesterov") or group.get("dampening", 0):
                raise TypeError("EdgeOfStability reads SGD with heavy-ball momentum (no Nesterov, no dampening)")
            return ("momentum" if group["momentum"] else "sgd"), group["momentum"]
        raise TypeError(f"EdgeOfStability knows torch.optim SGD, Adam, AdamW and RMSprop, not {type(opt).__name__}")

    # ------------------------------------------------------------ the loop

    def on_start(self, info: StepInfo) -> None:
        super().on_start(info)
        if self.torch_optimizer is not None:
            self._kind, self._beta = self._kind_of_torch()
        elif isinstance(info.optimizer, str):
            self._kind = info.optimizer
            self._beta = {"sgd": 0.0, "momentum": MOMENTUM}.get(info.optimizer, BETAS[0])
        else:
            raise TypeError("EdgeOfStability needs optimizer='sgd', 'momentum', 'adam' or 'adamw', or a torch "
                            "optimiser built by tracker.optimizer(cls, ...) so that its state can be read")
        history = info.history
        self._wd = float(getattr(history, "hparams", {}).get("weight_decay", 0.0) or 0.0)
        self._v, self._t = None, 0

    def on_step(self, info: StepInfo) -> bool | None:
        if self._kind in ("adam", "adamw") and self.torch_optimizer is None:
            self._follow_second_moment(info)
        return super().on_step(info)

    @torch.no_grad()
    def _follow_second_moment(self, info: StepInfo) -> None:
        """Adam's ``v`` after this step's update (the preconditioner this step divides by)."""
        params = [p for p in info.model.parameters() if p.requires_grad]
        g = _flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
        if self._kind == "adam" and self._wd:
            g = g + self._wd * _flat([p.detach() for p in params])
        b2 = BETAS[1]
        self._v = (1 - b2) * g * g if self._v is None else b2 * self._v + (1 - b2) * g * g
        self._t += 1

    def preconditioner(self, info: StepInfo) -> torch.Tensor | None:
        """The diagonal ``P`` this step's update divides by (None for SGD and momentum)."""
        if self._kind in ("sgd", "momentum"):
            return None
        if self.torch_optimizer is None:
            return adam_preconditioner(self._v, self._t)
        opt = self.torch_optimizer
        group = opt.param_groups[0]
        params = [p for p in info.model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if self._kind == "rmsprop":  # v after this step: alpha v + (1 - alpha) g^2, no bias correction
            a = group["alpha"]
            g = _flat(grads) + group["weight_decay"] * _flat([p.detach() for p in params])
            state = [opt.state[p].get("square_avg") for p in params]
            v = (1 - a) * g * g if state[0] is None else a * _flat(state) + (1 - a) * g * g
            return v.sqrt() + group["eps"]
        b2 = group["betas"][1]
        g = _flat(grads)
        if self._kind == "adam" and group["weight_decay"]:
            g = g + group["weight_decay"] * _flat([p.detach() for p in params])
        state = [opt.state[p].get("exp_avg_sq") for p in params]
        step = int(opt.state[params[0]]["step"]) + 1 if state[0] is not None else 1
        v = (1 - b2) * g * g if state[0] is None else b2 * _flat(state) + (1 - b2) * g * g
        return adam_preconditioner(v, step, b2, group["eps"])

    def measure(self, info: StepInfo) -> dict[str, Any]:
        ds = as_dataset(self.data if self.data is not None else info.data)
        if self.max_examples is not None:
            ds = ds[: self.max_examples]
        H = HessianOperator(info.model, info.loss_fn, ds)
        raw = self._top(H, "raw")
        P = self.preconditioner(info)
        pre = raw if P is None else self._top(Preconditioned(H, P.to(H.dtype)), "pre")
        lr = float(info.lr)
        return {"sharpness": raw, "preconditioned": pre, "threshold": threshold(lr, self._kind, beta=self._beta),
                "gd_threshold": 2.0 / lr, "lr": lr}

    def _top(self, op: LinearOperator, key: str) -> float:
        res = linalg.top_eigenvalues(op, 1, tol=self.tol, v0=self._v0[key], dense=False)
        self._v0[key] = res.vectors
        return float(res.values[0])

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        out = {"sharpness": record["sharpness"], "threshold": record["threshold"]}
        if self._kind in ADAPTIVE:
            out["preconditioned"] = record["preconditioned"]
        return out

    def array(self, key: str) -> np.ndarray:
        """One recorded quantity as an array (``"sharpness"``, ``"preconditioned"``, ``"threshold"``, ...)."""
        return np.array(self.series(key), dtype=float)

    def figure(self) -> Any:
        """Sharpness (and preconditioned sharpness) against step, with the threshold."""
        from labkit.viz import theme

        adaptive = self._kind in ADAPTIVE  # the preconditioned sharpness is orders of magnitude above the raw one
        fig = theme.figure(f"Edge of stability ({self._kind})", "step",
                           "top eigenvalue (log scale)" if adaptive else "top eigenvalue", log_y=adaptive)
        fig.add_scatter(x=self.steps, y=self.array("sharpness"), mode="lines+markers", name="sharpness of H")
        if adaptive:
            fig.add_scatter(x=self.steps, y=self.array("preconditioned"), mode="lines+markers",
                            name="sharpness of P^-1/2 H P^-1/2")
        fig.add_scatter(x=self.steps, y=self.array("threshold"), mode="lines", name="threshold",
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



# ---------------------------------------------------------------- the experiment notebook 09 and its tests run


def demo_data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3-class Gaussian mixture in 4 dimensions with one-hot MSE targets, float64 (lessons.md's EoS task)."""
    from labkit.data import gaussian_mixture

    ds = gaussian_mixture(n, dim=4, classes=3, separation=2.0, seed=seed).to(dtype=torch.float64)
    return ds.inputs, torch.nn.functional.one_hot(ds.targets, 3).double()


def demo_run(optimizer: str, lr: float, steps: int, every: int, *, data: Any = None, seed: int = 0,
             live: Any = None, callbacks: Any = ()) -> tuple[EdgeOfStability, Any]:
    """Full-batch training of a tanh MLP 4-32-32-3 (MSE) with an :class:`EdgeOfStability` tracker.

    Returns ``(tracker, history)``; ``live`` (a :func:`monitor`) is fed the loss and the sharpness.
    """
    from labkit.models import mlp
    from labkit.train import fit

    net = mlp(4, [32, 32], 3, activation="tanh", seed=seed).double()
    tracker = EdgeOfStability(every, live=live)
    extra = [tracker] + ([live] if live is not None else []) + list(callbacks)
    hist = fit(net, demo_data() if data is None else data, loss="mse", optimizer=optimizer, lr=lr, steps=steps,
               callbacks=extra, progress=False)
    return tracker, hist


def at_edge(values: Any, thresholds: Any, *, start_below: float = 0.7, within: float = 0.1,
            tail: float = 1 / 3) -> bool:
    """The edge-of-stability claim as a check that can fail (lessons.md, pattern 1).

    True iff the first value is below ``start_below`` x its threshold (the run starts away from the
    edge) and the median of the last ``tail`` of the values is within ``within`` of the threshold.
    """
    v, thr = np.asarray(values, dtype=float), np.broadcast_to(np.asarray(thresholds, dtype=float), np.shape(values))
    if len(v) < 3:
        raise ValueError(f"need at least 3 measurements, got {len(v)}")
    return bool(v[0] < start_below * thr[0] and abs(edge_ratio(v, thr, tail) - 1) <= within)


def hovers(values: Any, threshold: float, *, within: float = 0.1, rise: float = 0.05, tail: float = 1 / 3) -> bool:
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


def edge_ratio(values: Any, thresholds: Any, tail: float = 1 / 3) -> float:
    """Median of ``value / threshold`` over the last ``tail`` of the measurements."""
    v, thr = np.asarray(values, dtype=float), np.broadcast_to(np.asarray(thresholds, dtype=float), np.shape(values))
    k = max(1, round(len(v) * tail))
    return float(np.median(v[-k:] / thr[-k:]))


def catapult(factor: float, *, steps: int = 300, every: int = 10, window: tuple[int, int] = (50, 300),
             seed: int = 0) -> dict[str, Any]:
    """Full-batch GD on :func:`demo_run`'s network at ``lr = factor x 2/lambda_0`` (lambda_0: its initial sharpness).

    Lewkowycz et al. 2020: for ``factor`` in (1, ~2) the loss spikes and the network lands somewhere flatter.
    Measured here: it lands *at the edge of stability*, not below it. Returns the loss spike (peak over the first
    ``window[0]`` steps above the initial loss), ``ratio``: the median sharpness x lr/2 over steps ``window``,
    ``above``: the share of those measurements above 2/lr, ``diverged``, and ``holds``: spike, and the median within
    10% of 2/lr (above 2/lr GD is unstable, and it does not fall back below: the edge-of-stability band of
    :func:`at_edge`).
    """
    probe, _ = demo_run("sgd", 1e-3, 1, 1, seed=seed)
    lam0 = float(probe.array("sharpness")[0])
    lr = factor * 2 / lam0
    tracker, hist = demo_run("sgd", lr, steps, every, seed=seed)
    loss, t = np.asarray(hist.loss, dtype=float), np.asarray(tracker.steps)
    inside = (t >= window[0]) & (t <= window[1])
    ratio = tracker.array("sharpness")[inside] * lr / 2
    spike = bool(np.nanmax(loss[:window[0]]) > loss[0])
    median = float(np.median(ratio)) if ratio.size and not hist.diverged else float("nan")
    return {"lr": lr, "lambda0": lam0, "spike": spike, "peak_loss": float(np.nanmax(loss[:window[0]])),
            "initial_loss": float(loss[0]), "final_loss": float(loss[-1]), "ratio": median,
            "above": float(np.mean(ratio > 1)) if ratio.size else float("nan"), "diverged": bool(hist.diverged),
            "holds": bool(spike and abs(median - 1) <= 0.1)}


def sgd_leaves_sharp_region(factor: float, *, batch_size: int = 16, gd_steps: int = 600, sgd_steps: int = 300,
                            seed: int = 0) -> dict[str, Any]:
    """Mini-batch SGD also has a stability threshold (Wu, Ma & E 2018: at a minimum it needs lambda_max <= 2/lr).

    :func:`demo_run`'s network is first trained by full-batch GD at lr 0.03 (2/lr = 67, above its sharpness) to a
    low-loss point of sharpness ``S0``; from there SGD (``batch_size``) runs at ``lr = factor x 2/S0``. Returns
    ``S0``, ``S1`` (sharpness after SGD), ``ratio`` = ``S1 x lr/2`` and ``holds``: the sharpness fell by more than
    10% (SGD left the region it could not stay in). Expected: holds for ``factor > 1``, not for ``factor < 1``.
    """
    from labkit.hessian import top_eigenvalues
    from labkit.models import mlp
    from labkit.train import fit

    data = demo_data()
    net = mlp(4, [32, 32], 3, activation="tanh", seed=seed).double()
    fit(net, data, loss="mse", lr=0.03, steps=gd_steps, progress=False)
    sharp = lambda: float(top_eigenvalues(net, "mse", data, k=1).values[0])  # noqa: E731
    s0 = sharp()
    lr = factor * 2 / s0
    hist = fit(net, data, loss="mse", lr=lr, batch_size=batch_size, steps=sgd_steps, progress=False, seed=seed)
    s1 = sharp() if not hist.diverged else float("nan")
    return {"lr": lr, "S0": s0, "S1": s1, "ratio": s1 * lr / 2, "diverged": bool(hist.diverged),
            "holds": bool(s1 < 0.9 * s0)}
