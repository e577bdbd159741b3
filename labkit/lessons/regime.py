"""The lesson of notebook 10's regime map: the catapult, measured on a width x learning-rate grid.

Claim (Lewkowycz et al. 2020, "The large learning rate phase of deep learning: the catapult mechanism"): with
``lambda_0`` the top Hessian eigenvalue at initialisation, full-batch gradient descent with ``2 < lr x lambda_0 <
4`` (MSE, wide networks) is unstable for the linearised model, yet the network converges after a loss spike: the
loss first grows, the kernel moves, the curvature drops below ``2 / lr`` and the loss settles. Below 2 the
linearised dynamics contracts in every direction: no spike. Control: the same check on the cells below 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from labkit.data import teacher_student
from labkit.models import mlp
from labkit.population.regime import RegimeMap, regime_maps

__all__ = ["CATAPULT_BAND", "SPIKE", "STABLE_BAND", "catapult", "catapult_seeds", "spikes"]

#: Linear stability ends at lr x lambda_0 = 2; Lewkowycz et al. put the divergence limit of wide MSE networks at 4.
CATAPULT_BAND = (2.0, 4.0)
STABLE_BAND = (0.0, 2.0)
#: A spike: the loss more than doubles above its start. Above 2 the top mode's loss grows by (lr lambda_0 - 1)^2 > 1
#: per step until the kernel moves, so it doubles within a few steps; below 2 the linearised loss only falls.
SPIKE = 2.0


def spikes(rmap: RegimeMap, band: tuple[float, float]) -> dict[str, Any]:
    """Among the cells with ``lr x lambda_0`` inside ``band`` that converged: how many spiked (peak loss > SPIKE x
    the initial loss); ``holds`` iff there is at least one such cell and every one of them spiked."""
    lo, hi = band
    cells = [c for row in rmap.numbers for c in row if lo < c["lr_sharpness"] < hi and not c["diverged"]
             and c["final_loss"] < c["initial_loss"]]
    ratios = [c["peak_loss"] / c["initial_loss"] for c in cells]
    spiked = sum(r > SPIKE for r in ratios)
    return {"band": band, "cells": len(cells), "spiked": spiked, "peak_ratios": ratios,
            "holds": bool(cells) and spiked == len(cells)}


def _net(width: int, seed: int) -> torch.nn.Module:
    return mlp(3, [width], 1, activation="tanh", parameterization="ntk", seed=seed).double()


def catapult(widths: Sequence[int] = (64, 1024), lrs: Sequence[float] = (0.5, 1.5, 5.0, 6.0, 9.0), *,
             steps: int = 100, n: int = 32, seed: int = 0) -> dict[str, Any]:
    """The regime map of a one-hidden-layer tanh network (NTK parameterisation, float64) on a teacher-student
    regression task, full batch, and the spike check on the catapult band (claim) and below 2 (control)."""
    return catapult_seeds(widths, lrs, seeds=(seed,), steps=steps, n=n, data_seed=seed)[0]


def catapult_seeds(widths: Sequence[int] = (64, 1024), lrs: Sequence[float] = (0.5, 1.5, 5.0, 6.0, 9.0), *,
                   seeds: Sequence[int] = (0, 1, 2, 3, 4), steps: int = 100, n: int = 32,
                   data_seed: int = 0) -> list[dict[str, Any]]:
    """:func:`catapult` for every initialisation seed on one data set (``data_seed``): one ``fit_many``
    population over the (seed, lr) pairs per width, so the seed spread costs no extra loop."""
    data = teacher_student(n, dim=3, teacher_width=4, seed=data_seed).to(dtype=torch.float64)
    maps = regime_maps(_net, data, widths, lrs, seeds=seeds, steps=steps)
    return [{"map": m, "claim": spikes(m, CATAPULT_BAND), "control": spikes(m, STABLE_BAND)} for m in maps]
