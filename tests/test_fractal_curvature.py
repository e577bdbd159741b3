"""The curvature map of a trainability scan against dense references, and its place in scan()."""

import numpy as np
import pytest
import torch

from labkit import fractal
from labkit.fractal import curvature_map

DT = torch.float64
EXP = fractal.Experiment.preset("quick", width=6, n_points=8)  # P = 42: dense references are cheap


def test_loss_function_is_the_loss_the_scanner_descends():
    """One gradient step with per-layer rates on loss_function gives the scanner's normalised loss l1/l0."""
    exp = EXP.replace(steps=2, tail=1)
    lr_in, lr_out = 0.3, 2.0
    res = fractal.scan(exp, (lr_in, lr_in * 1.0001), (lr_out, lr_out * 1.0001), 2, progress=False)
    loss = curvature_map.loss_function(exp)
    w0, w1 = exp.init_weights()
    theta = torch.cat([w0.flatten(), w1.flatten()]).requires_grad_(True)
    l0 = loss(theta)
    g = torch.autograd.grad(l0, theta)[0]
    d = torch.cat([torch.full((w0.numel(),), lr_in, dtype=DT), torch.full((w1.numel(),), lr_out, dtype=DT)])
    l1 = loss(theta.detach() - d * g)
    assert res.converged[0, 0] and abs(-res.score[0, 0] - (1 + float(l1 / l0.detach()))) < 1e-12


def test_map_is_the_top_eigenvalue_of_the_preconditioned_hessian_per_cell():
    xr, yr = (1e-2, 1e3), (1e-2, 1e3)
    S = curvature_map.sharpness_map(EXP, xr, yr, (5, 4), progress=False, tol=1e-10)
    H = curvature_map.hessian(EXP)
    xs, ys = fractal.result.axis_values(xr, 5, True), fractal.result.axis_values(yr, 4, True)
    dh = EXP.width * EXP.input_dim
    for i, b in enumerate(ys):
        for j, a in enumerate(xs):
            s = torch.cat([torch.full((dh,), a, dtype=DT), torch.full((EXP.width,), b, dtype=DT)]).sqrt()
            ref = float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1])
            assert abs(S[i, j] - ref) <= 1e-8 * ref
    # offset axes: lr x lambda_max(H(offset))
    off = EXP.replace(axes=("offset", "lr"))
    So = curvature_map.sharpness_map(off, (-1.0, 1.0), (0.1, 10.0), 3, progress=False)
    ref = 10.0 * float(torch.linalg.eigvalsh(curvature_map.hessian(off, 1.0))[-1])
    assert abs(So[-1, -1] - ref) <= 1e-10 * ref


def test_tiles_of_whole_chunks_give_the_same_bits():
    xs = fractal.result.axis_values((1e-2, 1e3), 9, True)
    whole = curvature_map._tile(EXP, xs, xs, 0, 81, 20, 1e-6)
    parts = np.concatenate([curvature_map._tile(EXP, xs, xs, lo, hi, 20, 1e-6) for lo, hi in [(0, 40), (40, 81)]])
    assert np.array_equal(whole, parts)


def test_scan_measures_sharpness_saves_it_and_refuses_what_does_not_fit(tmp_path):
    res = fractal.scan(EXP, (1e-2, 1e3), (1e-2, 1e3), 6, progress=False, measure="sharpness")
    assert res.sharpness.shape == (6, 6)
    np.testing.assert_array_equal(res.sharpness,
                                  curvature_map.sharpness_map(EXP, (1e-2, 1e3), (1e-2, 1e3), 6, progress=False))
    back = fractal.ScanResult.load(res.save(tmp_path / "scan"))
    np.testing.assert_array_equal(back.sharpness, res.sharpness)
    assert fractal.ScanResult.load(fractal.scan(EXP, resolution=4, progress=False).save(tmp_path / "s")).sharpness \
        is None
    with pytest.raises(ValueError, match="measure"):
        fractal.scan(EXP, resolution=4, progress=False, measure="ntk")
    with pytest.raises(ValueError, match="max_memory"):
        fractal.scan(EXP, resolution=64, progress=False, measure="sharpness", max_memory=60_000)
    with pytest.raises(ValueError, match="max_memory"):
        curvature_map.sharpness_map(EXP, resolution=64, progress=False, max_memory=30_000)


