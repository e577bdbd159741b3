"""The edge-of-stability lesson (notebooks 00, 01 and 09): one network trained full batch up to its edge.

A tanh MLP 4-32-32-3 with MSE on a 3-class Gaussian mixture (Cohen et al. 2021's progressive-sharpening
setting, small), tracked by :class:`labkit.edge.EdgeOfStability` and judged by :func:`labkit.edge.at_edge`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labkit import _deprecated
from labkit.data import gaussian_mixture
from labkit.edge import EdgeOfStability
from labkit.models import mlp
from labkit.train import fit

__all__ = ["catapult", "demo_data", "demo_run", "sgd_leaves_sharp_region"]


@_deprecated.keyword_only("seed")
def demo_data(n: int = 64, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3-class Gaussian mixture in 4 dimensions with one-hot MSE targets, float64 (Cohen et al.'s setting, small)."""
    ds = gaussian_mixture(n, dim=4, classes=3, separation=2.0, seed=seed).to(dtype=torch.float64)
    return ds.inputs, torch.nn.functional.one_hot(ds.targets, 3).double()


def demo_run(optimizer: str, lr: float, steps: int, every: int, *, n: int = 64, k: int = 1, data: Any = None,
             seed: int = 0, live: Any = None, callbacks: Any = ()) -> tuple[EdgeOfStability, Any]:
    """Full-batch training of a tanh MLP 4-32-32-3 (MSE) with an :class:`EdgeOfStability` tracker.

    The data is :func:`demo_data` ``(n, seed)`` unless ``data`` is given; the network is seeded by ``seed``.
    Returns ``(tracker, history)``; ``live`` (a :func:`labkit.edge.monitor`) is fed the loss and the sharpness,
    and it and ``callbacks`` go to :func:`labkit.train.fit` (a callback returning True stops the run).
    """
    net = mlp(4, [32, 32], 3, activation="tanh", seed=seed).double()
    tracker = EdgeOfStability(every, k, live=live)
    extra = [tracker] + ([live] if live is not None else []) + list(callbacks)
    hist = fit(net, demo_data(n, seed=seed) if data is None else data, loss="mse", optimizer=optimizer, lr=lr,
               steps=steps, callbacks=extra, progress=False)
    return tracker, hist


def catapult(factor: float, *, steps: int = 300, every: int = 10, window: tuple[int, int] = (50, 300),
             seed: int = 0) -> dict[str, Any]:
    """Full-batch GD on :func:`demo_run`'s network (seed ``seed``, on the seed-0 :func:`demo_data`) at
    ``lr = factor x 2/lambda_0`` (lambda_0: its initial sharpness).

    Lewkowycz et al. 2020: for ``factor`` in (1, ~2) the loss spikes and the network lands somewhere flatter.
    Measured here: it lands *at the edge of stability*, not below it. Returns the loss spike (peak over the first
    ``window[0]`` steps above the initial loss), ``ratio``: the median sharpness x lr/2 over steps ``window``,
    ``above``: the share of those measurements above 2/lr, ``diverged``, and ``holds``: spike, and the median within
    10% of 2/lr (the edge-of-stability band of :func:`labkit.edge.at_edge`).
    """
    data = demo_data()
    probe, _ = demo_run("sgd", 1e-3, 1, 1, data=data, seed=seed)
    lam0 = float(probe.array("sharpness")[0])
    lr = factor * 2 / lam0
    tracker, hist = demo_run("sgd", lr, steps, every, data=data, seed=seed)
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

    :func:`demo_run`'s network (seed ``seed``, seed-0 data) is first trained by full-batch GD at lr 0.03 (2/lr = 67,
    above its sharpness) to a low-loss point of sharpness ``S0``; from there SGD (``batch_size``) runs at
    ``lr = factor x 2/S0``. Returns ``S0``, ``S1`` (sharpness after SGD), ``ratio`` = ``S1 x lr/2`` and ``holds``:
    the sharpness fell by more than 10% (SGD left the region it could not stay in). Expected: holds for
    ``factor > 1``, not for ``factor < 1``.
    """
    from labkit.hessian import top_eigenvalues

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
