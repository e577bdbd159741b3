"""A zoom sequence: frames from an outer window to an inner one, each rescanned, optionally saved as PNGs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import _checks
from labkit.fractal.experiment import Experiment
from labkit.fractal.result import ScanResult
from labkit.fractal.scanner import scan
from labkit.machine import MAX_MEMORY

__all__ = ["interpolate_windows", "zoom_sequence"]


def _interp_axis(a: tuple[float, float], b: tuple[float, float], t: float, log: bool) -> tuple[float, float]:
    """Window at fraction t from a to b: width shrinks geometrically, the centre follows so b stays in view."""
    f = (lambda v: math.log(v)) if log else (lambda v: v)
    g = math.exp if log else (lambda v: v)
    ca, cb = (f(a[0]) + f(a[1])) / 2, (f(b[0]) + f(b[1])) / 2
    wa, wb = f(a[1]) - f(a[0]), f(b[1]) - f(b[0])
    w = wa * (wb / wa) ** t
    c = cb if wa == wb else ca + (cb - ca) * (wa - w) / (wa - wb)
    return g(c - w / 2), g(c + w / 2)


def interpolate_windows(start: tuple, end: tuple, frames: int, log: tuple[bool, bool]) -> list[tuple]:
    """``frames`` windows ``((x_lo, x_hi), (y_lo, y_hi))`` from ``start`` to ``end`` (both included)."""
    ts = [k / (frames - 1) for k in range(frames)] if frames > 1 else [1.0]
    return [tuple(_interp_axis(start[i], end[i], t, log[i]) for i in range(2)) for t in ts]


def zoom_sequence(
    experiment: Experiment | str,
    start: tuple,
    end: tuple,
    frames: int = 8,
    resolution: int = 64,
    *,
    folder: str | Path | None = None,
    log: tuple[bool, bool] | None = None,
    cancel: Callable[[], bool] | None = None,
    executor: Any = None,
    **scan_kwargs: Any,
) -> list[ScanResult]:
    """Scan ``frames`` windows from ``start`` to ``end`` (each ``(x_range, y_range)``); write
    ``frame_000.png ...`` into ``folder`` when given (created if missing; each frame written atomically).
    Returns the scans (stops early if ``cancel()``). All frames are kept, so ``max_memory`` (bytes,
    default 1 GiB) must hold ``frames`` results: a larger request is refused before anything runs.
    With an ``executor`` (:mod:`labkit.parallel`) every frame is one independent task, all submitted at once;
    frames are written as they finish and returned in order (identical to the in-process frames).
    """
    from labkit._io import ensure_folder
    from labkit.fractal.scanner import estimate_memory

    exp = Experiment.preset(experiment) if isinstance(experiment, str) else experiment
    log = (exp.axes[0] != "offset", True) if log is None else log
    _checks.positive("frames", frames, integer=True)
    max_memory = scan_kwargs.pop("max_memory", MAX_MEMORY)
    need = estimate_memory(exp, resolution)
    total = frames * need["result"] + need["per_cell"]
    if total > max_memory:
        raise ValueError(f"{frames} frames of {resolution}x{resolution} need at least {total / 2**30:.2f} GiB, "
                         f"more than max_memory={max_memory / 2**30:.2f} GiB; use fewer frames or pixels, "
                         "or raise max_memory")
    budget = max_memory - (frames - 1) * need["result"]  # what one frame's scan may use
    if folder is not None:
        ensure_folder(folder)
    windows = interpolate_windows(start, end, frames, log)
    if executor is not None:
        return _distributed(exp, windows, resolution, log, budget, folder, cancel, executor, scan_kwargs)
    out = []
    for k, (xr, yr) in enumerate(windows):
        if cancel is not None and cancel():
            break
        res = scan(exp, xr, yr, resolution, log=log, progress=False, max_memory=budget, **scan_kwargs)
        if folder is not None:
            res.to_png(Path(folder) / f"frame_{k:03d}.png")
        out.append(res)
    return out


def _frame(exp: Experiment, xr: tuple, yr: tuple, resolution: int, log: tuple, budget: int, kwargs: dict) -> ScanResult:
    return scan(exp, xr, yr, resolution, log=log, progress=False, max_memory=budget, **kwargs)


def _distributed(exp, windows, resolution, log, budget, folder, cancel, executor, kwargs) -> list[ScanResult]:
    from labkit import parallel

    args = [(exp, xr, yr, resolution, log, budget, kwargs) for xr, yr in windows]
    stream = parallel.submit(_frame, args, name="fractal-frame", executor=executor)
    done: dict[int, ScanResult] = {}
    for k, res in stream:
        if folder is not None:
            res.to_png(Path(folder) / f"frame_{k:03d}.png")
        done[k] = res
        if cancel is not None and cancel():
            stream.cancel()
            break
    return [done[k] for k in sorted(done)]
