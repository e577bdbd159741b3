"""labkit.hessian against dense float64 Hessians from torch.func.hessian."""

import functools
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, hessian, jacrev

import labkit
from labkit import edge
from labkit import hessian as Hs
from labkit import linalg as L

DT = torch.float64


@functools.lru_cache
def _problem(loss="cross_entropy", n=48, classes=3, seed=0):
    ds = labkit.data.gaussian_mixture(n, dim=3, classes=classes, seed=seed).to(dtype=DT)
    model = labkit.models.mlp(3, [8], classes, activation="tanh", seed=seed).double()
    data = ds if loss == "cross_entropy" else (ds.inputs, F.one_hot(ds.targets, classes).to(DT))
    return model, data


def _xy(data):
    return (data.inputs, data.targets) if isinstance(data, labkit.data.Dataset) else data


def _dense_reference(model, loss, data):
    """Dense Hessian of the mean loss, written from scratch with torch.func.hessian on the parameter dict."""
    x, y = _xy(data)
    params = {k: v.detach() for k, v in model.named_parameters()}
    lossf = labkit.losses.resolve(loss)
    H = hessian(lambda p: lossf(functional_call(model, p, (x,)), y))(params)
    names = list(params)
    rows = [torch.cat([H[a][b].reshape(params[a].numel(), params[b].numel()) for b in names], 1) for a in names]
    return torch.cat(rows, 0)


def _gauss_newton_reference(model, loss, data):
    """G = J^T H_out J with J from jacrev and H_out from torch.func.hessian in output space."""
    x, y = _xy(data)
    params = {k: v.detach() for k, v in model.named_parameters()}
    spec = labkit.models.ParamSpec.of(params)
    vec = spec.flatten(params)
    out = functional_call(model, params, (x,))
    J = jacrev(lambda v: functional_call(model, spec.unflatten(v), (x,)))(vec).reshape(out.numel(), -1)
    lossf = labkit.losses.resolve(loss)
    Hout = hessian(lambda o: lossf(o.reshape(out.shape), y))(out.reshape(-1))
    return J.T @ Hout @ J


def _residual_reference(model, loss, data):
    """R = sum_i sum_o (dL/df_io) d^2 f_io / dtheta^2, with dL/df held fixed."""
    x, y = _xy(data)
    params = {k: v.detach() for k, v in model.named_parameters()}
    spec = labkit.models.ParamSpec.of(params)
    lossf = labkit.losses.resolve(loss)
    out = functional_call(model, params, (x,))
    dLdf = torch.func.grad(lambda o: lossf(o, y))(out).detach()
    return hessian(lambda v: (dLdf * functional_call(model, spec.unflatten(v), (x,))).sum())(spec.flatten(params))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_hvp_matches_dense_hessian(loss):
    model, data = _problem(loss)
    H = _dense_reference(model, loss, data)
    op = Hs.HessianOperator(model, loss, data)
    V = torch.randn(op.size, 5, dtype=DT, generator=torch.Generator().manual_seed(0))
    assert _rel(op @ V[:, 0], H @ V[:, 0]) < 1e-10
    assert _rel(op @ V, H @ V) < 1e-10
    assert _rel(Hs.dense(model, loss, data), H) < 1e-10


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_hessian_is_gauss_newton_plus_residual(loss):
    model, data = _problem(loss)
    H, G, R = (_dense_reference(model, loss, data), _gauss_newton_reference(model, loss, data),
               _residual_reference(model, loss, data))
    assert _rel(G + R, H) < 1e-10
    Gop = L.to_dense(Hs.GaussNewtonOperator(model, loss, data))
    Rop = L.to_dense(Hs.residual_operator(model, loss, data))
    assert _rel(Gop, G) < 1e-10
    assert _rel(Rop, R) < 1e-10
    assert torch.linalg.eigvalsh((Gop + Gop.T) / 2).min() >= -1e-12 * torch.linalg.eigvalsh(Gop).max()


def test_params_subset_is_the_block():
    model, data = _problem()
    H = _dense_reference(model, "cross_entropy", data)
    names = [n for n, _ in model.named_parameters()]
    spec = labkit.models.ParamSpec.of(model)
    lo = sum(spec.sizes[:2])
    op = Hs.HessianOperator(model, "cross_entropy", data, params=names[2:])
    assert op.size == spec.numel - lo
    assert _rel(L.to_dense(op), H[lo:, lo:]) < 1e-10


