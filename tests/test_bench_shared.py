"""benchmarks/bench_shared.py runs end to end at test size, and leaves no co-tenant behind."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_shared.py"


def _load():
    spec = importlib.util.spec_from_file_location("labkit_bench_shared", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_shared_quick(capsys):
    bench = _load()
    assert bench.main(["--quick", "--paths", "norms"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| norms |"))
    assert row.count(" s (") == 5  # idle labkit, 1 co-tenant x2, quota x2, each with its ratio to idle torch
    assert "load average" in out and "quota labkit: [2]" in out and "quota torch default: [8]" in out


def test_co_tenants_are_killed_even_on_errors():
    bench = _load()
    with pytest.raises(RuntimeError), bench.CoTenants(1) as busy:
        procs = list(busy.procs)
        assert procs[0].poll() is None  # running
        raise RuntimeError("the timed run failed")
    assert all(p.poll() is not None for p in procs)
