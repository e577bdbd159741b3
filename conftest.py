"""Repository-wide pytest set-up.

- Notebooks run in fast mode (``LABKIT_FAST=1``), inherited by the kernels nbval starts.
- nbval collects only the product notebooks in ``notebooks/``; fixture notebooks under ``tests/``
  (deliberately broken or student versions) are run by the tests that own them.
"""

import os
from pathlib import Path

os.environ.setdefault("LABKIT_FAST", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")

_NOTEBOOKS = (Path(__file__).parent / "notebooks").resolve()


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".ipynb":
        return collection_path.resolve().parent != _NOTEBOOKS
    return None
