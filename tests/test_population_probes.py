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
            assert math.isnan(out.b_simple[i])  # the diverged member
            continue
        ref = labkit.batchsize.noise_scale(net, "mse", ds)
        assert abs(float(out.b_simple[i]) - ref.b_simple) <= 1e-8 * abs(ref.b_simple)
        assert abs(float(out.trace_cov[i]) - ref.trace_cov) <= 1e-8 * abs(ref.trace_cov)
        assert out[i]["grad_sq_norm"] == pytest.approx(ref.grad_sq_norm, rel=1e-8)


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


# ---------------------------------------------------------------- B_noise


def _dense_noise(net, ds):
    """tr(H Sigma) and G^T H G from the dense Hessian and the per-example gradients (divisor n, as batchsize)."""
    H = testing.dense_hessian(net, "mse", ds)
    g = labkit.batchsize.per_example_grads(net, "mse", ds)
    G = g.mean(0)
    c = g - G
    return float(((c @ H) * c).sum(1).mean()), float(G @ H @ G)


@pytest.mark.parametrize("engine", ["batched", "autograd"])
def test_b_noise_matches_the_single_model_b_noise_per_member(engine):
    """Different seeds, an init scale, a trained member, a diverged one, each with its own data batch: every
    defined member's B_noise equals labkit.batchsize.b_noise and its two parts the dense products; the diverged
    member is NaN and its neighbours are what they are without it."""
    nets = _population()
    sets = [_data(20 + s) for s in range(len(nets))]
    mem = probes.Members.of(nets, "mse", sets, engine=engine)
    out = probes.noise_scales(mem, curvature=True, max_memory=400_000)  # chunks of members, one vector per call
    for i, (net, ds) in enumerate(zip(nets, sets)):
        if i == 3:
            assert all(math.isnan(v) for v in out[i].values())
            continue
        ref = labkit.batchsize.b_noise(net, "mse", ds)
        assert abs(float(out.b_noise[i]) - ref) <= 1e-8 * abs(ref)
        tr, ghg = _dense_noise(net, ds)
        assert abs(float(out.trace_h_cov[i]) - tr) <= 1e-8 * abs(tr)
        assert abs(float(out.grad_h_grad[i]) - ghg) <= 1e-8 * abs(ghg)
    whole = probes.noise_scales(mem, curvature=True)  # everything in one chunk and one product call
    torch.testing.assert_close(whole.b_noise, out.b_noise, rtol=1e-12, atol=0, equal_nan=True)
    blocks = probes.noise_scales(mem, curvature=True, max_memory=3_050_000)  # one chunk, blocks of vectors
    torch.testing.assert_close(blocks.b_noise, out.b_noise, rtol=1e-12, atol=0, equal_nan=True)
    alone = probes.noise_scales(probes.Members.of(nets[4:], "mse", sets[4:], engine=engine), curvature=True)
    torch.testing.assert_close(alone.b_noise[0], out.b_noise[4], rtol=1e-12, atol=0)
    assert out.n == 24 and len(out) == 5


def test_b_noise_with_shared_data_and_hyperparameters_marked_undefined_by_skip():
    nets = [labkit.models.mlp(3, [8], 1, activation="relu", seed=s).double() for s in range(3)]
    ds = _data(7, n=16)
    out = probes.noise_scales(probes.Members.of(nets, "mse", ds), curvature=True, skip=torch.tensor([0, 1, 0]))
    assert math.isnan(out.b_noise[1]) and math.isnan(out.b_simple[1])
    for i in (0, 2):
        ref = labkit.batchsize.b_noise(nets[i], "mse", ds)
        assert abs(float(out.b_noise[i]) - ref) <= 1e-8 * abs(ref)


def test_noise_scales_result_reads_like_the_histories_and_the_old_dict():
    from labkit import _deprecated

    nets = _population()[2:5]
    out = probes.noise_scales(probes.Members.of(nets, "mse", _data(0)))
    assert out.b_noise is None and set(out[0]) == {"b_simple", "trace_cov", "grad_sq_norm"}
    rows = list(out)  # one dict per member, like the Histories
    assert len(rows) == 3 and rows[0] == out[0] and rows[2]["b_simple"] == float(out.b_simple[2])
    assert math.isnan(rows[1]["b_simple"])  # nets[3]: diverged
    _deprecated._warned.clear()
    with pytest.warns(DeprecationWarning, match=r"noise_scales\(\.\.\.\)\.b_simple"):
        old = out["b_simple"]
    assert old is out.b_simple
    with pytest.raises(KeyError, match="b_noise"):
        out["b_noise"]  # not measured (curvature=False)


