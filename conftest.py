"""Repository-wide pytest set-up.

- Notebooks run in fast mode (``LABKIT_FAST=1``), inherited by the kernels nbval starts.
- torch's thread count is pinned (``LABKIT_THREADS=1``, also inherited by nbval kernels and subprocesses):
  test problems are laptop-scale, what ``labkit.threads.for_work`` runs on one thread whenever anything else
  is busy, and a fixed count keeps a loaded CI machine from stalling every barrier (the science tests took
  592 s with 2 threads and 48 s with 1 on a loaded 2-core machine). Set ``LABKIT_THREADS`` to override.
- nbval collects only the product notebooks in ``notebooks/``; fixture notebooks under ``tests/``
  (deliberately broken or student versions) are run by the tests that own them.
"""

import os
from pathlib import Path

os.environ.setdefault("LABKIT_FAST", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("LABKIT_THREADS", "1")

_NOTEBOOKS = (Path(__file__).parent / "notebooks").resolve()


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".ipynb":
        return collection_path.resolve().parent != _NOTEBOOKS
    return None
