"""The batched Hessian product of ``labkit.models.mlp`` populations (``Members(engine="batched")``, the
written-out R-operator) against the double-backward path and dense per-member Hessians, in float64."""

import math
import warnings

import pytest
import torch

import labkit
from labkit import linalg, testing
from labkit.curvature import HessianOperator
from labkit.population import probes

DT = torch.float64


def _regression(seed, n=16, dim=3, out=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=DT), torch.randn(n, out, generator=g, dtype=DT)


def _classes(seed, n=16, dim=3):
    return labkit.data.gaussian_mixture(n=n, dim=dim, classes=3, separation=1.5, seed=seed).to(dtype=DT)


def _nets(activation, out, parameterization="standard", m=3):
    nets = [labkit.models.mlp(3, [7, 5], out, activation=activation, parameterization=parameterization,
                              seed=s).double() for s in range(m)]
    with torch.no_grad():
        nets[1][0].weight.mul_(2.0)  # members differ in scale, not only in seed
    return nets


def _data(loss, seeds):
    """One batch per member (different data), as a list of datasets."""
    if loss == "mse":
        return [labkit.data.as_dataset(_regression(s)) for s in seeds]
    return [_classes(s) for s in seeds]


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_batched_product_equals_dense_hessians_and_the_autograd_path(activation, loss, parameterization):
    nets = _nets(activation, 2 if loss == "mse" else 3, parameterization)
    sets = _data(loss, [1, 2, 3])
    fast = probes.Members.of(nets, loss, sets)
    slow = probes.Members.of(nets, loss, sets, engine="autograd")
    assert fast.engine == "batched" and slow.engine == "autograd"
    V = torch.randn(3, fast.numel, generator=torch.Generator().manual_seed(0), dtype=DT)
    got = fast.product(V)
    for i, (net, ds) in enumerate(zip(nets, sets)):
        H = testing.dense_hessian(net, loss, ds)
        ref = H @ V[i]
        assert float((got[i] - ref).abs().max()) <= 1e-10 * max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(got, slow.product(V), rtol=0, atol=1e-10 * float(got.abs().max()))
    # a subset of members (the rows the lockstep asks for once some have converged)
    active = torch.tensor([0, 2])
    torch.testing.assert_close(fast.product(V[active], active), got[active], rtol=0, atol=1e-12)


def test_shared_data_and_the_lockstep_eigenvalues_equal_the_single_model_lanczos():
    nets = [labkit.models.mlp(4, [12, 12], 3, activation="tanh", seed=s).double() for s in range(4)]
    ds = _classes(0, n=24, dim=4)
    mem = probes.Members.of(nets, "cross_entropy", ds)
    assert mem.engine == "batched"
    res = probes.top_eigenvalues(mem, k=2, tol=1e-10)
    slow = probes.top_eigenvalues(probes.Members.of(nets, "cross_entropy", ds, engine="autograd"), k=2, tol=1e-10)
    torch.testing.assert_close(res.values, slow.values, rtol=1e-8, atol=0)
    for net, got in zip(nets, res.values):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = linalg.top_eigenvalues(HessianOperator(net, "cross_entropy", ds), k=2, tol=1e-10, dense=False)
        dense = torch.linalg.eigvalsh(testing.dense_hessian(net, "cross_entropy", ds)).flip(0)[:2]
        torch.testing.assert_close(got, torch.as_tensor(ref.values, dtype=DT), rtol=1e-8, atol=0)
        torch.testing.assert_close(got, dense, rtol=1e-8, atol=0)


def test_per_layer_learning_rates_precondition_the_batched_product():
    """The top eigenvalue of ``D^(1/2) H D^(1/2)`` with per-layer rates, per member data, against dense."""
    nets = _nets("tanh", 2)
    sets = _data("mse", [4, 5, 6])
    mem = probes.Members.of(nets, "mse", sets)
    assert mem.engine == "batched"
    lrs = {name: torch.tensor([0.1, 1.0, 3.0], dtype=DT) * (1 + j) for j, name in enumerate(mem.spec.names)}
    res = probes.top_eigenvalues(mem, lrs=lrs, tol=1e-10)
    assert res.preconditioned and bool(res.converged.all())
    for i, (net, ds) in enumerate(zip(nets, sets)):
        d = torch.cat([torch.full((n,), float(lrs[name][i]), dtype=DT)
                       for name, n in zip(mem.spec.names, mem.spec.sizes)]).sqrt()
        H = testing.dense_hessian(net, "mse", ds)
        ref = torch.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1]
        assert abs(float(res.top[i] - ref)) <= 1e-8 * float(ref)
    # the scaled product itself, row by row, to 1e-10
    V = torch.randn(3, mem.numel, generator=torch.Generator().manual_seed(1), dtype=DT)
    scale = probes._scale(lrs, mem)
    got = mem.product(V, scale=scale)
    for i, (net, ds) in enumerate(zip(nets, sets)):
        H = testing.dense_hessian(net, "mse", ds)
        ref = scale[i] * (H @ (scale[i] * V[i]))
        assert float((got[i] - ref).abs().max()) <= 1e-10 * float(ref.abs().max())


def test_a_diverged_member_is_nan_and_its_neighbours_are_unaffected():
    nets = _nets("relu", 3, m=4)
    with torch.no_grad():
        nets[2][2].weight.fill_(math.nan)
    sets = _data("cross_entropy", [7, 8, 9, 10])
    res = probes.top_eigenvalues(probes.Members.of(nets, "cross_entropy", sets), tol=1e-10)
    assert math.isnan(res.top[2]) and not bool(res.converged[2]) and "NaN" in res.message
    keep = [0, 1, 3]
    alone = probes.top_eigenvalues(probes.Members.of([nets[i] for i in keep], "cross_entropy",
                                                     [sets[i] for i in keep]), tol=1e-10)
    torch.testing.assert_close(res.values[keep], alone.values, rtol=1e-12, atol=0)
    assert bool(res.converged[keep].all())
    for i in keep:
        ref = torch.linalg.eigvalsh(testing.dense_hessian(nets[i], "cross_entropy", sets[i]))[-1]
        assert abs(float(res.top[i] - ref)) <= 1e-8 * abs(float(ref))
    # a member whose parameters and loss are finite (~1e300) but whose products overflow: NaN alone, through the
    # batched product (the lockstep drops it at its first non-finite step)
    with torch.no_grad():
        nets[2][2].weight.fill_(1e300)
    mem = probes.Members.of(nets, "cross_entropy", sets)
    assert mem.engine == "batched" and not bool(mem.diverged().any())
    res = probes.top_eigenvalues(mem, tol=1e-10)
    assert math.isnan(res.top[2]) and not bool(res.converged[2])
    torch.testing.assert_close(res.values[keep], alone.values, rtol=1e-12, atol=0)


def test_engine_is_chosen_automatically_and_batched_refuses_what_it_cannot_do():
    ds = labkit.data.as_dataset(_regression(0))
    other = [torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
             for _ in range(2)]
    assert probes.Members.of(other, "mse", ds).engine == "autograd"
    with pytest.raises(ValueError, match=r"engine='batched' cannot.*Linear"):
        probes.Members.of(other, "mse", ds, engine="batched")
    gelu = [labkit.models.mlp(3, [4], 2, activation="gelu", seed=s).double() for s in range(2)]
    assert probes.Members.of(gelu, "mse", ds).engine == "autograd"
    with pytest.raises(ValueError, match="engine"):
        probes.Members.of(gelu, "mse", ds, engine="fast")
