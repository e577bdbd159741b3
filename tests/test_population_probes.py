"""Population probes against the single-model probes, member by member, in float64."""

import math
import warnings

import pytest
import torch

import labkit
from labkit import linalg, testing
from labkit.curvature import GaussNewtonOperator, HessianOperator
from labkit.linalg.lockstep import lockstep_eigenvalues
from labkit.population import probes

DT = torch.float64


def _data(seed, n=24):
    return labkit.data.teacher_student(n, dim=3, teacher_width=4, seed=seed).to(dtype=DT)


def _population():
    """Members with different seeds, an init scale (a 'hyperparameter'), a trained member, and a diverged one."""
    nets = [labkit.models.mlp(3, [10, 10], 1, seed=s).double() for s in range(5)]
    with torch.no_grad():
        nets[1][0].weight.mul_(2.5)
        nets[3][-1].weight.fill_(math.nan)  # diverged
    labkit.train.fit(nets[2], _data(0), lr=0.05, steps=20, progress=False)
    return nets


def _single(net, ds, k, operator=HessianOperator, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return linalg.top_eigenvalues(operator(net, "mse", ds), k=k, dense=False, **kw)


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_lockstep_matches_single_model_lanczos_per_member(operator):
    nets, ds = _population(), _data(0)
    res = probes.top_eigenvalues(probes.Members.of(nets, "mse", ds), k=2, operator=operator, tol=1e-8)
    single = HessianOperator if operator == "hessian" else GaussNewtonOperator
    for i, net in enumerate(nets):
        if i == 3:
            continue
        ref = _single(net, ds, 2, single, tol=1e-8)
        assert ref.converged and res[i]["converged"]
        torch.testing.assert_close(res.values[i], ref.values, rtol=0, atol=1e-8 * float(ref.values.abs().max()))
        assert (res.residuals[i] <= 1e-8 * res.values[i].abs().max()).all()
    # the diverged member: NaN, converged=False, no products; its neighbours as without it
    assert math.isnan(res[3]["values"][0]) and not res[3]["converged"] and res[3]["n_matvec"] == 0
    assert "undefined" in res.message
    alone = probes.top_eigenvalues(probes.Members.of(nets[2:3], "mse", ds), k=2, operator=operator, tol=1e-8)
    torch.testing.assert_close(alone.values[0], res.values[2], rtol=1e-12, atol=0)  # batched GEMMs: last bits


def test_members_with_their_own_data_batches():
    nets = [labkit.models.mlp(3, [10, 10], 1, seed=s).double() for s in range(3)]
    sets = [_data(10 + s) for s in range(3)]
    res = probes.top_eigenvalues(probes.Members.of(nets, "mse", sets), k=1)
    for net, ds, got in zip(nets, sets, res.values):
        ref = _single(net, ds, 1)
        assert abs(float(got[0] - ref.values[0])) <= 1e-8 * abs(float(ref.values[0]))
    # the same batches, given stacked: the same bits
    x, y = torch.stack([d.inputs for d in sets]), torch.stack([d.targets for d in sets])
    again = probes.top_eigenvalues(probes.Members.of(nets, "mse", (x, y), per_member=True), k=1)
    assert torch.equal(again.values, res.values)


def test_preconditioned_by_per_layer_learning_rates_against_dense():
    nets = [labkit.models.mlp(3, [6], 1, seed=s).double() for s in range(3)]
    ds = _data(1, n=12)
    mem = probes.Members.of(nets, "mse", ds)
    lrs = {name: torch.tensor([0.1, 1.0, 3.0]) * (1 + j) for j, name in enumerate(mem.spec.names)}
    res = probes.top_eigenvalues(mem, lrs=lrs, tol=1e-10)
    assert res.preconditioned
    for i, net in enumerate(nets):
        H = testing.dense_hessian(net, "mse", ds)
        d = torch.cat([torch.full((n,), float(lrs[name][i]), dtype=DT)
                       for name, n in zip(mem.spec.names, mem.spec.sizes)]).sqrt()
        ref = torch.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1]
        assert abs(float(res.top[i] - ref)) <= 1e-8 * float(ref)
    # a scalar rate per member is eta * lambda_max
    plain = probes.top_eigenvalues(mem, tol=1e-10)
    scaled = probes.top_eigenvalues(mem, lrs=torch.tensor([0.5, 2.0, 4.0]), tol=1e-10)
    torch.testing.assert_close(scaled.top, plain.top * torch.tensor([0.5, 2.0, 4.0], dtype=DT), rtol=1e-8, atol=0)


