"""Notebook 11's claims and their controls (seeded, test size): what a landscape picture can and cannot show."""

from __future__ import annotations

import pytest
import torch

import labkit
from labkit.landscape import Trajectory
from labkit.lessons import landscape as claims


def test_same_basin_sgd_and_gd_from_one_init_have_no_barrier():
    """Sagun et al. 2017: solutions from one initialisation lie in one basin (barrier <= 1% of the endpoint
    loss). The control starts GD from another initialisation: the line between the two solutions crosses a
    ridge (a permutation of hidden units apart), so the same check fails for the reason the claim is about."""
    same = claims.same_basin(300)
    assert same.holds(), same.relative
    other = claims.same_basin(300, different_init=True)
    assert not other.holds(), other.relative


def test_random_slices_understate_sharpness():
    """The top-eigenvector slice has curvature lambda_max, random unit slices average tr(H)/P. The control is
    a quadratic with an isotropic spectrum: there every direction is a top direction, so random slices do
    not understate anything and the check fails; the anisotropic quadratic (known spectrum 1/i) passes."""
    ds = claims.basin_data()
    model = labkit.models.mlp(8, [16], 4, activation="tanh", seed=0).double()
    labkit.train.fit(model, ds, lr=0.5, steps=300, progress=False)
    res = claims.slice_sharpness(model, ds, n_random=20)
    assert res.holds(), (res.top, res.lambda_max, res.random.mean(), res.mean_eigenvalue)
    assert abs(res.understatement / res.predicted - 1) < 0.25
    p = 100
    known = claims.slice_sharpness(*claims.quadratic(1 / torch.arange(1.0, p + 1)), n_random=20)
    assert known.holds() and abs(known.top - 1) < 1e-6
    flat = claims.slice_sharpness(*claims.quadratic(torch.ones(p)), n_random=20)
    assert not flat.holds() and abs(flat.understatement - 1) < 1e-6


def test_filter_normalisation_removes_the_rescaling_symmetry():
    """Li et al. 2018: layer 1 times alpha and layer 2 over alpha is the same ReLU network; the filter-normalised
    slice's curvature is unchanged. The control measures the raw (unnormalised) random slice: its curvature
    changes by a factor of order alpha^2 because the direction does not follow the rescaling."""
    ds = claims.basin_data()
    model = labkit.models.mlp(8, [16], 4, activation="relu", seed=0).double()
    labkit.train.fit(model, ds, lr=0.2, steps=200, progress=False)
    norm = claims.rescaling_curvature(model, ds, 4.0, normalise=True)
    assert norm.holds(), norm.ratio
    raw = claims.rescaling_curvature(model, ds, 4.0, normalise=False)
    assert not raw.holds(), raw.ratio
    assert raw.ratio > 4  # of order alpha^2 = 16: the readout's curvature scales with the hidden layer squared


def test_gd_trajectory_is_more_concentrated_than_a_random_walk():
    """Antognini & Sohl-Dickstein 2018: a random walk already puts 0.90 of its variance (about its end) in two
    components. Full-batch GD leaves less than half a random walk's unexplained variance; the control, a random
    walk with as many snapshots in as many dimensions, does not (it scores the walk's 0.90 by construction)."""
    ds = claims.basin_data()
    model = labkit.models.mlp(8, [16], 4, activation="tanh", seed=0).double()
    traj = Trajectory(every=10)
    labkit.train.fit(model, ds, lr=0.5, steps=500, callbacks=[traj], progress=False)
    gd = claims.pca_excess(traj)
    assert gd.holds(), gd.explained
    walks = [claims.pca_excess(claims.random_walk(len(traj) - 1, traj.snapshots.shape[1], seed=s)) for s in range(5)]
    assert not any(w.holds() for w in walks), [w.explained for w in walks]
    assert all(abs(w.explained - claims.RANDOM_WALK_TWO) < 0.05 for w in walks)


def test_width_scales_the_bulk_not_the_outliers():
    """Sagun et al. 2017: widening a trained network adds eigenvalues to the Hessian's bulk near zero
    (|lambda| < 1e-3 lambda_max: slower than 500 steps of GD at its largest stable step) while the outliers above
    the widest gap stay. The control sweeps the number of classes at one width instead: the outliers come from the
    class structure of the Gauss-Newton part (about one per class), so their count moves with the classes and the
    same check fails, for the outliers and not for the bulk."""
    widths = claims.bulk_and_outliers((8, 16, 32), 3, steps=1000, seed=0)
    assert widths.holds(), (widths.params, widths.near_zero, widths.outliers)
    by_class = claims.bulk_and_outliers(16, (2, 3, 4, 5), steps=1000, seed=0)
    assert not by_class.holds(), (by_class.params, by_class.near_zero, by_class.outliers)
    assert len(set(by_class.outliers)) > 1


def test_bulk_and_outliers_refuses_a_sweep_of_both_or_neither():
    for widths, classes in (((8, 16), (2, 3)), (8, 3), ((8, 8), 3)):
        with pytest.raises(ValueError, match=r"widths|classes"):
            claims.bulk_and_outliers(widths, classes, steps=1)
    with pytest.raises(TypeError, match="widths"):
        claims.bulk_and_outliers(8.5, (2, 3), steps=1)
