"""Claims of 00_tour, each with its control (the curvature and fractal claims are in test_curvature / test_fractal)."""

import labkit
from labkit.lessons import edge as lesson


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


def test_sgd_cannot_stay_where_the_sharpness_exceeds_2_over_lr():
    """Wu, Ma & E 2018: mini-batch SGD also needs lambda_max <= 2/lr (the tour used to say no threshold applies).

    From a GD-trained point of sharpness S0, SGD (batch 16) at 1.5 x 2/S0 leaves it: the sharpness falls > 10%.
    Control: at 0.5 x 2/S0 the point is stable for SGD and its sharpness stays, so the same check fails because the
    sharpness is below 2/lr, the threshold the claim is about.
    """
    assert lesson.sgd_leaves_sharp_region(1.5, seed=0)["holds"]
    assert not lesson.sgd_leaves_sharp_region(0.5, seed=0)["holds"]


def test_full_batch_gd_stops_at_2_over_lr_and_half_the_lr_does_not():
    """Cohen et al.: the sharpness climbs to 2/lr and stops there (median of the last third within 10% and no longer
    rising). Control: lr/2 on the same network, judged against the same 40; its sharpness passes through 40 while
    still climbing, so it fails because 40 is not its threshold (a control at lr/20 would fail trivially, 800 being
    out of reach)."""
    probe = lesson.demo_run("sgd", 0.05, 800, 8)[0].array("sharpness")
    assert probe[0] < 0.7 * 40 and labkit.edge.hovers(probe, 40.0)
    control = lesson.demo_run("sgd", 0.025, 800, 8)[0].array("sharpness")
    assert not labkit.edge.hovers(control, 40.0)
