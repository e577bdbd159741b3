"""The regime map: each cell's numbers against single-model measurements, and its labels."""

import torch

import labkit
from labkit import linalg
from labkit.curvature import HessianOperator
from labkit.population.regime import LABELS, label, regime_map

DT = torch.float64


def _make(width, seed):
    return labkit.models.mlp(3, [width], 1, activation="tanh", parameterization="ntk", seed=seed).double()


def test_regime_map_numbers_match_single_models_and_label_the_regimes():
    ds = labkit.data.teacher_student(32, dim=3, teacher_width=4, seed=0).to(dtype=DT)
    lrs = [0.01, 3.0, 30.0]
    r = regime_map(_make, ds, [16, 1024], lrs, steps=40)
    # width 16, lr 3: the numbers of a cell equal a single fit of the same network measured by the single probes
    lam0 = float(linalg.top_eigenvalues(HessianOperator(_make(16, 0), "mse", ds), dense=False).values[0])
    cell = r.numbers[0][1]
    assert abs(cell["lr_sharpness"] - 3.0 * lam0) <= 1e-8 * 3.0 * lam0
    model = _make(16, 0)
    k0 = labkit.ntk.empirical(model, ds.inputs)
    snap = {}

    def last(info):
        snap["k"] = labkit.ntk.empirical(info.model, ds.inputs)

    labkit.train.fit(model, ds, lr=3.0, steps=40, callbacks=[last], progress=False)
    ref = float((snap["k"] - k0).norm() / k0.norm())
    assert abs(cell["kernel_change"] - ref) <= 1e-8 * ref
    # the labels: the lr above the limit that still trains catapults, the huge lr diverges, the tiny lr is lazy
    assert r.labels[0] == ["lazy", "catapult", "divergent"] and r.labels[1][0] == "lazy"
    assert r.numbers[1][0]["kernel_change"] < r.numbers[0][0]["kernel_change"] / 10  # wider: lazier
    assert all(lab in LABELS for row in r.labels for lab in row)
    assert r.to_dict()["labels"] == r.labels


def test_label_rules():
    assert label(True, 0.1, 0.0, 0.1) == "divergent"
    assert label(False, 0.1, 0.0, 0.1, loss_ratio=2.0) == "divergent"
    assert label(False, 3.0, 0.5, 0.1, loss_ratio=0.1) == "catapult"
    assert label(False, 0.5, 0.05, 0.1, loss_ratio=0.1) == "lazy"
    assert label(False, 0.5, 0.5, 0.1, loss_ratio=0.1) == "feature-learning"


def test_figure_draws_each_label_with_its_numbers_in_the_hover():
    from labkit.population.regime import RegimeMap

    cell = {"lr_sharpness": 3.0, "kernel_change": 0.4, "initial_loss": 1.0, "peak_loss": 9.0, "final_loss": 0.1,
            "diverged": False}
    m = RegimeMap([8, 16], [0.1, 1.0], [["lazy", "catapult"], ["feature-learning", "divergent"]], [[cell] * 2] * 2)
    heat = m.figure().data[0]
    assert [list(row) for row in heat.z] == [[2, 1], [3, 0]]
    assert "lr x lambda_0 = 3" in heat.text[0][1] and "peak 9" in heat.text[0][1] and "catapult" in heat.text[0][1]
    assert list(heat.colorbar.ticktext) == list(LABELS)


def test_regime_maps_over_seeds_equal_one_map_per_seed():
    """One population over (seed, lr) pairs gives, per seed, the map of that seed alone (float64, 1e-8)."""
    from labkit.population.regime import regime_maps

    ds = labkit.data.teacher_student(16, dim=3, teacher_width=4, seed=0).to(dtype=DT)
    lrs = [0.5, 5.0, 30.0]
    maps = regime_maps(_make, ds, [8, 32], lrs, seeds=[0, 1], steps=20)
    for s, m in zip([0, 1], maps):
        ref = regime_map(_make, ds, [8, 32], lrs, steps=20, seed=s)
        assert m.labels == ref.labels
        for row, ref_row in zip(m.numbers, ref.numbers):
            for c, r in zip(row, ref_row):
                for k in ("lr_sharpness", "kernel_change", "initial_loss", "final_loss"):
                    a, b = c[k], r[k]
                    assert (a != a and b != b) or abs(a - b) <= 1e-8 * max(abs(b), 1.0), (k, a, b)
    assert maps[0].numbers[0][0]["lr_sharpness"] != maps[1].numbers[0][0]["lr_sharpness"]   # seeds differ


def test_a_regime_map_saves_and_loads(tmp_path):
    """save/load round trip: labels and numbers back as written, a non-finite number back as NaN."""
    import math

    from labkit.population.regime import RegimeMap

    rm = RegimeMap([8, 16], [0.1], [["lazy"], ["divergent"]],
                   [[{"lr_sharpness": 0.5, "final_loss": 0.1}], [{"lr_sharpness": 9.0, "final_loss": math.inf}]])
    back = RegimeMap.load(rm.save(tmp_path / "map"))
    assert back.widths == [8, 16] and back.labels == rm.labels and back.lazy_below == rm.lazy_below
    assert back.numbers[0][0] == rm.numbers[0][0] and math.isnan(back.numbers[1][0]["final_loss"])
