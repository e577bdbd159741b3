"""Claims of 00_tour, each with its control (the curvature and fractal claims are in test_curvature / test_fractal)."""

import labkit


def test_panel_lr_5_blows_up_and_lr_01_trains():
    """The tour's panel: "try a learning rate of 5 or more and watch the loss blow up", at the fast (256) and full
    (512) data sizes (lr = 3 diverged on 256 examples but not on 512). Control: lr = 0.1 trains."""
    def run(lr, n):
        panel = labkit.widgets.train_panel(dataset="gaussian_mixture", width=32, depth=2, lr=lr, steps=300, n=n)
        return panel.run(wait=True, timeout=120)

    assert run(5.0, 256).diverged and run(5.0, 512).diverged
    control = run(0.1, 256)
    assert not control.diverged and control.final_loss < 0.5 * control.loss[0]


def test_fit_many_large_lr_diverges_small_lr_does_not():
    ds = labkit.data.two_moons(n=128, seed=0)
    lrs = [0.03, 300.0]
    hists = labkit.train.fit_many(lambda seed: labkit.models.mlp(2, [32], 2, seed=seed), ds,
                                  hparams={"lr": lrs, "seed": [0, 0]}, steps=40, progress=False)
    assert hists[1].diverged  # claim
    assert not hists[0].diverged  # control: the same check fails at a small learning rate
