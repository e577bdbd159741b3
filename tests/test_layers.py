"""Layers point one way: each layer imported alone, in a fresh interpreter, pulls in nothing above it.

data/models -> core (risk, curvature, linalg, testing) -> train -> probes (hessian, ntk, batchsize) -> viz
-> widgets and notebooks. A module may import a higher layer lazily inside a function (a result's
``.figure()`` calling viz); what is checked here is what importing it loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORE = ["labkit.linalg", "labkit.risk", "labkit.curvature", "labkit.testing"]  # these load data, models, losses
ABOVE_CORE = ["labkit.train", "labkit.tracking", "labkit.hessian", "labkit.ntk", "labkit.batchsize",
              "labkit.viz", "labkit.widgets", "labkit.exercises", "labkit.fractal"]
PROBES = ["labkit.hessian", "labkit.ntk", "labkit.batchsize"]
UI = ["labkit.viz", "labkit.widgets", "plotly", "ipywidgets"]

CASES = [(m, ABOVE_CORE + UI) for m in CORE]
CASES += [("labkit.train", ["labkit.tracking", *PROBES, *UI]), ("labkit.tracking", PROBES + UI)]
CASES += [(m, UI) for m in PROBES]
CASES += [("labkit.batched", ["labkit.tracking", *PROBES, *UI])]  # part of train's layer
CASES += [("labkit.machine", ["labkit.risk", "labkit.curvature", *ABOVE_CORE, *UI])]  # below the core
CASES += [("labkit.threads", ["torch", "labkit.machine", "labkit.data", "labkit.models", *CORE, *ABOVE_CORE, *UI])]


def _loaded(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module,forbidden", CASES, ids=[c[0] for c in CASES])
def test_importing_a_layer_loads_nothing_above_it(module, forbidden):
    loaded = _loaded(module)
    assert module in loaded
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, f"importing {module} loaded {bad}"


def test_the_check_can_fail():
    """Negative control: a probe does load train and the core (the same check flags it)."""
    loaded = _loaded("labkit.hessian")
    assert "labkit.train" in loaded and "labkit.curvature" in loaded
