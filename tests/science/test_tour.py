"""Claims of 00_tour, each with its control (the curvature and fractal claims are in test_curvature / test_fractal)."""

import labkit


def test_panel_lr_3_blows_up_and_lr_01_trains():
    """The tour's panel: "try a learning rate of 3 or more and watch the loss blow up". Control: lr = 0.1."""
    results = {}
    for lr in (3.0, 0.1):
        panel = labkit.widgets.train_panel(dataset="gaussian_mixture", width=32, depth=2, lr=lr, steps=300, n=256)
        results[lr] = panel.run(wait=True, timeout=120)
    assert results[3.0].diverged
    assert not results[0.1].diverged and results[0.1].final_loss < 0.5 * results[0.1].loss[0]


def test_fit_many_large_lr_diverges_small_lr_does_not():
    ds = labkit.data.two_moons(n=128, seed=0)
    lrs = [0.03, 300.0]
    hists = labkit.train.fit_many(lambda seed: labkit.models.mlp(2, [32], 2, seed=seed), ds,
                                  hparams={"lr": lrs, "seed": [0, 0]}, steps=40, progress=False)
    assert hists[1].diverged  # claim
    assert not hists[0].diverged  # control: the same check fails at a small learning rate