def test_population_noise_save_load(tmp_path):
    nets = _population()[2:5]
    out = probes.noise_scales(probes.Members.of(nets, "mse", _data(0)), curvature=True)
    d = out.to_dict()
    assert d["b_noise"][1] is None and d["n"] == 24
    back = probes.PopulationNoise.load(out.save(tmp_path / "noise"))
    assert (tmp_path / "noise.json").exists() and back.n == 24
    for k in ("b_simple", "trace_cov", "grad_sq_norm", "b_noise", "trace_h_cov", "grad_h_grad"):
        torch.testing.assert_close(getattr(back, k), getattr(out, k), rtol=0, atol=0, equal_nan=True)


def test_noise_scales_refuse_up_front_naming_what_fits():
    nets = [labkit.models.mlp(3, [10, 10], 1, seed=s).double() for s in range(2)]
    mem = probes.Members.of(nets, "mse", _data(0))
    probes.noise_scales(mem, max_memory=95_000)  # B_simple fits (its per-example gradients: 93 kB)
    with pytest.raises(ValueError, match=r"max_memory=.*about \d+ examples fit"):
        probes.noise_scales(mem, curvature=True, max_memory=95_000)
    with pytest.raises(ValueError, match=r"per-example gradients on 24 examples.*max_memory"):
        probes.noise_scales(mem, max_memory=10_000)
    with pytest.raises(ValueError, match="1 example is undefined"):
        probes.noise_scales(probes.Members.of(nets, "mse", _data(0, n=1)))
    with pytest.raises(ValueError, match="skip must have one entry per member"):
        probes.noise_scales(mem, skip=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="curvature"):
        probes.noise_scales(mem, curvature="yes")


# ---------------------------------------------------------------- kernels


@pytest.mark.parametrize("output", ["trace", "full"])
def test_ntk_matches_the_single_model_empirical_ntk_per_member(output):
    """Shared inputs, the members' own inputs, and a diverged member (NaN; its neighbours as alone)."""
    nets = [labkit.models.mlp(3, [10, 10], 2, seed=s).double() for s in range(4)]
    with torch.no_grad():
        nets[2][0].weight.mul_(3.0)
        nets[1][-1].weight.fill_(math.nan)
    x = torch.randn(7, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    y = torch.randn(7, 2, dtype=DT)
    K = probes.ntk(probes.Members.of(nets, "mse", (x, y)), output=output, max_memory=60_000)  # chunks of members
    assert K.shape == ((4, 7, 7, 2, 2) if output == "full" else (4, 7, 7))
    assert K[1].isnan().all()
    for i in (0, 2, 3):
        torch.testing.assert_close(K[i], labkit.ntk.empirical(nets[i], x, output=output), rtol=1e-10, atol=1e-12)
    # one batch per member
    gen = torch.Generator().manual_seed(9)
    sets = [(torch.randn(6, 3, dtype=DT, generator=gen), torch.randn(6, 2, dtype=DT, generator=gen)) for _ in nets]
    K = probes.ntk(probes.Members.of(nets, "mse", [labkit.data.as_dataset(s) for s in sets]), output=output)
    assert K[1].isnan().all() and not K[[0, 2, 3]].isnan().any()
    for i in (0, 2, 3):
        torch.testing.assert_close(K[i], labkit.ntk.empirical(nets[i], sets[i][0], output=output), rtol=1e-10,
                                   atol=1e-12)


def test_ntk_refuses_up_front_and_names_output():
    nets = [labkit.models.mlp(3, [10], 3, seed=s).double() for s in range(3)]
    mem = probes.Members.of(nets, "mse", (torch.randn(20, 3, dtype=DT), torch.randn(20, 3, dtype=DT)))
    with pytest.raises(ValueError, match="output="):
        probes.ntk(mem, output="diagonal")
    with pytest.raises(ValueError, match=r"\(3, 20, 20, 3, 3\) result.*max_memory=.*output='trace'"):
        probes.ntk(mem, output="full", max_memory=150_000)
    assert probes.ntk(mem, output="trace", max_memory=150_000).shape == (3, 20, 20)


def test_kernel_change_and_distance_per_member_as_the_single_model_measures():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 5, 5, dtype=DT, generator=gen)
    K0 = A @ A.transpose(1, 2)
    K = K0 + 0.3 * torch.randn(3, 5, 5, dtype=DT, generator=gen)
    K0[2] = 0  # undefined
    change, dist = probes.kernel_change(K, K0), probes.kernel_distance(K, K0)
    for i in range(2):
        assert float(change[i]) == pytest.approx(labkit.ntk.relative_change(K[i], K0[i]), rel=1e-12)
        assert float(dist[i]) == pytest.approx(labkit.ntk.kernel_distance(K[i], K0[i]), rel=1e-12)
    assert math.isnan(change[2]) and math.isnan(dist[2])
    assert float(probes.kernel_distance(2 * K0[:2], K0[:2]).abs().max()) < 1e-12  # equal up to scale
    with pytest.raises(ValueError, match="same shape"):
        probes.kernel_change(K, K0[:2])
    with pytest.raises(TypeError, match="K0"):
        probes.kernel_change(K, [1.0])