def test_band_check_counts_boundary_cells():
    c = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    s = np.array([[0.5, 3.0, 20.0], [1.0, 2.5, 100.0]])
    out = curvature_map.band_check(c, s)
    assert curvature_map.boundary_cells(c).tolist() == [[False, True, True], [True, True, False]]
    assert out["in_band"] == 0.5 and out["below"] == 1.0 and out["far_above"] == 1.0 and out["n_boundary"] == 4


# ------------------------------------------------------------------------------------ the map after t steps
@pytest.mark.parametrize("batch_size", [None, 3])
def test_trained_parameters_follow_the_scanners_dynamics(batch_size):
    """The scanner's score of a converged cell is -sum_t l_t / l0 over its steps: trained_parameters after 0..T-1
    steps (full batch and mini-batch) must give the same losses, i.e. the same trajectory."""
    exp = EXP.replace(steps=6, tail=1, batch_size=batch_size)
    lr_in, lr_out = 0.5, 3.0
    res = fractal.scan(exp, (lr_in, lr_in * 1.0001), (lr_out, lr_out * 1.0001), 2, progress=False)
    loss = curvature_map.loss_function(exp)
    l = [float(loss(curvature_map.trained_parameters(exp, [lr_in], [lr_out], step=t)[0])) for t in range(6)]
    assert res.converged[0, 0] and abs(-res.score[0, 0] - sum(v / l[0] for v in l)) < 1e-10


def test_map_after_t_steps_is_the_per_cell_preconditioned_hessian():
    xr, yr, step = (1e-2, 30.0), (1e-1, 300.0), 5  # parameters stay moderate: both derivative paths are exact
    S = curvature_map.sharpness_map(EXP, xr, yr, (3, 3), progress=False, tol=1e-10, step=step)
    xs, ys = fractal.result.axis_values(xr, 3, True), fractal.result.axis_values(yr, 3, True)
    dh, loss = EXP.width * EXP.input_dim, curvature_map.loss_function(EXP)
    for i, b in enumerate(ys):
        for j, a in enumerate(xs):
            theta = curvature_map.trained_parameters(EXP, [a], [b], step=step)[0]
            H = torch.autograd.functional.hessian(loss, theta)
            s = torch.cat([torch.full((dh,), a, dtype=DT), torch.full((EXP.width,), b, dtype=DT)]).sqrt()
            ref = float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1])
            assert abs(S[i, j] - ref) <= 1e-8 * abs(ref)
    assert np.isfinite(S).all()
    linear = EXP.replace(nonlinearity="identity")  # a quartic loss: huge steps overflow within a few
    far = curvature_map.sharpness_map(linear, (1e5, 1e6), (1e5, 1e6), (2, 2), progress=False, step=10)
    assert np.isnan(far).all()  # diverged by step t: undefined, said so (not a crash, not a number)
    # offset axes after t steps: lr_in = lr_out = lr, offset on every input weight
    off = curvature_map.sharpness_map(EXP, (-0.5, 0.5), (0.1, 1.0), (2, 2), axes=("offset", "lr"),
                                      progress=False, tol=1e-10, step=3)
    theta = curvature_map.trained_parameters(EXP, [1.0], [1.0], [0.5], step=3)[0]
    ref = float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta))[-1])
    assert abs(off[1, 1] - ref) <= 1e-8 * abs(ref)


def test_step_is_checked():
    with pytest.raises(ValueError, match="step"):
        curvature_map.sharpness_map(EXP, resolution=2, step=EXP.steps, progress=False)
    with pytest.raises(ValueError, match="offset_every_step"):
        curvature_map.sharpness_map(EXP.replace(offset_every_step=True), (-1, 1), (0.1, 1), 2,
                                    axes=("offset", "lr"), step=1, progress=False)
