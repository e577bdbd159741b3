"""Long jobs estimate their memory up front and refuse, before allocating, what would not fit ``max_memory``.

The refusals are checked on requests of ~10^6 x 10^6 (which would need terabytes) to raise at once; the
estimates are checked against measured sizes: the returned NTK's ``nbytes`` exactly, and the peak of torch's
CPU allocations (the profiler's memory events) within a factor of the estimate.
"""

import json
import os
import tempfile
import time

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from labkit import linalg, ntk
from labkit.linalg.stochastic import _slq_memory, _trace_memory
from labkit.models import mlp
from labkit.ntk.empirical import estimate_memory
from labkit.train import fit_many


def peak_bytes(f):
    """Peak bytes torch allocated on the CPU while ``f()`` ran (above what was live before), and its result."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        r = f()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    finally:
        os.remove(path)
    mem = [e["args"] for e in events if e.get("name") == "[memory]"]
    if not mem:
        return 0, r
    base = mem[0]["Total Allocated"] - mem[0]["Bytes"]
    return max(m["Total Allocated"] for m in mem) - base, r


@pytest.fixture(scope="module")
def net():
    return mlp(3, [64, 64], 4, seed=0).double()


def refuses_at_once(f, *words):
    t = time.perf_counter()
    with pytest.raises(ValueError) as err:
        f()
    assert time.perf_counter() - t < 5.0  # nothing terabyte-sized was attempted
    for w in ("max_memory", "GiB", *words):
        assert w in str(err.value), (w, str(err.value))
    return str(err.value)


# ---------------------------------------------------------------- NTK


def test_empirical_refuses_a_huge_kernel_before_allocating(net):
    x = torch.randn(10**6, 3, dtype=torch.float64)
    msg = refuses_at_once(lambda: ntk.empirical(net, x), "fewer inputs", "(1000000, 1000000)")
    assert "7.45e+03 GiB" in msg  # 10^12 float64 entries: the estimate is named
    refuses_at_once(lambda: ntk.empirical(net, x[:20000], output="full", method="jacobian"), "output='trace'")
    refuses_at_once(lambda: estimate_memory(net, x), "fewer inputs")


def test_empirical_names_chunk_size_when_it_is_the_problem(net):
    x = torch.randn(300, 3, dtype=torch.float64)
    plan = estimate_memory(net, x, method="ntk_vp", chunk_size=300, max_memory=None)
    limit = plan["total"] - plan["per_row"] * 100  # room for 200 rows, not 300
    refuses_at_once(lambda: ntk.empirical(net, x, method="ntk_vp", chunk_size=300, max_memory=limit), "chunk_size")
    k = ntk.empirical(net, x, method="ntk_vp", max_memory=limit)  # chunk chosen to fit: works, same kernel
    assert torch.allclose(k, ntk.empirical(net, x, method="jacobian"), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["jacobian", "ntk_vp", "structured"])
@pytest.mark.parametrize("output", ["trace", "full"])
def test_empirical_estimate_matches_measured_memory(net, method, output):
    x = torch.randn(200, 3, dtype=torch.float64)
    est = estimate_memory(net, x, method=method, output=output, chunk_size=16)
    peak, k = peak_bytes(lambda: ntk.empirical(net, x, method=method, output=output, chunk_size=16))
    assert k.nbytes == est["result"]  # the result estimate is exact
    # the total is an upper bound, and not a loose one (measured 0.56-0.97 of it on this MLP)
    assert 0.4 * est["total"] <= peak <= est["total"], (peak, est)


def test_empirical_just_under_the_limit_works_and_auto_skips_what_does_not_fit(net):
    x = torch.randn(60, 3, dtype=torch.float64)
    plan = estimate_memory(net, x, output="full", chunk_size=60, max_memory=None)
    k = ntk.empirical(net, x, output="full", chunk_size=60, max_memory=plan["total"])
    assert k.shape == (60, 60, 4, 4)
    refuses_at_once(lambda: ntk.empirical(net, x, output="full", method=plan["method"], chunk_size=60,
                                          max_memory=plan["total"] - 1))
    small = min(estimate_memory(net, x, method=m, max_memory=None)["total"] for m in ("jacobian", "structured"))
    assert estimate_memory(net, x, method="auto", max_memory=small)["total"] <= small


def test_ntk_operator_chunks_columns_under_max_memory(net):
    x = torch.randn(30, 3, dtype=torch.float64)
    op = ntk.NTKOperator(net, x, max_memory=10**6)
    assert op.columns >= 1 and op.columns * op.column_bytes <= 10**6
    dense = ntk.empirical(net, x, output="full").permute(0, 2, 1, 3).reshape(120, 120)
    assert torch.allclose(op.matmat(torch.eye(120, dtype=torch.float64)), dense, atol=1e-10)
    refuses_at_once(lambda: ntk.NTKOperator(net, x, max_memory=op.column_bytes - 1), "fewer inputs")


# ---------------------------------------------------------------- stochastic trace and SLQ


def _sym(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a + a.T


def test_slq_and_trace_refuse_huge_requests_before_allocating():
    big = linalg.from_function(lambda v: v, 10**7)
    refuses_at_once(lambda: linalg.spectral_density(big, n_probes=100, lanczos_steps=80), "n_probes")
    refuses_at_once(lambda: linalg.trace(big, n_matvec=300), "n_matvec")
    refuses_at_once(lambda: linalg.trace(big, n_matvec=300, method="hutchinson"), "n_matvec")


def test_slq_runs_probes_in_blocks_with_the_same_result():
    a = _sym(400)
    op = linalg.from_function(lambda v: a @ v, 400)
    whole = linalg.spectral_density(op, 8, 30, seed=2)
    need = _slq_memory(400, 8, 30, 512, 8)
    blocked = linalg.spectral_density(op, 8, 30, seed=2, max_memory=need["fixed"] + 3 * need["per_probe"])
    assert torch.allclose(whole.nodes, blocked.nodes, atol=1e-10)
    assert torch.allclose(whole.density, blocked.density, atol=1e-10)
    refuses_at_once(lambda: linalg.spectral_density(op, 8, 30, max_memory=need["fixed"] + need["per_probe"] - 1))


@pytest.mark.parametrize("n_probes,steps", [(10, 80), (40, 50)])
def test_slq_estimate_bounds_measured_memory(n_probes, steps):
    a = _sym(2000)
    op = linalg.from_function(lambda v: a @ v, 2000)
    need = _slq_memory(2000, n_probes, steps, 512, 8)
    total = need["fixed"] + n_probes * need["per_probe"]
    peak, _ = peak_bytes(lambda: linalg.spectral_density(op, n_probes, steps))
    assert 0.3 * total <= peak <= 2 * total, (peak, total)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
def test_trace_estimate_and_limit(method):
    a = _sym(1000)
    op = linalg.from_function(lambda v: a @ v, 1000)
    need = _trace_memory(1000, 60, method, 8)
    peak, est = peak_bytes(lambda: linalg.trace(op, 60, method, max_memory=need))  # just fits: works
    assert abs(est.value - float(a.trace())) < 10 * est.stderr + 1e-9
    assert 0.3 * need <= peak <= 2 * need, (peak, need)
    refuses_at_once(lambda: linalg.trace(op, 60, method, max_memory=need - 1), "n_matvec")
    exact = linalg.trace(op, 1000)  # exact trace from identity-column blocks, never the dense 1000 x 1000
    assert exact.value == pytest.approx(float(a.trace()), abs=1e-9) and exact.stderr == 0


# ---------------------------------------------------------------- fit_many


def test_fit_many_refuses_a_sweep_too_large_before_training():
    x, y = torch.randn(64, 2), torch.randn(64, 1)
    calls = []

    def make(seed):
        calls.append(seed)
        return mlp(2, [512, 512], 1, seed=seed)

    refuses_at_once(lambda: fit_many(make, (x, y), hparams={"seed": list(range(10**5))}, optimizer="adam",
                                           steps=2, progress=False), "fewer members", "batch_size",
                          "fit_many(groups=...)", "100000 members")
    assert calls == [0]  # one model built for the estimate, no training


def test_fit_many_just_under_the_limit_trains():
    from labkit.population.fit import memory_estimate

    x, y = torch.randn(32, 2), torch.randn(32, 1)
    members = [{"seed": s, "batch_size": 8} for s in range(3)]
    need = memory_estimate(mlp(2, [16], 1, seed=0), x[:1], 32, members, "adam")
    # parameters 2*16+16+16+1 = 65, 4 slots (value, gradient, 2 Adam moments); batch 8 x (2 inputs + 2 x 33 acts)
    assert need["per_member"] == 4 * (65 * 4 + 8 * (2 + 2 * 33)) and need["bytes"] == 3 * need["per_member"]
    kw = dict(hparams={"seed": [0, 1, 2]}, optimizer="adam", batch_size=8, steps=3, progress=False)
    hs = fit_many(lambda s: mlp(2, [16], 1, seed=s), (x, y), max_memory=need["bytes"], **kw)
    assert len(hs) == 3
    refuses_at_once(lambda: fit_many(lambda s: mlp(2, [16], 1, seed=s), (x, y), max_memory=need["bytes"] - 1, **kw))