def test_unequal_batches_give_the_same_operator():
    model, ds = _problem()
    cuts = [0, 5, 6, 30, 48]  # batches of 5, 1, 24 and 18 rows
    pieces = [(ds.inputs[a:b], ds.targets[a:b]) for a, b in itertools.pairwise(cuts)]
    one = Hs.HessianOperator(model, "cross_entropy", ds)
    V = torch.randn(one.size, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    for other in (Hs.HessianOperator(model, "cross_entropy", pieces),
                  Hs.HessianOperator(model, "cross_entropy", ds, batch_size=7),
                  Hs.GaussNewtonOperator(model, "cross_entropy", pieces) + Hs.residual_operator(model, "cross_entropy",
                                                                                                ds, batch_size=11)):
        assert _rel(other @ V, one @ V) < 1e-12
    assert Hs.HessianOperator(model, "cross_entropy", pieces).value() == pytest.approx(
        float(labkit.losses.resolve("cross_entropy")(model(ds.inputs), ds.targets).detach()), rel=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_top_eigenvalues_match_eigvalsh(loss):
    model, data = _problem(loss)
    evals, evecs = torch.linalg.eigh(_dense_reference(model, loss, data))
    k = 5
    res = Hs.top_eigenvalues(model, loss, data, k=k, tol=1e-8)
    lz = L.top_eigenvalues(Hs.HessianOperator(model, loss, data), k=k, tol=1e-8, dense=False)
    ref = evals.flip(0)[:k]
    for r in (res, lz):
        assert ((r.values - ref).abs() / ref.abs()).max() < 1e-8
    gaps = (evals.flip(0)[: k + 1].diff().abs() / ref[0]).min()
    if gaps > 1e-3:
        cos = (lz.vectors * evecs.flip(1)[:, :k]).sum(0).abs()
        assert (cos >= 1 - 1e-6).all()


def test_trace_and_density_of_the_hessian():
    model, data = _problem()
    H = _dense_reference(model, "cross_entropy", data)
    est = Hs.trace(model, "cross_entropy", data, n_matvec=60, seed=0)
    assert abs(est.value - float(torch.trace(H))) < 4 * est.stderr + 1e-12
    d = Hs.spectral_density(model, "cross_entropy", data, lanczos_steps=20, n_probes=3)
    assert d.nodes.min() >= torch.linalg.eigvalsh(H).min() - 1e-9
    assert d.figure() is not None


@pytest.mark.parametrize("classes", range(3, 9))
def test_outlier_count_follows_classes(classes):
    """Cross-entropy: k - 1 outliers (softmax ignores a shift of all logits); MSE: k. Same for H and G."""
    for loss, expected in (("cross_entropy", classes - 1), ("mse", classes)):
        for matrix in ("hessian", "gauss_newton"):
            values, count = Hs.class_outliers(classes, loss, matrix)
            assert count == expected, (loss, matrix, values[: classes + 2])
            assert values[count - 1] > 1.1 * values[count]  # the widest gap at the top of the spectrum


def test_sharpness_callback_tracks_lambda_max():
    ds = labkit.data.teacher_student(64, dim=3, teacher_width=8, seed=0).to(dtype=DT)
    model = labkit.models.mlp(3, [8], 1, activation="tanh", seed=0).double()
    sharp = edge.EdgeOfStability(every=5, k=2)
    labkit.train.fit(model, ds, loss="mse", lr=0.05, steps=11, callbacks=[sharp], progress=False)
    assert sharp.steps == [0, 5, 10] and sharp.series("threshold") == pytest.approx([40.0] * 3)
    ref = torch.linalg.eigvalsh(Hs.dense(model, "mse", ds)).flip(0)  # model now holds theta_11; compare a fresh one
    assert len(sharp.series("values")[-1]) == 2 and ref[0] > 0
    probe = edge.EdgeOfStability(every=1)
    labkit.train.fit(model, ds, loss="mse", lr=0.05, steps=1, callbacks=[probe], progress=False)
    assert probe.series("sharpness")[0] == pytest.approx(float(ref[0]), rel=1e-6)
    assert edge.threshold(0.1, "momentum") == pytest.approx(38.0)
    assert sharp.figure() is not None


def test_batch_hessians_are_sharper():
    model, ds = _problem(n=96)
    res = Hs.batch_sharpness(model, "cross_entropy", ds, batch_sizes=[4, 96], n_batches=6, seed=0)
    assert res.mean[-1] == pytest.approx(res.full, rel=1e-6)  # the full batch
    assert res.mean[0] > res.full
    assert res.figure() is not None


def test_bad_inputs():
    model, ds = _problem()
    with pytest.raises(ValueError, match="loss must return a scalar"):
        Hs.HessianOperator(model, lambda pred, y: (pred - 1) ** 2, ds)
    with pytest.raises(ValueError, match="not trainable parameters"):
        Hs.HessianOperator(model, "cross_entropy", ds, params=["nope"])
    frozen = labkit.models.mlp(3, [8], 3, seed=0).double()
    frozen[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="not trainable parameters"):
        Hs.HessianOperator(frozen, "cross_entropy", ds, params=["0.weight"])
    op = Hs.HessianOperator(frozen, "cross_entropy", ds)  # frozen parameters are simply left out
    assert op.size == labkit.models.ParamSpec.of(frozen).numel == sum(
        p.numel() for p in frozen.parameters() if p.requires_grad)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Hs.HessianOperator(frozen, "cross_entropy", ds)
    with pytest.raises(ValueError, match="empty"):
        Hs.HessianOperator(model, "cross_entropy", ds[:0])
    with pytest.raises(ValueError, match="empty"):
        Hs.HessianOperator(model, "cross_entropy", [])
    with pytest.raises(ValueError, match="k=1000 is larger than the operator"):
        Hs.top_eigenvalues(model, "cross_entropy", ds, k=1000)
    with pytest.raises(ValueError, match="matrix='fisher'"):
        Hs.operator(model, "cross_entropy", ds, matrix="fisher")
    with pytest.raises(TypeError, match=r"nn\.Module"):
        Hs.HessianOperator("model", "cross_entropy", ds)
    with pytest.raises(ValueError, match="batch_size"):
        Hs.HessianOperator(model, "cross_entropy", ds, batch_size=0)


def test_reproducible_and_warm_started():
    model, ds = _problem()
    op = Hs.HessianOperator(model, "cross_entropy", ds)
    a = L.top_eigenvalues(op, 1, dense=False, seed=3)
    b = L.top_eigenvalues(op, 1, dense=False, seed=3)
    assert torch.equal(a.values, b.values)
    warm = L.top_eigenvalues(op, 1, dense=False, v0=a.vectors)
    assert warm.n_matvec < a.n_matvec
    assert np.isclose(float(warm.values[0]), float(a.values[0]), rtol=1e-9)


def test_convenience_functions_take_a_parameter_subset():
    import labkit.hessian as hs
    from labkit import data as lkdata
    from labkit import models as lkmodels

    net = lkmodels.mlp(2, [5], 3, seed=0).double()
    ds = lkdata.gaussian_mixture(n=40, classes=3, seed=0).to(dtype=torch.float64)
    names = ["2.weight", "2.bias"]  # the readout only
    full = hs.dense(net, "cross_entropy", ds)
    sub = hs.dense(net, "cross_entropy", ds, params=names)
    assert sub.shape == (18, 18)
    torch.testing.assert_close(sub, full[-18:, -18:], rtol=1e-10, atol=1e-12)
    est = hs.trace(net, "cross_entropy", ds, n_matvec=100, params=names)  # n_matvec >= 18: exact
    assert est.value == pytest.approx(float(torch.trace(sub)), rel=1e-10) and est.stderr == 0.0
    dens = hs.spectral_density(net, "cross_entropy", ds, params=names, n_probes=2, lanczos_steps=10)
    exact = torch.linalg.eigvalsh(sub)
    nodes = torch.as_tensor(dens.nodes).reshape(-1)
    assert exact.min() - 1e-8 <= nodes.min() and nodes.max() <= exact.max() + 1e-8  # Ritz values of the subset
    gn = hs.dense(net, "cross_entropy", ds, matrix="gauss_newton", params=names)
    assert gn.shape == (18, 18)
