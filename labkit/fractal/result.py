"""The outcome of a scan: grid, phases, scores, the equalised image, boundary, zoom and npz files.

Coordinates are plain float64 hyperparameter values (no centre-plus-offset
bookkeeping): the networks themselves train with float64 learning rates and
offsets, so a window whose pixel spacing is below a few units in the last place
could not be resolved by the training either. :func:`check_window` enforces
this: a pixel must span at least ``MIN_ULPS`` units in the last place of the
experiment's dtype (float64: relative spacing ~1.8e-15, about 13 decades below
a 64-pixel window of width 1; float32: ~1e-6).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from labkit import _checks
from labkit.fractal.experiment import Experiment

__all__ = ["MIN_ULPS", "ScanResult", "Window", "axis_values", "check_window", "equalise", "format_dimension", "window"]

#: A pixel must span at least this many units in the last place (else the grid is quantised).
MIN_ULPS = 8


def _check_axis(name: str, rng: Any, n: int, log: bool, eps: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers (lo, hi), got {rng!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}={rng!r} must be finite")
    if log and lo <= 0:
        raise ValueError(f"{name}={rng!r}: a log axis needs positive bounds (lo > 0); use log=False for a linear axis")
    if lo >= hi:
        raise ValueError(f"{name}={rng!r}: need lo < hi")
    spacing = (hi - lo) / (n - 1)
    ulp = eps * max(abs(lo), abs(hi))
    if spacing < MIN_ULPS * ulp:
        raise ValueError(
            f"{name}={rng!r} is too deep a window for this dtype at {n} pixels: a pixel spans "
            f"{spacing / ulp:.2g} units in the last place (need >= {MIN_ULPS}; relative width "
            f"{(hi - lo) / max(abs(lo), abs(hi)):.2g}). Use a wider window or fewer pixels."
        )
    return lo, hi


def check_window(x_range: Any, y_range: Any, resolution: tuple[int, int], log: tuple[bool, bool], eps: float) -> tuple:
    """Validate a window; return ``((x_lo, x_hi), (y_lo, y_hi))`` as floats."""
    for name, n in zip(("resolution[0]", "resolution[1]"), resolution):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {n!r}")
        if n < 2:
            raise ValueError(f"resolution must be >= 2 pixels per axis, got {n}")
    return (
        _check_axis("x_range", x_range, int(resolution[0]), log[0], eps),
        _check_axis("y_range", y_range, int(resolution[1]), log[1], eps),
    )


class Window(NamedTuple):
    """A checked scan window: the experiment (with these axes), the axes, the ranges, log flags and cell values."""

    experiment: Experiment
    axes: tuple[str, str]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log: tuple[bool, bool]
    x: np.ndarray
    y: np.ndarray


def window(experiment: Experiment | str, x_range: Any, y_range: Any, resolution: int | tuple[int, int],
           axes: tuple[str, str] | None = None, log: bool | tuple[bool, bool] | None = None) -> Window:
    """The one reading of :func:`labkit.fractal.scan`'s window arguments (defaults from the experiment: its axes,
    its first window, log-spaced learning-rate axes and a linear offset axis), checked."""
    exp = Experiment.preset(experiment) if isinstance(experiment, str) else experiment
    if not isinstance(exp, Experiment):
        raise TypeError(f"experiment must be an Experiment or a preset name, got {type(experiment).__name__}")
    axes = exp.axes if axes is None else tuple(axes)
    if axes != exp.axes:
        exp = exp.replace(axes=axes)
    x_range = exp.x_range if x_range is None else x_range
    y_range = exp.y_range if y_range is None else y_range
    nx, ny = (resolution, resolution) if not isinstance(resolution, (tuple, list)) else resolution
    if log is not None and not isinstance(log, bool) and (
            not isinstance(log, (tuple, list)) or len(log) != 2 or not all(isinstance(v, bool) for v in log)):
        raise ValueError(f"log={log!r} is not supported; give True, False, None (log-spaced learning-rate axes) "
                         "or a pair of booleans (x, y)")
    logs = (axes[0] != "offset", True) if log is None else (log, log) if isinstance(log, bool) else tuple(log)
    x_range, y_range = check_window(x_range, y_range, (nx, ny), logs, torch.finfo(exp.torch_dtype).eps)
    xs, ys = axis_values(x_range, nx, logs[0]), axis_values(y_range, ny, logs[1])
    return Window(exp, axes, x_range, y_range, logs, xs, ys)


def axis_values(rng: tuple[float, float], n: int, log: bool) -> np.ndarray:
    """``n`` values from lo to hi, geometric on a log axis (computed as lo + lo*expm1(.) to keep deep windows exact)."""
    lo, hi = rng
    t = np.linspace(0.0, 1.0, n)
    if not log:
        return lo + t * (hi - lo)
    v = lo + lo * np.expm1(t * np.log1p((hi - lo) / lo))
    v[-1] = hi
    return v


def equalise(score: np.ndarray) -> np.ndarray:
    """Sign-preserving histogram equalisation: negative scores onto [-1, -0.25], positive onto [0.25, 1] by rank."""
    out = np.full(score.shape, np.nan)
    flat, res = score.ravel(), out.ravel()
    for sel, lo, hi in ((flat < 0, -1.0, -0.25), (flat > 0, 0.25, 1.0)):
        idx = np.flatnonzero(sel)
        if idx.size == 1:
            res[idx] = (lo + hi) / 2
        elif idx.size > 1:
            ranks = np.empty(idx.size)
            ranks[np.argsort(flat[idx], kind="stable")] = np.arange(idx.size)
            res[idx] = lo + (hi - lo) * ranks / (idx.size - 1)
    return out


def zoom_window(center: Any, ranges: Any, log: tuple[bool, bool], factor: float) -> list[tuple[float, float]]:
    """The window ``factor``-fold smaller than ``ranges`` around ``center`` (geometric on log axes)."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    out = []
    for k, (c, (lo, hi)) in enumerate(zip(center, ranges)):
        if log[k]:
            half = math.log(hi / lo) / 2 / factor
            out.append((c * math.exp(-half), c * math.exp(half)))
        else:
            half = (hi - lo) / 2 / factor
            out.append((c - half, c + half))
    return out


