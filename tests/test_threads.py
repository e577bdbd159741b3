"""labkit.threads: the quota files, the policy's choice and its reasons, the user's choice kept, for_work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from labkit import cli, threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------ quota files
@pytest.mark.parametrize("text,cpus", [("200000 100000\n", 2.0), ("50000 100000", 0.5), ("150000 100000", 1.5),
                                       ("max 100000\n", None), ("", None), ("garbage here", None),
                                       ("-5 100000", None), ("100000 0", None), ("100000", 1.0)])
def test_parse_cpu_max(text, cpus):
    assert threads.parse_cpu_max(text) == cpus


@pytest.mark.parametrize("quota,period,cpus", [("100000", "100000", 1.0), ("250000\n", "100000\n", 2.5),
                                               ("-1", "100000", None), ("junk", "100000", None),
                                               ("100000", "0", None)])
def test_parse_cfs(quota, period, cpus):
    assert threads.parse_cfs(quota, period) == cpus


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cpu_quota_v2_v1_missing_and_garbage(tmp_path):
    assert threads.cpu_quota(tmp_path / "nothing") is None  # no cgroup files at all: no quota
    v2 = tmp_path / "v2"
    _write(v2, "cpu.max", "100000 100000\n")
    assert threads.cpu_quota(v2) == 1.0
    unlimited = tmp_path / "max"
    _write(unlimited, "cpu.max", "max 100000\n")
    assert threads.cpu_quota(unlimited) is None
    v1 = tmp_path / "v1"
    _write(v1, "cpu/cpu.cfs_quota_us", "150000\n")
    _write(v1, "cpu/cpu.cfs_period_us", "100000\n")
    assert threads.cpu_quota(v1) == 1.5
    v1_none = tmp_path / "v1none"
    _write(v1_none, "cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    _write(v1_none, "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert threads.cpu_quota(v1_none) is None
    half = tmp_path / "half"  # quota without its period file: unknown, not an error
    _write(half, "cpu/cpu.cfs_quota_us", "100000\n")
    assert threads.cpu_quota(half) is None
    bad = tmp_path / "bad"
    _write(bad, "cpu.max", "\x00\x01 nonsense")
    assert threads.cpu_quota(bad) is None


def test_cpu_quota_follows_the_own_cgroup_and_takes_the_smallest(tmp_path):
    _write(tmp_path, "kubepods/pod1/cpu.max", "300000 100000\n")
    _write(tmp_path, "kubepods/cpu.max", "max 100000\n")
    _write(tmp_path, "kubepods/pod1/ctr/cpu.max", "max 100000\n")
    assert threads.cpu_quota(tmp_path, "0::/kubepods/pod1/ctr\n") == 3.0  # the pod's quota, above the container
    _write(tmp_path, "cpu/docker/abc/cpu.cfs_quota_us", "50000")
    _write(tmp_path, "cpu/docker/abc/cpu.cfs_period_us", "100000")
    assert threads.cpu_quota(tmp_path, "4:cpu,cpuacct:/docker/abc\n0::/kubepods/pod1/ctr") == 0.5
    assert threads.cpu_quota(tmp_path) is None  # without the own path only the root's files count


# ----------------------------------------------------------------------------------------------- policy
def test_a_quota_of_one_cpu_on_eight_cores_gives_one_thread_and_says_why():
    pol = threads.decide({}, cores=8, affinity=8, quota=1.0)
    assert pol.threads == 1 and pol.adaptive
    assert "quota" in pol.why and "1 CPUs of the 8 visible" in pol.why


def test_the_quota_is_floored_but_never_below_one():
    assert threads.decide({}, cores=8, affinity=8, quota=2.5).threads == 2
    assert threads.decide({}, cores=8, affinity=8, quota=0.3).threads == 1
    assert threads.decide({}, cores=8, affinity=8, quota=16.0).threads == 8  # a quota above the cores: cores
    assert threads.decide({}, cores=8, affinity=8, quota=None).threads == 8


def test_affinity_is_respected():
    pol = threads.decide({}, cores=16, affinity=3, quota=None)
    assert pol.threads == 3 and "affinity" in pol.why
    assert threads.decide({}, cores=16, affinity=3, quota=2.0).threads == 2  # and the quota below it
    assert threads.decide({}, cores=4, affinity=None, quota=None).threads == 4  # no affinity call: the cores


def test_explicit_choices_win_in_order():
    assert threads.decide({"LABKIT_THREADS": "3", "OMP_NUM_THREADS": "1"}, cores=8, affinity=8).threads == 3
    pol = threads.decide({"OMP_NUM_THREADS": "5"}, cores=8, affinity=8, quota=1.0)
    assert pol.threads == 5 and pol.source == "OMP_NUM_THREADS" and not pol.adaptive and "kept" in pol.why
    assert threads.decide({"MKL_NUM_THREADS": "2"}, cores=8, affinity=8).source == "MKL_NUM_THREADS"
    assert threads.decide({"LABKIT_THREADS": "auto"}, cores=8, affinity=8, quota=1.0).threads == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_labkit_threads_is_a_clear_error(value):
    with pytest.raises(ValueError, match=rf"LABKIT_THREADS='{value}' is not a thread count.*positive integer"):
        threads.decide({"LABKIT_THREADS": value}, cores=2, affinity=2)


def _fresh(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter without any thread settings but ``env``; return its JSON line."""
    base = {k: v for k, v in os.environ.items() if k not in ("LABKIT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONPATH": ROOT, **env}, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = ("import json, torch, labkit; p = labkit.threads.policy(); "
         "print(json.dumps([torch.get_num_threads(), p.threads, p.source]))")


def test_import_applies_labkit_threads_to_torch_imported_later():
    code = ("import sys, json, labkit; assert 'torch' not in sys.modules; import torch; "
            "print(json.dumps([torch.get_num_threads(), torch.get_num_interop_threads(), "
            "type(torch.__loader__).__name__]))")
    n, interop, loader = _fresh(code, LABKIT_THREADS="1")
    assert (n, interop) == (1, 1) and loader != "_Loader"  # the import hook leaves torch's own loader in place


def test_import_applies_to_torch_imported_before():
    code = ("import json, torch; import labkit; "
            "print(json.dumps([torch.get_num_threads(), torch.get_num_interop_threads()]))")
    assert _fresh(code, LABKIT_THREADS="1") == [1, 1]


def test_omp_num_threads_is_kept():
    n, pol_threads, source = _fresh(PROBE, OMP_NUM_THREADS="1", LABKIT_THREADS="")
    assert (n, pol_threads, source) == (1, 1, "OMP_NUM_THREADS")


def test_torch_set_num_threads_before_labkit_is_kept():
    cores = os.cpu_count() or 1
    mine = cores + 3  # a count torch never picks by itself
    code = f"import torch; torch.set_num_threads({mine}); " + PROBE.replace("import json, torch, labkit; ",
                                                                            "import json, labkit; ")
    assert _fresh(code) == [mine, mine, "torch.set_num_threads"]


def test_invalid_labkit_threads_stops_the_import_with_the_reason():
    out = subprocess.run([sys.executable, "-c", "import labkit"], env={**os.environ, "PYTHONPATH": ROOT,
                         "LABKIT_THREADS": "lots"}, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "LABKIT_THREADS='lots' is not a thread count" in out.stderr


def test_doctor_says_why_under_a_simulated_quota(monkeypatch, capsys, tmp_path):
    _write(tmp_path, "cpu.max", "100000 100000\n")
    pol = threads.decide({}, cores=8, affinity=8, quota=threads.cpu_quota(tmp_path))
    monkeypatch.setattr(threads, "_POLICY", pol)
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    cli.main(["doctor"])
    out = capsys.readouterr().out
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines() if "  " in line)
    assert rows["cores seen"] == "8" and rows["cpu quota"] == "1 CPUs" and rows["threads chosen"] == "1 (labkit)"
    assert "quota allows 1 CPUs of the 8 visible" in rows["why"]


# --------------------------------------------------------------------------------------------- for_work
@pytest.fixture
def two_adaptive_threads(monkeypatch):
    """torch at 2 threads under a policy that lets for_work decide (as on an unpinned 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "_POLICY", threads.decide({}, cores=2, affinity=2, quota=None))
    monkeypatch.setattr(threads, "busy_neighbours", lambda samples=3: 0)  # a quiet machine unless a test says
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("text, running", [("0.61 2.22 2.21 3/134 23948\n", 3), ("1.0 1.0 1.0 12/900 1", 12),
                                           ("", None), ("0.1 0.2 0.3", None), ("a b c x/y 1", None)])
def test_parse_loadavg(text, running):
    assert threads.parse_loadavg(text) == running


def test_busy_neighbours_counts_others_not_this_process(monkeypatch):
    monkeypatch.setattr(threads, "_NEIGHBOURS", [])
    monkeypatch.setattr(threads, "_own_running", lambda: 3)  # this process: 3 threads running
    loads = iter(["0.0 0.0 0.0 5/100 1", "0.0 0.0 0.0 4/100 1", "0.0 0.0 0.0 6/100 1"])
    monkeypatch.setattr(threads, "_read", lambda path: next(loads) if path.name == "loadavg" else None)
    assert threads.busy_neighbours(samples=3) == 1  # the fewest others over the samples: a blip is not a neighbour
    assert threads.busy_neighbours(samples=3) == 1  # cached: no further reads (the iterator is spent)
    monkeypatch.setattr(threads, "_NEIGHBOURS", [])
    monkeypatch.setattr(threads, "_read", lambda path: None)  # no /proc (macOS): unknown, not zero
    assert threads.busy_neighbours() is None


def test_a_busy_neighbour_takes_a_core_from_any_work(monkeypatch, two_adaptive_threads):
    monkeypatch.setattr(threads, "barrier_cost", lambda n: 2e-6)  # the probe happened to see a cheap barrier
    monkeypatch.setattr(threads, "busy_neighbours", lambda samples=3: 1)  # but one core is taken
    assert threads.threads_for(1e7) == 1 and threads.threads_for(1e11) == 1  # long ops too: a barrier waits a slice
    monkeypatch.setattr(threads, "_POLICY", threads.decide({}, cores=8, affinity=8))
    assert threads.threads_for(1e11, 4) == 4  # 8 cores, 1 busy: 7 free, 4 threads fit
    monkeypatch.setattr(threads, "busy_neighbours", lambda samples=3: 6)
    assert threads.threads_for(1e11, 4) == 2  # 2 free cores left
    monkeypatch.setattr(threads, "busy_neighbours", lambda samples=3: None)  # unknown: decide by size alone
    assert threads.threads_for(1e11, 4) == 4


def test_for_work_keeps_threads_when_the_barrier_is_cheap_and_drops_them_when_not(monkeypatch,
                                                                                   two_adaptive_threads):
    op = 1e7  # 10 MFLOP: ~0.3 ms on a core, 0.17 ms per thread
    monkeypatch.setattr(threads, "barrier_cost", lambda n: 2e-6)  # idle: a couple of microseconds
    with threads.for_work(op) as used:
        assert used == 2 and torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "barrier_cost", lambda n: 3e-3)  # a descheduled thread: a scheduler slice
    with threads.for_work(op) as used:
        assert used == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2  # restored


def test_for_work_decides_by_size_without_probing_at_the_extremes(monkeypatch, two_adaptive_threads):
    def no_probe(n):
        raise AssertionError("probed")

    monkeypatch.setattr(threads, "barrier_cost", no_probe)
    assert threads.threads_for(1e3) == 1  # far too small for any barrier
    assert threads.threads_for(1e11) == 2  # seconds per op: a stall is noise
    assert threads.threads_for(float("nan")) == 1


def test_for_work_restores_on_error_and_nests(monkeypatch, two_adaptive_threads):
    monkeypatch.setattr(threads, "barrier_cost", lambda n: 1.0)
    with pytest.raises(RuntimeError), threads.for_work(1e7):
        with threads.for_work(1e7) as inner:
            assert inner == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    for _ in threads.over(range(3), 1e7):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_for_work_leaves_an_explicit_choice_alone(monkeypatch, two_adaptive_threads):
    monkeypatch.setattr(threads, "barrier_cost", lambda n: 1.0)
    monkeypatch.setattr(threads, "_POLICY", threads.decide({"LABKIT_THREADS": "2"}, cores=2, affinity=2))
    with threads.for_work(1e7) as used:
        assert used == 2 and torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "_POLICY", threads.decide({}, cores=8, affinity=8))  # policy 8, torch at 2:
    with threads.for_work(1e7) as used:  # someone called torch.set_num_threads(2) since: kept
        assert used == 2


def test_barrier_cost_is_measured_and_cached():
    threads._PROBE.clear()
    first = threads.barrier_cost(2)
    assert first >= 0.0 and threads.barrier_cost(2) == first  # the cached value within PROBE_TTL


def test_layer_flops():
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32))
    assert threads.layer_flops(model, rows=256, copies=64) == 2.0 * 32 * 32 * 256 * 64
    assert threads.layer_flops(object(), rows=10) == float("inf")  # not a module: unknown, threads kept


def test_hot_gives_a_busy_neighbour_its_core_and_restores(monkeypatch, two_adaptive_threads):
    @threads.hot
    def work(x, *, scale=1):
        """Doc kept."""
        return torch.get_num_threads(), x * scale

    assert work(2, scale=3) == (2, 6) and work.__doc__ == "Doc kept."  # quiet machine: torch's threads
    monkeypatch.setattr(threads, "busy_neighbours", lambda samples=3: 1)
    assert work(1) == (1, 1)  # one core taken: one thread, whatever the work
    assert torch.get_num_threads() == 2  # restored