def test_members_converge_at_different_steps_and_stop_costing_products():
    """Dense symmetric matrices in lockstep: each member's values from eigvalsh; a member that converged early
    is no longer in the rows the product is asked for."""
    g = torch.Generator().manual_seed(0)
    n, M = 60, 4
    mats = []
    for i in range(M):
        Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))[0]
        ev = torch.cat([torch.tensor([10.0, 10.0 / (1 + 4.0 ** -i)], dtype=DT), torch.rand(n - 2, generator=g,
                                                                                          dtype=DT)])
        mats.append(Q @ torch.diag(ev) @ Q.T)
    A = torch.stack([(a + a.T) / 2 for a in mats])
    rows = []

    def matvec(V, active):
        rows.append(len(active))
        return torch.bmm(A[active], V.unsqueeze(2)).squeeze(2)

    res = lockstep_eigenvalues(matvec, n, M, k=1, tol=1e-10)
    ref = torch.linalg.eigvalsh(A)[:, -1]
    torch.testing.assert_close(res.values[:, 0], ref, rtol=1e-12, atol=0)
    assert res.converged.all() and len(set(res.n_matvec.tolist())) > 1
    assert sum(rows) == int(res.n_matvec.sum())  # converged members cost no further products
    assert rows == sorted(rows, reverse=True) and rows[-1] < M
    # chunks that fit a small max_memory: the same numbers (batched BLAS may differ in the last bits)
    rows.clear()
    small = lockstep_eigenvalues(matvec, n, M, k=1, tol=1e-10, max_memory=200_000)
    assert max(rows) < M and torch.equal(small.n_matvec, res.n_matvec)
    torch.testing.assert_close(small.values, res.values, rtol=1e-13, atol=0)


def test_a_member_whose_products_turn_nan_is_nan_alone():
    A = torch.stack([torch.diag(torch.arange(1.0, 41.0, dtype=DT) * (i + 1)) for i in range(3)])

    def matvec(V, active):
        out = torch.bmm(A[active], V.unsqueeze(2)).squeeze(2)
        return torch.where((active == 1).unsqueeze(1), torch.full_like(out, math.nan), out)

    res = lockstep_eigenvalues(matvec, 40, 3, k=1, tol=1e-10)
    assert math.isnan(res.values[1, 0]) and not res.converged[1]
    torch.testing.assert_close(res.values[[0, 2], 0], torch.tensor([40.0, 120.0], dtype=DT), rtol=1e-10, atol=0)
    assert res.converged[[0, 2]].all() and "NaN" in res.message


def test_result_indexing_to_dict_save_load(tmp_path):
    nets = _population()[3:5]
    res = probes.top_eigenvalues(probes.Members.of(nets, "mse", _data(0)), k=2)
    d = res.to_dict()
    assert d["values"][0] == [None, None] and d["converged"] == [False, True]
    path = res.save(tmp_path / "eigs")
    back = probes.PopulationEigs.load(path)
    assert path.suffix == ".json" and torch.equal(back.values[1], res.values[1]) and back[1] == res[1]
    assert math.isnan(back[0]["values"][0]) and back[0]["converged"] is False
    assert len(back) == 2 and back.operator == "hessian"


