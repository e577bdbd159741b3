"""``pytest --fast`` (CONTRIBUTING.md) leaves out exactly the notebooks, tests/science, tests/browser and `slow`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["tests/science", "notebooks", "tests/test_parallel.py"]  # folders: --fast filters what is found


def _collected(*flags):
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *flags, *TARGETS], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_fast_leaves_out_notebooks_science_browser_and_slow():
    full, fast = _collected(), _collected("--fast")
    assert any(i.startswith("tests/science/") for i in full) and any(i.startswith("notebooks/") for i in full)
    assert not any(i.startswith(("tests/science/", "tests/browser/", "notebooks/")) for i in fast)
    slow = {i for i in full if i.startswith("tests/test_parallel.py")} - set(fast)
    assert slow and all(i.startswith("tests/test_parallel.py") for i in fast)  # the slow cluster tests went
    assert set(fast) < set(full)
