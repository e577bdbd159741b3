"""The edge-of-stability network of notebooks 00, 01 and 09 (:func:`labkit.lessons.edge.demo_run`: a tanh MLP
4-32-32-3, MSE, full-batch GD on the seed-0 :func:`~labkit.lessons.edge.demo_data`) trained as one population:
every (lr, initialisation seed) member in one :func:`labkit.train.fit_many` call, the sharpness of all members
measured together by :class:`labkit.population.probes.Sharpness` (one lockstep Lanczos per measurement, at
:class:`labkit.edge.EdgeOfStability`'s tolerance). Member ``(lr, seed)`` trains as ``demo_run("sgd", lr, ...,
seed=seed)`` with the seed-0 data, so the pre-registered seed is one member and the others give the spread."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import labkit
from labkit.lessons import edge as lesson
from labkit.population import probes

SEEDS = (0, 1, 2, 3, 4)
TOL = 1e-4  # EdgeOfStability's default


def make(seed: int):
    return labkit.models.mlp(4, [32, 32], 3, activation="tanh", seed=seed).double()


def initial_sharpness(seeds: Sequence[int] = SEEDS) -> np.ndarray:
    """lambda_0 of every seed's network at initialisation (one lockstep Lanczos)."""
    members = probes.Members.of([make(s) for s in seeds], "mse", lesson.demo_data())
    return probes.top_eigenvalues(members, tol=TOL).top.numpy()


def train(lrs: Sequence[float], seeds: Sequence[int], steps: int, every: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Member ``i`` = ``(lrs[i], seeds[i])``: its History, the measurement steps, and the sharpness ``(members,
    measurements)`` at those steps (before that step's update, as ``EdgeOfStability``)."""
    sharp = probes.Sharpness(make, every=every, tol=TOL)
    hists = labkit.train.fit_many(make, lesson.demo_data(), hparams={"lr": list(lrs), "seed": list(seeds)},
                                  loss="mse", steps=steps, callbacks=[sharp], progress=False)
    return hists, np.asarray(sharp.steps), np.array([sharp.series(i) for i in range(len(hists))])


def catapult(factors: Sequence[float], seeds: Sequence[int] = SEEDS, *, steps: int = 300, every: int = 10,
             window: tuple[int, int] = (50, 300)) -> dict[tuple[float, int], dict]:
    """:func:`labkit.lessons.edge.catapult` ``(factor, seed=seed)`` for every factor x seed, one population: ``{(factor,
    seed): {"lr", "spike", "ratio", "holds"}}`` with the lesson's definitions (the loss spike over the first
    ``window[0]`` steps; ``ratio``, the median sharpness x lr/2 over ``window``; ``holds``: spike and ratio within 10%
    of 1)."""
    lam0 = initial_sharpness(seeds)
    pairs = [(f, i) for f in factors for i in range(len(seeds))]
    lrs = [f * 2 / lam0[i] for f, i in pairs]
    hists, t, sharp = train(lrs, [seeds[i] for _, i in pairs], steps, every)
    inside = (t >= window[0]) & (t <= window[1])
    out = {}
    for (f, i), lr, h, s in zip(pairs, lrs, hists, sharp):
        loss = np.asarray(h.loss, dtype=float)
        spike = bool(np.nanmax(loss[: window[0]]) > loss[0])
        median = float(np.median(s[inside] * lr / 2)) if inside.any() and not h.diverged else float("nan")
        out[f, seeds[i]] = {"lr": lr, "spike": spike, "ratio": median, "holds": bool(spike and abs(median - 1) <= 0.1)}
    return out
