"""What this machine is and how fast it multiplies: the device, its memory, and measured dense-matmul rates.

The benchmarks that quote a rate against the machine (``bench_train``, ``bench_limits``, ``bench_fractal``,
``gpu.py``) divide by the rate :func:`matmul_rate` measures in the same run, on the same device, in the same
dtype; ``labkit doctor`` prints the same numbers for a person to read::

    >>> import torch
    >>> from labkit import machine
    >>> machine.matmul_rate(torch.float64, n=64) > 0
    True
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable

import torch

__all__ = ["MAX_MEMORY", "describe", "matmul_rate", "sync", "timed"]

#: The default ``max_memory`` of every bounded computation (bytes): 1 GiB leaves room for torch and the notebook
#: on a 2 GB Binder. Each refusal names what would fit and how to raise it.
MAX_MEMORY = 1 << 30


def _as_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        from labkit import device as default_device

        return default_device()
    return torch.device(device)


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (on CUDA a timing is otherwise only the launch time)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], object], device: torch.device | str = "cpu", reps: int = 1) -> float:
    """Best wall time in seconds of ``reps`` calls of ``fn`` on ``device``, after one warm-up call."""
    if not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    fn()
    sync(device)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_rate(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                n: int | None = None, reps: int = 3) -> float:
    """FLOP/s of one dense ``n x n`` matmul in ``dtype`` on ``device`` (best of ``reps``): the ceiling that
    labkit's benchmarks quote their rates against. ``n`` defaults to 1024 on a CPU and 4096 on a GPU (large
    enough to reach the BLAS's peak, small enough to measure in well under a second)."""
    dev = _as_device(device)
    if n is None:
        n = 1024 if dev.type == "cpu" else 4096
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64).to(dev, dtype)
    b = torch.randn(n, n, generator=gen, dtype=torch.float64).to(dev, dtype)
    return 2 * n**3 / timed(lambda: a @ b, dev, reps=reps)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def describe(device: torch.device | str | None = None) -> dict[str, str]:
    """The device (labkit's default unless given): its name, its memory, and the CPU threads torch uses."""
    dev = _as_device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        name, memory = props.name, props.total_memory
    elif dev.type == "mps":
        name, memory = "Apple GPU (mps)", getattr(torch.mps, "recommended_max_memory", lambda: None)()
    else:
        name, memory = _cpu_name(), _cpu_memory()
    return {
        "device": str(dev),
        "name": name,
        "memory": "unknown" if memory is None else f"{memory / 2**30:.1f} GiB",
        "threads": str(torch.get_num_threads()),
    }