def test_bad_inputs_name_the_argument():
    nets = [labkit.models.mlp(3, [4], 1, seed=s).double() for s in range(2)]
    mem = probes.Members.of(nets, "mse", _data(0))
    with pytest.raises(ValueError, match="operator"):
        probes.top_eigenvalues(mem, operator="fisher")
    with pytest.raises(ValueError, match="lrs"):
        probes.top_eigenvalues(mem, lrs=torch.ones(3))
    with pytest.raises(ValueError, match="data has 1 datasets"):
        probes.Members.of(nets, "mse", [_data(0)])
    with pytest.raises(ValueError, match="max_memory"):
        probes.top_eigenvalues(mem, max_memory=100)
    with pytest.raises(TypeError, match="members"):
        probes.top_eigenvalues(nets)


@pytest.mark.parametrize("engine", ["vmap", "batched"])
def test_sharpness_tracker_matches_single_model_measurements(engine):
    """One tracker for a fit_many population; each member's sharpness at steps 0, 4, 8 equals top_eigenvalues of
    the same member trained alone by fit, measured at the same steps by a single-model tracker."""
    ds = _data(3, n=20)

    def make(seed):
        return labkit.models.mlp(3, [8], 1, seed=seed).double()

    lrs, seeds = [0.05, 0.2, 0.6, 40.0], [0, 1, 2, 3]
    tracker = probes.Sharpness(make, every=4)
    hists = labkit.train.fit_many(make, ds, hparams={"lr": lrs, "seed": seeds}, steps=9, callbacks=[tracker],
                                  progress=False, engine=engine)
    assert tracker.steps == [0, 4, 8]
    for i, (lr, seed) in enumerate(zip(lrs, seeds)):
        single = labkit.tracking.Every(4, lambda info: float(_single(info.model, info.data, 1).values[0]),
                                       name="sharpness")
        h = labkit.train.fit(make(seed), ds, lr=lr, steps=9, seed=seed, callbacks=[single], progress=False)
        if h.diverged:
            assert hists[i].diverged and all(math.isnan(v) for s, v in zip(tracker.steps, tracker.series(i))
                                             if s > h.diverged_at)
            continue
        ref = single.series("sharpness")
        got = tracker.series(i)
        for a, b in zip(got, ref):
            assert abs(a - b) <= 1e-8 * abs(b)
        assert hists[i].tracked["sharpness"]["values"] == got
        assert hists[i].tracked["lr_sharpness"]["values"] == pytest.approx([lr * v for v in got], rel=1e-12)
    assert any(h.diverged for h in hists)  # the lr=40 member diverges and reports NaN, the others are unharmed


def test_noise_scales_match_the_single_model_noise_scale_per_member():
    nets = _population()
    sets = [_data(20 + s) for s in range(len(nets))]
    out = probes.noise_scales(probes.Members.of(nets, "mse", sets), max_memory=200_000)  # chunks of two members
    for i, (net, ds) in enumerate(zip(nets, sets)):
        if i == 3:
            assert math.isnan(out["b_simple"][i])  # the diverged member
            continue
        ref = labkit.batchsize.noise_scale(net, "mse", ds)
        assert abs(float(out["b_simple"][i]) - ref.b_simple) <= 1e-8 * abs(ref.b_simple)
        assert abs(float(out["trace_cov"][i]) - ref.trace_cov) <= 1e-8 * abs(ref.trace_cov)


def test_traced_ntk_matches_the_single_model_empirical_ntk_per_member():
    nets = [labkit.models.mlp(3, [10, 10], 2, seed=s).double() for s in range(4)]
    with torch.no_grad():
        nets[2][0].weight.mul_(3.0)
    x = torch.randn(9, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    y = torch.randn(9, 2, dtype=DT)
    K = probes.ntk(probes.Members.of(nets, "mse", (x, y)), max_memory=100_000)  # chunks of members
    assert K.shape == (4, 9, 9)
    for net, k in zip(nets, K):
        ref = labkit.ntk.empirical(net, x, output="trace")
        torch.testing.assert_close(k, ref, rtol=1e-10, atol=1e-12)
    x2 = torch.randn(5, 3, dtype=DT)
    torch.testing.assert_close(probes.ntk(probes.Members.of(nets, "mse", (x, y)), x2)[1],
                               labkit.ntk.empirical(nets[1], x2, output="trace"), rtol=1e-10, atol=1e-12)