def format_dimension(dim: float) -> str:
    """``"1.234"`` for a defined dimension, ``"undefined (not enough scales)"`` for NaN.

    A boundary between two phases is at least a curve, so a box count below 1 says the window has too few
    pixels to resolve it (e.g. 0.875 on a 64-pixel zoom): that is reported, not printed as a dimension.
    """
    if not math.isfinite(dim):
        return "undefined (not enough scales)"
    if dim < 1:
        return "not resolved at this size (box counting gave less than 1, a curve's dimension)"
    return f"{dim:.3f}"


def _mid(a: float, b: float, log: bool) -> float:
    return math.sqrt(a * b) if log else (a + b) / 2


@dataclass
class ScanResult:
    """A scanned window. Arrays are ``(ny, nx)``: row ``i`` is ``y[i]``, column ``j`` is ``x[j]``."""

    experiment: Experiment
    axes: tuple[str, str]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log: tuple[bool, bool]
    x: np.ndarray
    y: np.ndarray
    converged: np.ndarray
    score: np.ndarray
    complete: bool = True
    wall_time: float = 0.0
    device: str = "cpu"
    meta: dict[str, Any] = field(default_factory=dict)
    sharpness: np.ndarray | None = None  # (ny, nx) preconditioned sharpness at init (scan(measure="sharpness"))

    @property
    def resolution(self) -> tuple[int, int]:
        return len(self.x), len(self.y)

    def image(self) -> np.ndarray:
        """The equalised image in [-1, 1] (converged < 0 blue side, diverged > 0 red side; NaN = unscanned)."""
        return equalise(self.score)

    def rgb(self) -> np.ndarray:
        """``(ny, nx, 3)`` uint8 colours of :meth:`image` on labkit's diverging scale (row 0 = lowest y)."""
        from labkit.fractal.png import colorize

        return colorize(self.image())

    @property
    def done(self) -> np.ndarray:
        """``(ny, nx)`` bool: the cells that were trained (all of them unless the scan was interrupted)."""
        return ~np.isnan(self.score)

    @property
    def cells_done(self) -> int:
        """How many cells were trained (cells are scanned row by row, lowest y first)."""
        return int(self.done.sum())

    def converged_fraction(self) -> float:
        """Fraction of the **finished** cells that converged (NaN if none finished)."""
        n = self.cells_done
        return float(self.converged[self.done].sum() / n) if n else float("nan")

    def summary(self) -> str:
        """One line: size, cells done (if partial), converged fraction and boundary dimension (when defined)."""
        nx, ny = self.resolution
        head = f"{self.experiment.name}: {nx}x{ny} x {self.experiment.steps} steps"
        if not self.complete:
            head += f" PARTIAL ({self.cells_done:,} of {nx * ny:,} cells done; the rest are NaN)"
        conv = self.converged_fraction()
        conv_text = "no finished cells" if math.isnan(conv) else f"converged {conv:.1%}"
        return f"{head}; {conv_text}; boundary dimension {self.dimension_text()}"

    def boundary(self) -> np.ndarray:
        """``(ny-1, nx-1)`` bool: 2x2 pixel blocks containing both phases (the score changes sign).

        Only blocks of finished cells count, so the edge of an interrupted scan is no boundary.
        """
        c, d = self.converged, self.done
        blocks = np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, :-1], c[1:, 1:]])
        finished = d[:-1, :-1] & d[:-1, 1:] & d[1:, :-1] & d[1:, 1:]
        return blocks.any(0) & ~blocks.all(0) & finished

    def dimension(self) -> float:
        """Box-counting dimension of :meth:`boundary` (NaN when undefined: too few scales or too little boundary).

        Uses :func:`~labkit.fractal.dimension.box_counting_dimension` with its own rule for how many scales a
        fit needs; a partial scan is measured on its finished rows only. Show it with :func:`format_dimension`.
        """
        from labkit.fractal.dimension import box_counting_dimension

        b = self.boundary()
        if not self.complete:
            rows = np.flatnonzero(~self.done.all(axis=1))
            b = b[: max(0, (rows[0] if rows.size else len(self.y)) - 1)]  # blocks whose two rows are finished
            if b.shape[0] < 2:
                return float("nan")
        return float(box_counting_dimension(b)[0])

    def nearest_boundary(self, point: tuple[float, float] | None = None) -> tuple[float, float]:
        """Centre of the boundary block nearest ``point`` (default: the window centre), in data coordinates."""
        b = np.argwhere(self.boundary())
        if b.size == 0:
            raise ValueError("this window has no boundary pixels (only one phase); widen the window")
        if point is None:
            ti, tj = (len(self.y) - 2) / 2, (len(self.x) - 2) / 2
        else:
            tj = np.interp(self._axis_t(point[0], 0), np.linspace(0, 1, len(self.x)), np.arange(len(self.x)))
            ti = np.interp(self._axis_t(point[1], 1), np.linspace(0, 1, len(self.y)), np.arange(len(self.y)))
        i, j = b[np.argmin((b[:, 0] - ti) ** 2 + (b[:, 1] - tj) ** 2)]
        return _mid(self.x[j], self.x[j + 1], self.log[0]), _mid(self.y[i], self.y[i + 1], self.log[1])

    def _axis_t(self, v: float, k: int) -> float:
        lo, hi = (self.x_range, self.y_range)[k]
        if self.log[k]:
            return math.log(v / lo) / math.log(hi / lo)
        return (v - lo) / (hi - lo)

    def zoom(self, a: Any, b: Any = 10.0) -> tuple[tuple[float, float], tuple[float, float]]:
        """New ranges: ``zoom((x, y), factor)`` shrinks the window ``factor``-fold around a point
        (geometrically on log axes); ``zoom(x_range, y_range)`` checks a window. Raises ValueError if the
        window is deeper than the dtype allows (see :data:`MIN_ULPS`).
        """
        import torch

        if np.ndim(b) == 0:
            a, b = zoom_window(a, (self.x_range, self.y_range), self.log, float(b))
        eps = torch.finfo(self.experiment.torch_dtype).eps
        return check_window(a, b, self.resolution, self.log, eps)

    def figure(self, title: str | None = None, height: int = 480) -> Any:
        """A plotly heatmap of :meth:`image` on labkit's diverging scale (``labkit.viz.image2d``)."""
        from labkit.viz import image2d, theme

        ax = {"lr_in": "input-layer learning rate", "lr_out": "output-layer learning rate",
              "offset": "input-weight offset", "lr": "learning rate"}
        title = title if title is not None else f"{self.experiment.name}: converged (blue) / diverged (red)"
        return image2d(self.image(), self.x, self.y, self.log[0], self.log[1], colorscale=theme.DIVERGING,
                       zmin=-1.0, zmax=1.0, x_label=ax[self.axes[0]], y_label=ax[self.axes[1]], title=title,
                       colorbar_title="equalised score", height=height)

    def write_figure(self, path: str | Path, title: str | None = None) -> tuple[Path, str]:
        """Write :meth:`figure` (axes, colour bar, title) for use outside a notebook; return ``(path, note)``.

        A static image (``.png``/``.svg``/``.pdf`` path) needs plotly's renderer ``kaleido``; where it is
        missing or fails, the documented fallback is a self-contained HTML figure (plotly.js inlined, opens
        offline in any browser) written next to it with ``.html`` appended, and ``note`` says why.
        An ``.html`` path is written as HTML directly.
        """
        from labkit._io import write_bytes, write_text

        path = Path(path)
        fig = self.figure(title)
        note = ""
        if path.suffix.lower() in (".png", ".svg", ".pdf"):
            try:
                data = fig.to_image(format=path.suffix[1:].lower(), width=720, height=560, scale=2)
            except Exception as err:  # kaleido missing, or its browser missing: fall back to HTML
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                note = f"no static renderer ({first[:160]}); wrote a self-contained HTML figure instead"
                path = path.with_name(path.name + ".html")
            else:
                return write_bytes(path, data), "static image via kaleido"
        elif path.suffix.lower() != ".html":
            raise ValueError(f"path must end in .png, .svg, .pdf or .html, got {str(path)!r}")
        write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
        return path, note or "self-contained HTML figure"

    def to_png(self, path: str | Path, scale: int = 1) -> Path:
        """Write :meth:`image` as a PNG at ``path`` (top row = highest y), ``scale``x nearest-neighbour enlarged.

        The write is atomic and goes exactly to ``path`` (its folder must exist).
        """
        from labkit.fractal.png import write_png

        _checks.positive("scale", scale, integer=True)
        rgb = self.rgb()[::-1]
        if scale > 1:
            rgb = rgb.repeat(scale, 0).repeat(scale, 1)
        return write_png(path, rgb)

    def dimension_text(self) -> str:
        """:meth:`dimension` for people: ``"1.234"``, or why it is undefined (no boundary, not enough scales)."""
        if not self.boundary().any():
            return "undefined (no boundary in this window: one phase only)"
        return format_dimension(self.dimension())

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Save as a compressed ``.npz`` with all metadata (JSON), loadable anywhere with :meth:`load`.

        ``.npz`` is appended when ``path`` does not end in it (``"run.v1"`` -> ``"run.v1.npz"``; the name is
        kept, never replaced); the returned path says where it went. A folder is refused. The write is atomic.
        """
        from labkit._io import atomic, with_suffix

        path = with_suffix(path, ".npz")
        import labkit

        meta = dict(experiment=self.experiment.to_dict(), axes=list(self.axes), x_range=list(self.x_range),
                    y_range=list(self.y_range), log=list(self.log), complete=self.complete,
                    cells_done=self.cells_done, wall_time=self.wall_time, device=self.device,
                    labkit=labkit.__version__, meta=self.meta)
        with atomic(path) as f:  # a file object: numpy writes exactly here and adds no suffix of its own
            extra = {} if self.sharpness is None else {"sharpness": self.sharpness}
            np.savez_compressed(f, x=self.x, y=self.y, converged=self.converged, score=self.score,
                                meta=np.array(json.dumps(meta)), **extra)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScanResult:
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            exp = meta["experiment"]
            exp.update(axes=tuple(exp["axes"]), x_range=tuple(exp["x_range"]), y_range=tuple(exp["y_range"]))
            return cls(Experiment(**exp), tuple(meta["axes"]), tuple(meta["x_range"]), tuple(meta["y_range"]),
                       tuple(meta["log"]), f["x"], f["y"], f["converged"], f["score"], meta["complete"],
                       meta["wall_time"], meta["device"], meta.get("meta", {}),
                       f["sharpness"] if "sharpness" in f.files else None)
