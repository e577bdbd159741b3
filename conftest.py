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
"""

import os
from pathlib import Path

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
