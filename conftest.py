"""Repository-wide pytest set-up.

- Notebooks run in fast mode (``LABKIT_FAST=1``), inherited by the kernels nbval starts.
- torch's thread count is pinned (``LABKIT_THREADS=1``, also inherited by nbval kernels and subprocesses):
  test problems are laptop-scale, what ``labkit.threads.for_work`` runs on one thread whenever anything else
  is busy, and a fixed count keeps a loaded CI machine from stalling every barrier (the science tests took
  592 s with 2 threads and 48 s with 1 on a loaded 2-core machine). Set ``LABKIT_THREADS`` to override.
- nbval collects only the product notebooks in ``notebooks/``; fixture notebooks under ``tests/``
  (deliberately broken or student versions) are run by the tests that own them.
- ``pytest --fast`` is the developer loop (CONTRIBUTING.md): no notebooks, no ``tests/science``, no
  ``tests/browser`` and no test marked ``slow`` (student builds, the docs build, Dask clusters). A bare
  ``pytest`` (what CI runs) still runs everything.
- Shared test problems (one matrix of model x loss x dtype, as curvlinops' test cases): ``build_problem(arch,
  loss, dtype)`` (the ``make_problem`` fixture) is a :class:`labkit.risk.Risk` over 12 examples in three unequal
  batches (5, 5, 2): an MLP 3-5-3 (tanh) or a CNN on 1x4x4 images, cross-entropy on labels ``i % 3`` or MSE on
  Gaussian targets; ``problem`` runs a test on every float64 combination, ``problem32`` on float32.
- Seed spread: a science test that measures its claim over seeds (:func:`labkit.population.spread.spread`) hands
  the result to the ``record_spread`` fixture; the terminal summary lists every recorded spread ("seed spread"
  section). Kept in the test reports (``user_properties``, so junit XML and xdist carry it), never written to a file.
"""

import os
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("LABKIT_FAST", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("LABKIT_THREADS", "1")

_ROOT = Path(__file__).parent.resolve()
_NOTEBOOKS = _ROOT / "notebooks"
_NOT_FAST = (_ROOT / "tests" / "science", _ROOT / "tests" / "browser")


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true", default=False,
                     help="developer loop: skip notebooks, tests/science, tests/browser and tests marked slow")


def pytest_ignore_collect(collection_path, config):
    path = collection_path.resolve()
    if config.getoption("--fast", default=False):
        if path.suffix == ".ipynb" or any(path == d or d in path.parents for d in _NOT_FAST):
            return True
    if path.suffix == ".ipynb":
        return path.parent != _NOTEBOOKS
    return None


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast", default=False):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


# ---------------------------------------------------------------- seed spread

_SPREAD = "seed spread"


@pytest.fixture
def record_spread(request):
    """``record_spread(s)``: report a :class:`labkit.population.spread.Spread` (or a one-line string) in the
    terminal summary's "seed spread" section."""
    def record(spread: Any) -> None:
        text = spread.summary() if hasattr(spread, "summary") else str(spread)
        request.node.user_properties.append((_SPREAD, text))
    return record


def pytest_terminal_summary(terminalreporter):
    lines = [f"{r.nodeid}: {text}" for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])
             if getattr(r, "when", None) == "call" for name, text in r.user_properties if name == _SPREAD]
    if lines:
        terminalreporter.section(_SPREAD)
        for line in lines:
            terminalreporter.write_line(line)


# ---------------------------------------------------------------- shared test problems

ARCHS = ("mlp", "cnn")
LOSSES = ("cross_entropy", "mse")
CASES = [(a, loss) for a in ARCHS for loss in LOSSES]


def build_problem(arch: str, loss: str, dtype: torch.dtype | None = None, n: int = 12, seed: int = 0) -> Any:
    """A small model's risk: ``arch`` in ARCHS, ``loss`` in LOSSES, parameters and data in ``dtype``."""
    from labkit import models  # imported here: labkit reads LABKIT_THREADS (set above) when first imported
    from labkit.risk import Risk

    dtype = torch.float64 if dtype is None else dtype
    g = torch.Generator().manual_seed(seed)
    if arch == "mlp":
        model = models.mlp(3, [5], 3, "tanh", seed=seed)
        x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    else:
        model = models.cnn(image_size=4, channels=1, num_classes=3, width=2, activation="tanh", seed=seed)
        x = torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 3 if loss == "cross_entropy" else torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = y if loss == "cross_entropy" else y.to(dtype)
    return Risk(model.to(dtype), loss, (x.to(dtype), y), batch_size=5)  # unequal batches: 5, 5, 2


@pytest.fixture(params=CASES, ids=[f"{a}-{loss}" for a, loss in CASES])
def problem(request) -> Any:
    """Every model x loss in float64."""
    return build_problem(*request.param)


@pytest.fixture(params=CASES, ids=[f"{a}-{loss}-float32" for a, loss in CASES])
def problem32(request) -> Any:
    """Every model x loss in float32."""
    return build_problem(*request.param, dtype=torch.float32)


@pytest.fixture
def make_problem():
    """:func:`build_problem` for a test that needs one particular combination."""
    return build_problem
