"""Notebook 10's claims, each with the negative control on which the same check must fail (seeded, test size)."""

import numpy as np
import pytest

import labkit
from labkit import mup

WIDTHS = [32, 64, 128, 256, 512, 1024]


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 3e-3)])
def test_coordinate_check_mup_flat_standard_grows(optimizer, lr):
    """After 4 steps, the change of every layer's pre-activations is width-independent under muP.

    Theory (Yang et al. 2021): under muP every slope of log|delta h| against log width is 0; under the
    standard parameterisation at a fixed lr the hidden layer's change grows like width^(1/2) (SGD) or
    faster (Adam). The check "every |slope| < 0.25" (halfway to 1/2) must pass for muP and fail for standard.
    """
    ds = labkit.data.gaussian_mixture(128, dim=8, classes=4, seed=0)
    kw = dict(lr=lr, optimizer=optimizer, steps=4)
    mp = mup.coord_check(lambda w, s: mup.mlp(8, [w, w], 4, optimizer=optimizer, seed=s), WIDTHS, ds, **kw)
    sp = mup.coord_check(lambda w, s: labkit.models.mlp(8, [w, w], 4, seed=s), WIDTHS, ds, **kw)
    flat = lambda r: bool(np.all(np.abs(mup.slopes(r["widths"], r["change"])) < 0.25))  # noqa: E731
    assert flat(mp)
    assert not flat(sp)


def test_optimal_learning_rate_transfers_under_mup_not_standard():
    """Adam, widths 32 and 512, lr grid in factors of 2: the best lr moves by at most one grid step under muP.

    Theory: under the standard parameterisation Adam's best lr scales like 1/width for the hidden layers,
    i.e. 4 grid steps over a 16x width; the check "moves by <= 1 grid step" must fail there.
    """
    ds = labkit.data.gaussian_mixture(256, dim=8, classes=4, separation=1.0, seed=0)
    lrs = 2.0 ** np.arange(-10, -1)
    kw = dict(optimizer="adam", steps=100, batch_size=32)
    mp = mup.lr_sweep(lambda w, s: mup.mlp(8, [w, w], 4, optimizer="adam", seed=s), [32, 512], lrs, ds, **kw)
    sp = mup.lr_sweep(lambda w, s: labkit.models.mlp(8, [w, w], 4, seed=s), [32, 512], lrs, ds, **kw)
    moved = lambda r: abs(np.log2(r["best_lr"][-1] / r["best_lr"][0]))  # noqa: E731
    assert moved(mp) <= 1
    assert not moved(sp) <= 1
