"""The edge-of-stability network of notebooks 00, 01 and 09 (:func:`labkit.lessons.edge.demo_run`: a tanh MLP
4-32-32-3, MSE, full-batch GD on the seed-0 :func:`~labkit.lessons.edge.demo_data`) trained as one population:
every (lr, initialisation seed) member in one :func:`labkit.train.fit_many` call, the sharpness of all members
measured together by :class:`labkit.population.probes.Sharpness` (one lockstep Lanczos per measurement, at
:class:`labkit.edge.EdgeOfStability`'s tolerance). Member ``(lr, seed)`` trains as ``demo_run("sgd", lr, ...,
seed=seed)`` with the seed-0 data, so the pre-registered seed is one member and the others give the spread."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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


def _trained(seeds: Sequence[int], steps: int, **kw) -> tuple[list, dict]:
    """fit_many over ``seeds`` for ``steps`` updates: the Histories and the stacked parameters after them."""
    at: dict = {}

    def keep(info):  # before update ``steps`` (the extra one, never counted) = after ``steps`` updates
        if info.step == steps:
            at.update({k: v.detach().clone() for k, v in info.params.items()})

    hists = labkit.train.fit_many(kw.pop("make", make), lesson.demo_data(), hparams={"seed": list(seeds), **kw},
                                  loss="mse", steps=steps + 1, callbacks=[keep], progress=False)
    return hists, at


def _sharpness(params: dict) -> np.ndarray:
    members = probes.Members(make(0), params, "mse", lesson.demo_data())
    return probes.top_eigenvalues(members).top.numpy()  # tol 1e-6, as labkit.hessian.top_eigenvalues


def sgd_leaves_sharp_region(factors: Sequence[float], seeds: Sequence[int] = SEEDS, *, batch_size: int = 16,
                            gd_steps: int = 600, sgd_steps: int = 300) -> dict[tuple[float, int], dict]:
    """:func:`labkit.lessons.edge.sgd_leaves_sharp_region` ``(factor, seed=seed)`` for every factor x seed: full-batch
    GD at lr 0.03 for every seed (one population) to sharpness ``S0``, then SGD (``batch_size``) at ``factor x
    2/S0`` for every (factor, seed) (one population) to ``S1``; ``holds``: ``S1 < 0.9 S0``."""
    _, gd = _trained(seeds, gd_steps, lr=0.03)
    s0 = _sharpness(gd)

    def start(seed: int):  # the GD-trained network of ``seed``
        net, i = make(seed), list(seeds).index(seed)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(gd[name][i])
        return net

    pairs = [(f, i) for f in factors for i in range(len(seeds))]
    lrs = [f * 2 / s0[i] for f, i in pairs]
    hists, sgd = _trained([seeds[i] for _, i in pairs], sgd_steps, make=start, lr=lrs, batch_size=batch_size)
    s1 = _sharpness(sgd)
    return {(f, seeds[i]): {"lr": lr, "S0": float(s0[i]), "S1": float("nan") if h.diverged else float(s1[m]),
                            "diverged": bool(h.diverged), "holds": bool(not h.diverged and s1[m] < 0.9 * s0[i])}
            for m, ((f, i), lr, h) in enumerate(zip(pairs, lrs, hists))}
