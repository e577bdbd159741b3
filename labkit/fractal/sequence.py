"""A zoom sequence: frames from an outer window to an inner one, each rescanned, optionally saved as PNGs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.fractal.experiment import Experiment
from labkit.fractal.result import ScanResult
from labkit.fractal.scanner import scan

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
    **scan_kwargs: Any,
) -> list[ScanResult]:
    """Scan ``frames`` windows from ``start`` to ``end`` (each ``(x_range, y_range)``); write
    ``frame_000.png ...`` into ``folder`` when given. Returns the scans (stops early if ``cancel()``)."""
    exp = Experiment.preset(experiment) if isinstance(experiment, str) else experiment
    log = (exp.axes[0] != "offset", True) if log is None else log
    out = []
    for k, (xr, yr) in enumerate(interpolate_windows(start, end, frames, log)):
        if cancel is not None and cancel():
            break
        res = scan(exp, xr, yr, resolution, log=log, progress=False, **scan_kwargs)
        if folder is not None:
            res.to_png(Path(folder) / f"frame_{k:03d}.png")
        out.append(res)
    return out