# ---------------------------------------------------------------- trackers


def _same(a, b):
    """Equal lists of floats, NaN equal to NaN."""
    torch.testing.assert_close(torch.tensor(a, dtype=DT), torch.tensor(b, dtype=DT), rtol=0, atol=0, equal_nan=True)


class _Snapshots(labkit.history.Callback):
    """The stacked parameters every ``every`` steps, as the trackers see them (before that step's update)."""

    def __init__(self, every):
        self.every, self.params = every, {}

    def on_step(self, info):
        if info.step % self.every == 0:
            self.params[info.step] = {k: v.detach().clone() for k, v in info.params.items()}


def test_noise_and_kernel_trackers_equal_the_probes_on_the_same_parameters():
    """One NoiseScales and one KernelChange tracker for a fit_many population (different lrs and seeds, one lr
    that diverges): at every recorded step each member's tracked values equal noise_scales / ntk called on the
    parameters of that step; the diverged member records NaN from its divergence on, the others are unharmed."""
    ds = _data(4, n=16)

    def make(seed):
        return labkit.models.mlp(3, [8], 1, seed=seed).double()

    lrs, seeds = [0.05, 0.3, 0.8, 60.0], [0, 1, 2, 3]
    noise = probes.NoiseScales(make, every=3, curvature=True)
    kern = probes.KernelChange(make, every=3)
    snaps = _Snapshots(3)
    hists = labkit.train.fit_many(make, ds, hparams={"lr": lrs, "seed": seeds}, steps=10,
                                  callbacks=[snaps, noise, kern], progress=False)
    assert noise.steps == kern.steps == [0, 3, 6, 9] == sorted(snaps.params)
    K0 = probes.ntk(probes.Members(make(0), snaps.params[0], "mse", ds))
    diverged = [i for i, h in enumerate(hists) if h.diverged]
    assert diverged == [3]
    for j, step in enumerate(noise.steps):
        mem = probes.Members(make(0), snaps.params[step], "mse", ds)
        ref = probes.noise_scales(mem, curvature=True)
        K = probes.ntk(mem)
        for i, h in enumerate(hists):
            alive = step < len(h.loss) and math.isfinite(h.loss[step])
            if not alive:
                assert math.isnan(noise.results[j].b_noise[i]) and math.isnan(kern.series(i)[j])
                continue
            for key in ("b_simple", "b_noise", "trace_h_cov"):
                assert noise.series(i, key)[j] == pytest.approx(float(getattr(ref, key)[i]), rel=1e-12)
            assert kern.series(i)[j] == pytest.approx(float(probes.kernel_change(K, K0)[i]), rel=1e-12, abs=1e-15)
            assert kern.series(i, "kernel_distance")[j] == pytest.approx(
                float(probes.kernel_distance(K, K0)[i]), rel=1e-10, abs=1e-14)
    for i, h in enumerate(hists):
        tracked = h.tracked["b_noise"]
        assert tracked["steps"] == [s for s in noise.steps if s < h.steps or (s == h.steps and not h.diverged)]
        _same(tracked["values"], noise.series(i, "b_noise")[:len(tracked["steps"])])
        _same(h.tracked["kernel_change"]["values"], kern.series(i)[:len(tracked["steps"])])
    assert kern.series(0)[0] == 0.0 and kern.series(2)[-1] > kern.series(0)[-1] > 0  # a larger lr moves it more
    # a member alive in the reference equals the single-model probes (the population probe's own contract)
    single = make(1)
    single.load_state_dict({k: v[1] for k, v in snaps.params[6].items()})
    assert noise.series(1, "b_noise")[2] == pytest.approx(labkit.batchsize.b_noise(single, "mse", ds), rel=1e-8)


def test_trackers_refuse_bad_settings():
    make = lambda s: labkit.models.mlp(3, [4], 1, seed=s).double()  # noqa: E731
    with pytest.raises(ValueError, match="every"):
        probes.NoiseScales(make, every=0)
    with pytest.raises(ValueError, match="output="):
        probes.KernelChange(make, output="diag")
    with pytest.raises(TypeError, match="make_model"):
        probes.KernelChange(3)
    with pytest.raises(TypeError, match="KernelTracker"):
        labkit.train.fit(make(0), _data(0), steps=2, callbacks=[probes.KernelChange(make)], progress=False)
