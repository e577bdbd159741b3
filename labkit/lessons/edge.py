"""The edge-of-stability lesson (notebooks 00, 01 and 09): one network trained full batch up to its edge.

A tanh MLP 4-32-32-3 with MSE on a 3-class Gaussian mixture (Cohen et al. 2021's progressive-sharpening
setting, small), tracked by :class:`labkit.edge.EdgeOfStability` and judged by :func:`labkit.edge.at_edge`.
"""

from __future__ import annotations

from typing import Any

import torch

from labkit import _deprecated
from labkit.data import gaussian_mixture
from labkit.edge import EdgeOfStability
from labkit.models import mlp
from labkit.train import fit

__all__ = ["demo_data", "demo_run"]


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
