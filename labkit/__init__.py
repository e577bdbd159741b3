"""labkit: a lab bench for neural-network training dynamics.

Submodules are imported lazily (:mod:`labkit._lazy`, the same mechanism as the
subpackages), so ``import labkit`` is cheap and one broken optional dependency
never hides the others::

    import labkit
    ds = labkit.data.gaussian_mixture(n=256, dim=2, classes=3, seed=0)
    model = labkit.models.mlp(2, [32, 32], 3, seed=0)
    hist = labkit.train.fit(model, ds, lr=0.1, steps=100)
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any

from labkit._lazy import lazy_exports

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "batchsize",
    "curvature",
    "data",
    "device",
    "edge",
    "exercises",
    "fast_mode",
    "fractal",
    "grokking",
    "hessian",
    "landscape",
    "linalg",
    "models",
    "mup",
    "notebook",
    "ntk",
    "parallel",
    "pick",
    "risk",
    "scaling",
    "seed",
    "signal",
    "structure",
    "testing",
    "threads",
    "tracking",
    "train",
    "trajectory",
    "viz",
    "widgets",
]

# Every top-level module, imported on first access (labkit.train, ...). A name whose file is not in this
# installation is an AttributeError when accessed, so modules that are still being written can be listed.
_SUBMODULES = {
    "batched", "batchsize", "curvature", "data", "edge", "exercises", "fractal", "grokking", "hessian", "linalg",
    "losses", "machine", "models", "mup", "notebook", "ntk", "optim", "parallel", "risk", "scaling", "signal",
    "structure", "testing", "threads", "tracking", "train", "trajectory", "viz", "widgets",
    "history", "lessons", "population", "prepare",  # issue 26: loop types, lesson code, populations, pre-run checks
    "landscape",
}

if TYPE_CHECKING:  # pragma: no cover
    import torch


__getattr__, __dir__ = lazy_exports(__name__, {}, submodules=_SUBMODULES)

from labkit import threads as _threads  # noqa: E402  (torch's thread count from the CPUs this process may use)

_threads.configure()


def device() -> torch.device:
    """The best available device: ``cuda``, then ``mps``, then ``cpu``.

    The environment variable ``LABKIT_DEVICE`` (e.g. ``cpu`` or ``cuda:1``)
    overrides the choice.
    """
    import torch

    forced = os.environ.get("LABKIT_DEVICE", "").strip()
    if forced:
        try:
            return torch.device(forced)
        except RuntimeError as err:
            raise ValueError(
                f"LABKIT_DEVICE={forced!r} is not a torch device; use e.g. 'cpu', 'cuda', "
                "'cuda:1' or 'mps'"
            ) from err
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed(n: int) -> None:
    """Seed torch, numpy and Python's ``random`` with ``n``."""
    import numpy as np
    import torch

    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"seed must be a non-negative int, got {n!r}")
    random.seed(n)
    np.random.seed(n % 2**32)
    torch.manual_seed(n)


def fast_mode() -> bool:
    """True when ``LABKIT_FAST`` is set to a true value (CI and quick previews)."""
    return os.environ.get("LABKIT_FAST", "").strip().lower() not in ("", "0", "false", "no")


def pick(full: Any, fast: Any) -> Any:
    """``fast`` in fast mode (``LABKIT_FAST=1``), else ``full``: ``steps = pick(500, 50)``."""
    return fast if fast_mode() else full
