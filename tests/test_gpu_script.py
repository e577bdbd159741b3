"""benchmarks/gpu.py runs every code path on the CPU at test size (on a GPU machine it runs in full)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_gpu_script_tiny_on_cpu(capsys):
    spec = importlib.util.spec_from_file_location("labkit_gpu_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.main(["--device", "cpu", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert "all correctness checks passed" in out
    assert "| fractal paper float64" in out and "extrapolated" in out
