"""labkit.landscape against plain references: a loop of functional calls (float64, 1e-10), filter normalisation
by hand, the PCA plane against numpy's SVD, and clear errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import labkit
from labkit import landscape
from labkit.models import ParamSpec, call, mlp, param_dict

TOL = 1e-10


def _loop(model, x, y, loss, points):
    """The reference: one functional call per point, loss computed by hand."""
    spec = ParamSpec.of(model)
    out = []
    for p in points:
        f = call(model, spec.unflatten(p), x)
        if loss == "mse":
            out.append(float(((f - y) ** 2).sum(1).mean()))
        else:
            out.append(float((torch.logsumexp(f, 1) - f.gather(1, y[:, None])[:, 0]).mean()))
    return np.array(out)


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (23,), generator=g)
    return mlp(3, [6, 5], 4, activation="tanh", seed=1).double(), x, y


@pytest.mark.parametrize("arch", ["mlp", "resmlp", "first_frozen"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_plane_matches_a_loop_of_functional_calls(arch, loss):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(17, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (17,), generator=g) if loss == "cross_entropy" else torch.randn(17, 2, generator=g,
                                                                                          dtype=torch.float64)
    model = (mlp(3, [5], 2, seed=0) if arch != "resmlp" else labkit.models.resmlp(3, 4, 2, 2, seed=0)).double()
    if arch == "first_frozen":  # the first layer is not part of theta: the general (vmap) path
        model[0].weight.requires_grad_(False)
    d = landscape.random_directions(model, 2, seed=5)
    pl = landscape.plane(model, (x, y), d, loss=loss, resolution=(7, 5), x_range=(-1, 2), y_range=(-0.5, 0.5),
                         progress=False, batch_size=6)
    theta = ParamSpec.of(model).flatten(param_dict(model))
    a, b = np.meshgrid(pl.x, pl.y)
    pts = [theta + float(u) * d[0] + float(v) * d[1] for u, v in zip(a.ravel(), b.ravel())]
    ref = _loop(model, x, y, loss, pts).reshape(5, 7)
    np.testing.assert_allclose(pl.values, ref, rtol=0, atol=TOL)


def _grid_vs_loop(model, x, y, loss, span=1.0, resolution=(6, 5), **kw):
    """A plane's values and the loop's at the same points (random directions, ``(-span, span)`` both ways)."""
    d = landscape.random_directions(model, 2, seed=7)
    pl = landscape.plane(model, (x, y), d, loss=loss, resolution=resolution, x_range=(-span, span),
                         y_range=(-span / 2, span), progress=False, **kw)
    theta = ParamSpec.of(model).flatten(param_dict(model))
    a, b = np.meshgrid(pl.x, pl.y)
    pts = [theta + float(u) * d[0] + float(v) * d[1] for u, v in zip(a.ravel(), b.ravel())]
    return pl.values, _loop(model, x, y, loss, pts).reshape(pl.values.shape)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "softplus", "erf", "sigmoid", "identity"])
@pytest.mark.parametrize("parameterization", ["standard", "ntk", "mean_field"])
def test_fused_mlp_path_matches_the_loop(activation, parameterization, monkeypatch):
    """``labkit.models.mlp`` networks take the fused evaluator (in-place activations, multipliers folded into the
    per-point weights, features-major arrays): every activation, weight_mult / bias_mult, both losses, uneven
    batches cut into blocks of 4 examples, chunks of 4 points."""
    from labkit.landscape import surface

    monkeypatch.setattr(surface, "_FUSED_BLOCK", 4)  # batches of 5 examples: blocks of 4 and 1

    g = torch.Generator().manual_seed(11)
    x = torch.randn(19, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (19,), generator=g)
    targets = torch.randn(19, 4, generator=g, dtype=torch.float64)
    model = mlp(3, [6, 5], 4, activation=activation, parameterization=parameterization, seed=2).double()
    if parameterization != "standard":
        assert any(m.weight_mult != 1.0 for m in model if hasattr(m, "weight_mult"))
    risk = surface._risk(model, "cross_entropy", (x, labels), 5)
    theta = ParamSpec.of(model).flatten(param_dict(model))
    assert type(surface._evaluator(risk, theta, theta[None])) is surface._DenseEvaluator
    for loss, y in (("cross_entropy", labels), ("mse", targets)):
        got, ref = _grid_vs_loop(model, x, y, loss, batch_size=5, chunk_size=4)
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("kind", ["no_bias", "linear", "callable_loss", "float32"])
def test_fused_mlp_path_edge_cases(kind):
    """No biases; a single Dense layer (nothing after the first layer); a user's loss callable (the fused
    forward pass, the general loss); float32 (to float32 rounding)."""
    from labkit.landscape import surface

    g = torch.Generator().manual_seed(5)
    x = torch.randn(13, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (13,), generator=g)
    widths = [] if kind == "linear" else [7]
    model = mlp(3, widths, 3, bias=kind != "no_bias", seed=0).double()
    loss = "cross_entropy"
    if kind == "callable_loss":
        def loss(out, target):  # mean cross-entropy plus a tenth of the mean squared logit
            return torch.nn.functional.cross_entropy(out, target) + 0.1 * (out**2).mean()
    atol = TOL
    if kind == "float32":
        model, x, atol = model.float(), x.float(), 1e-5
    risk = surface._risk(model, loss, (x, y), None)
    theta = ParamSpec.of(model).flatten(param_dict(model))
    assert type(surface._evaluator(risk, theta, theta[None])) is surface._DenseEvaluator
    d = landscape.random_directions(model, 2, seed=3)
    pl = landscape.plane(model, (x, y), d, loss=loss, resolution=4, progress=False)
    a, b = np.meshgrid(pl.x, pl.y)
    ref = []
    for u, v in zip(a.ravel(), b.ravel()):
        f = call(model, ParamSpec.of(model).unflatten(theta + float(u) * d[0] + float(v) * d[1]), x)
        ref.append(float(loss(f, y)) if callable(loss) else float(torch.nn.functional.cross_entropy(f, y)))
    np.testing.assert_allclose(pl.values.ravel(), ref, rtol=0, atol=atol)


@pytest.mark.parametrize("arch", ["resmlp", "first_frozen", "linear_modules", "layer_norm"])
def test_other_networks_take_the_vmap_path(arch):
    """Anything but a plain ``labkit.models.mlp`` with every parameter on the grid falls back to vmap, and is
    still exact."""
    from labkit.landscape import surface

    g = torch.Generator().manual_seed(2)
    x = torch.randn(15, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (15,), generator=g)
    if arch == "resmlp":
        model = labkit.models.resmlp(3, 4, 2, 2, seed=0)
    elif arch == "linear_modules":  # torch's own layers: not labkit.models.Dense
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    elif arch == "layer_norm":
        model = mlp(3, [5], 2, norm="layer", seed=0)
    else:
        model = mlp(3, [5], 2, seed=0)
        model[0].bias.requires_grad_(False)
    model = model.double()
    risk = surface._risk(model, "auto", (x, y), None)
    theta = risk.spec.flatten(risk.params)
    assert type(surface._evaluator(risk, theta, theta[None])) is surface._Evaluator
    got, ref = _grid_vs_loop(model, x, y, "cross_entropy")
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)


def test_cross_entropy_past_exp_overflow_is_exact():
    """The max-free cross-entropy overflows where a logit is ~709 above the target's (float64): those examples
    are redone with logsumexp, so a far corner of a plane keeps its exact (huge, finite) loss."""
    from labkit.landscape import surface

    logits = torch.tensor([[[1000.0, 0.0, -3.0], [0.5, 0.25, 2.0]]], dtype=torch.float64)  # (m=1, n=2, C=3)
    y = torch.tensor([1, 2])
    want = torch.nn.functional.cross_entropy(logits[0], y)
    for dim, t in ((2, logits), (1, logits.transpose(1, 2).contiguous())):
        got = surface._mean_cross_entropy(t, y, dim)
        assert abs(float(got[0]) - float(want)) < 1e-12 and float(got[0]) > 499
    g = torch.Generator().manual_seed(0)
    x = 30 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (9,), generator=g)
    model = mlp(3, [6], 4, seed=1).double()
    got, ref = _grid_vs_loop(model, x, labels, "cross_entropy", span=40.0)
    assert ref.max() > 800  # some points overflow exp(o_j - o_y) in float64
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=TOL)


def test_interpolate_matches_the_loop_and_the_barrier_definition(problem):
    model, x, y = problem
    other = mlp(3, [6, 5], 4, activation="tanh", seed=2).double()
    line = landscape.interpolate(model, (x, y), model, other, resolution=9, t_range=(-0.5, 1.5))
    a, b = (ParamSpec.of(m).flatten(param_dict(m)) for m in (model, other))
    ref = _loop(model, x, y, "ce", [a + float(t) * (b - a) for t in line.t])
    np.testing.assert_allclose(line.values, ref, rtol=0, atol=TOL)
    inside = (line.t >= 0) & (line.t <= 1)
    chord = (1 - line.t) * ref[2] + line.t * ref[6]  # t = 0 and t = 1 are grid points 2 and 6
    assert line.barrier == pytest.approx(max(0.0, (ref - chord)[inside].max()), abs=TOL)


def test_tiles_of_a_grid_equal_the_in_process_grid(problem):
    """What a Dask worker runs (one tile, the same chunks) gives the in-process values."""
    from labkit.landscape import surface

    model, x, y = problem
    one = landscape.plane(model, (x, y), "filter", resolution=6, progress=False, seed=1)
    d = landscape.filter_normalize(landscape.random_directions(model, 2, seed=1), model)
    a, b = np.meshgrid(one.x, one.y)
    coords = np.stack([a.ravel(), b.ravel()], 1)
    risk = surface._risk(model, "auto", (x, y), None)
    theta = ParamSpec.of(model).flatten(param_dict(model))
    tiles = [surface._tile(risk, theta, d, coords[lo:lo + 10], 4) for lo in range(0, 36, 10)]
    np.testing.assert_allclose(np.concatenate(tiles).reshape(6, 6), one.values, rtol=0, atol=TOL)


def test_executor_local_cluster_equals_in_process(problem):
    pytest.importorskip("distributed")
    model, x, y = problem
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        tiled = landscape.plane(model, (x, y), "filter", resolution=6, progress=False, seed=1, executor=client,
                                tile_size=10)
    one = landscape.plane(model, (x, y), "filter", resolution=6, progress=False, seed=1)
    np.testing.assert_allclose(tiled.values, one.values, rtol=0, atol=TOL)


def test_filter_normalisation_by_hand():
    model = mlp(2, [3], 2, seed=0).double()
    p = param_dict(model)
    d = landscape.random_directions(model, 1, seed=4)[0]
    got = ParamSpec.of(model).unflatten(landscape.filter_normalize(d, model))
    raw = ParamSpec.of(model).unflatten(d)
    for name in ("0.weight", "2.weight"):
        for i in range(p[name].shape[0]):
            row = raw[name][i]
            want = row / torch.sqrt((row**2).sum()) * torch.sqrt((p[name][i] ** 2).sum())
            torch.testing.assert_close(got[name][i], want, rtol=0, atol=1e-14)
    for name in ("0.bias", "2.bias"):
        assert torch.equal(got[name], torch.zeros_like(got[name]))


def test_filter_normalised_plane_is_invariant_to_relu_rescaling(problem):
    """ReLU is positively homogeneous: layer 1 times 4 and layer 2 over 4 is the same function, and the
    filter-normalised directions move with the rescaling, so the plane is the same (a random one is not)."""
    _, x, y = problem
    model = mlp(3, [6], 4, seed=1).double()
    scaled = mlp(3, [6], 4, seed=1).double()
    with torch.no_grad():
        scaled[0].weight.mul_(4), scaled[0].bias.mul_(4), scaled[2].weight.div_(4)
    a = landscape.plane(model, (x, y), "filter", resolution=5, seed=0, progress=False)
    b = landscape.plane(scaled, (x, y), "filter", resolution=5, seed=0, progress=False)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12)
    r1 = landscape.plane(model, (x, y), "random", resolution=5, seed=0, progress=False)
    r2 = landscape.plane(scaled, (x, y), "random", resolution=5, seed=0, progress=False)
    assert np.abs(r1.values - r2.values).max() > 1e-3


def test_pca_against_numpy_svd():
    g = torch.Generator().manual_seed(0)
    snaps = torch.cumsum(torch.randn(12, 30, generator=g, dtype=torch.float64), 0)
    pca = landscape.pca_directions(snaps, k=2)
    centred = (snaps - snaps[-1]).numpy()
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(pca.explained, s[:2] ** 2 / (s**2).sum(), rtol=1e-12)
    for i in range(2):  # same directions up to sign; coordinates are the projections
        assert abs(abs(float(pca.directions[i].numpy() @ vt[i])) - 1) < 1e-12
        np.testing.assert_allclose(pca.coords[:, i], centred @ pca.directions[i].numpy(), atol=1e-12)
    assert (pca.coords[0] >= 0).all()


def test_trajectory_recorder_and_pca_plane(problem):
    model, x, y = problem
    traj = landscape.Trajectory(every=2, max_snapshots=8)
    labkit.train.fit(model, (x, y), steps=40, lr=0.5, callbacks=[traj], progress=False)
    assert len(traj) <= 8 and traj.steps[0] == 0 and traj.steps[-1] == 40
    assert all(s % traj.every == 0 for s in traj.steps) and traj.every == 8
    final = ParamSpec.of(model).flatten(param_dict(model))
    assert torch.equal(traj.snapshots[-1], final)
    pl = landscape.plane(model, (x, y), traj, resolution=5, progress=False)
    assert pl.kind == "pca" and pl.path.shape == (len(traj), 2) and pl.path_steps == traj.steps
    np.testing.assert_allclose(pl.path[-1], 0, atol=1e-12)  # the plane is centred on the final point
    assert 0 < sum(pl.explained) <= 1 + 1e-12


def test_path_projection_on_a_custom_plane(problem):
    model, x, y = problem
    theta = ParamSpec.of(model).flatten(param_dict(model))
    d = landscape.random_directions(model, 2, seed=0)
    coords = torch.tensor([[0.5, -1.0], [2.0, 0.25], [0.0, 0.0]], dtype=torch.float64)
    pl = landscape.plane(model, (x, y), d, path=theta + coords @ d, resolution=3, progress=False)
    np.testing.assert_allclose(pl.path, coords.numpy(), atol=1e-10)


def test_hessian_plane_uses_the_top_eigenvectors(problem):
    model, x, y = problem
    pl = landscape.plane(model, (x, y), "hessian", resolution=3, progress=False)
    H = labkit.hessian.dense(model, "auto", (x, y))
    top = torch.linalg.eigvalsh(H).flip(0)[:2]
    np.testing.assert_allclose(pl.eigenvalues, top.numpy(), rtol=1e-8)


def test_save_load_and_to_dict(tmp_path, problem):
    import json

    model, x, y = problem
    traj = landscape.Trajectory(every=5)
    labkit.train.fit(model, (x, y), steps=20, lr=0.5, callbacks=[traj], progress=False)
    pl = landscape.plane(model, (x, y), traj, resolution=4, progress=False)
    path = pl.save(tmp_path / "plane.v1")
    assert path.name == "plane.v1.npz"
    back = landscape.Plane.load(path)
    np.testing.assert_array_equal(back.values, pl.values)
    np.testing.assert_array_equal(back.path, pl.path)
    assert back.explained == pl.explained and back.kind == "pca"
    json.dumps(pl.to_dict())
    line = landscape.interpolate(model, (x, y), traj.snapshots[0], traj.snapshots[-1], resolution=5)
    assert np.array_equal(landscape.Line.load(line.save(tmp_path / "line")).values, line.values)
    with pytest.raises(ValueError, match="holds a Line"):
        landscape.Plane.load(tmp_path / "line.npz")
    assert len(pl.figure().data) >= 4 and len(line.figure().data) == 2


# ---------------------------------------------------------------- bad inputs


def test_bad_directions(problem):
    model, x, y = problem
    P = ParamSpec.of(model).numel
    with pytest.raises(ValueError, match=rf"shape \(k, {P}\)"):
        landscape.plane(model, (x, y), torch.randn(2, P + 1, dtype=torch.float64), progress=False)
    with pytest.raises(TypeError, match=r"float32 but the model's parameters are torch\.float64"):
        landscape.plane(model, (x, y), torch.randn(2, P), progress=False)
    with pytest.raises(TypeError, match="floating point"):
        landscape.plane(model, (x, y), torch.ones(2, P, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match=r"direction\(s\) \[1\] are zero"):
        landscape.plane(model, (x, y), torch.stack([torch.ones(P), torch.zeros(P)]).double(), progress=False)
    with pytest.raises(ValueError, match="exactly 2 directions"):
        landscape.plane(model, (x, y), torch.ones(3, P, dtype=torch.float64), progress=False)
    with pytest.raises(ValueError, match="same point"):
        landscape.interpolate(model, (x, y), model, model)
    with pytest.raises(ValueError, match="zero vectors"):  # a bias-only direction normalises to zero
        d = torch.zeros(P, dtype=torch.float64)
        d[ParamSpec.of(model).sizes[0]] = 1.0  # the first bias entry
        landscape.plane(model, (x, y), torch.stack([landscape.filter_normalize(d, model)] * 2), progress=False)


def test_short_trajectory_and_bad_snapshots():
    with pytest.raises(ValueError, match="at least 3 snapshots, got 2"):
        landscape.pca_directions(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(T, P\)"):
        landscape.pca_directions(torch.randn(5))
    with pytest.raises(ValueError, match="never moves"):
        landscape.pca_directions(torch.ones(4, 5, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="no snapshots yet"):
        _ = landscape.Trajectory().snapshots


def test_grid_over_max_memory_is_refused_naming_what_fits(problem):
    import re

    model, x, y = problem
    need = landscape.estimate_memory(model, (x, y), 41 * 41)
    assert need["total"] == need["result"] + need["fixed"] + need["per_point"]
    budget = need["fixed"] + need["per_point"] + 8 * 30 * 30 + 50  # room for a 30x30 grid's values, not 31x31
    with pytest.raises(ValueError, match=r"a 201x201 grid needs .* at most 30x30 points fit") as err:
        landscape.plane(model, (x, y), "random", resolution=201, max_memory=budget, progress=False)
    side = int(re.search(r"at most (\d+)x", str(err.value)).group(1))
    landscape.plane(model, (x, y), "random", resolution=side, max_memory=budget, progress=False)  # it does fit
    with pytest.raises(ValueError, match="at most 30x30"):
        landscape.plane(model, (x, y), "random", resolution=side + 1, max_memory=budget, progress=False)
    with pytest.raises(ValueError, match="no grid fits"):
        landscape.plane(model, (x, y), "random", resolution=5, max_memory=1000, progress=False)
    with pytest.raises(TypeError, match="max_memory must be an int"):
        landscape.plane(model, (x, y), "random", resolution=5, max_memory=1.5, progress=False)


def test_bad_ranges_and_names(problem):
    model, x, y = problem
    with pytest.raises(ValueError, match="directions='pca' is not supported"):
        landscape.plane(model, (x, y), "pca", progress=False)
    with pytest.raises(ValueError, match="low < high"):
        landscape.plane(model, (x, y), "random", x_range=(1, -1), progress=False)
    with pytest.raises(ValueError, match="shape \\(n, 2\\)"):
        landscape.evaluate(model, (x, y), model, landscape.random_directions(model, 2), np.zeros((3, 3)))
    with pytest.raises(TypeError, match="model must be"):
        landscape.plane("net", (x, y), progress=False)


def test_live_explorer_headless():
    """The widget trains in its thread, the path grows, the slider and a click evaluate without a browser."""
    from labkit.widgets import landscape_explorer

    ds = labkit.data.gaussian_mixture(n=64, dim=4, classes=3, seed=0)
    ex = landscape_explorer(lambda: mlp(4, [8], 3, activation="tanh", seed=0), ds, steps=40, lr=0.5, every=5,
                            resolution=9)
    ex.run()
    hist = ex.wait(120)
    assert hist.steps == 40 and len(ex.path) == 9 and ex.step.max == 8
    assert "PCA plane" in ex.fig.layout.title.text and ex.plane.kind == "pca"
    ex.step.value = 2
    assert ex.info.value.startswith("step 10:")
    value = ex.probe(0.0, 0.0)
    np.testing.assert_allclose(value, ex.plane.values[4, 4], rtol=1e-5)  # the grid's centre is the origin

    class Click:
        xs, ys = [1e9], [0.0]

    ex._on_click(Click)  # an absurd point evaluates (divergence is data), never raises
    assert len(ex.probes) == 2
