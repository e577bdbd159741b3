"""Static plotly figures for the objects labkit produces.

Every builder returns a fresh ``plotly.graph_objects.Figure`` in labkit's look
(:mod:`labkit.viz.theme`), with every axis labelled (and its scale named when
logarithmic). Inputs may be lists, numpy arrays or torch tensors; non-finite
values (a diverged run) are drawn as gaps, never as errors::

    fig = loss_curves(fit_many(...), labels=None)      # labels from the varied hparams
    fig = spectrum(eigenvalues, reference={"2/lr": 2 / lr})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from labkit.viz import theme

__all__ = ["density", "heatmap", "image2d", "intervals", "loss_curves", "spectrum", "tradeoff"]


def as_array(values: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``values`` (list, numpy array, torch tensor) as a float64 numpy array, shape-checked."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers (list, numpy array or tensor), got {type(values).__name__}") from err
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape {arr.shape}")
    return arr


def _eigenvalues(obj: Any, name: str) -> np.ndarray:
    """1-D eigenvalues from an array-like or from a result object with a ``.values`` array (e.g. ``EigResult``)."""
    if not (hasattr(obj, "detach") or isinstance(obj, (np.ndarray, list, tuple))) and hasattr(obj, "values"):
        obj = obj.values
    return as_array(obj, name, 1)


def finite_or_none(arr: np.ndarray) -> list[float | None]:
    """A JSON-safe list: non-finite entries become ``None`` (plotly draws a gap)."""
    arr = np.asarray(arr, dtype=float)
    return [float(v) if math.isfinite(v) else None for v in arr.tolist()]


#: On a log loss axis, values more than this many times the starting loss are cut: a diverging run leaves the
#: plot through the top instead of stretching the axis over dozens of decades and squashing the other runs.
DIVERGED_CUT = 1e4


def cut_above(values: np.ndarray, start: float) -> np.ndarray:
    """``values`` with entries above ``DIVERGED_CUT * start`` set to nan (drawn as a gap)."""
    v = np.asarray(values, dtype=float)
    if not (math.isfinite(start) and start > 0):
        return v
    with np.errstate(invalid="ignore"):
        return np.where(v > DIVERGED_CUT * start, np.nan, v)


def first_value(values: Any) -> float:
    """The starting loss: the first step's largest finite value (over the members of a population), nan if
    none in the first few steps."""
    for row in values[:10]:
        row = np.asarray(row, dtype=float).ravel()
        row = row[np.isfinite(row)]
        if row.size:
            return float(row.max())
    return math.nan


def palette(n: int) -> list[str]:
    """``n`` distinct colours: labkit's qualitative colours, or a sampled scale beyond 8."""
    if n <= len(theme.COLORS):
        return theme.COLORS[:n]
    return sample_colorscale("Viridis", [i / max(n - 1, 1) for i in range(n)])


def _scale(title: str, log: bool) -> str:
    return f"{title} (log scale)" if log else title


# ---------------------------------------------------------------- training curves


def _is_history(h: Any) -> bool:
    """Duck typing for :class:`labkit.train.History` (viz does not import train: train imports viz)."""
    return all(hasattr(h, a) for a in ("loss", "lr", "eval", "eval_steps", "hparams", "diverged"))


def _histories(histories: Any) -> tuple[list[Any], list[str] | None]:
    if _is_history(histories):
        return [histories], None
    if isinstance(histories, Mapping):
        hs, labels = list(histories.values()), [str(k) for k in histories]
    else:
        hs, labels = list(histories), None
    if not all(_is_history(h) for h in hs):
        raise TypeError("histories must be a History, a list of Histories or a dict {label: History}, "
                        f"got {type(histories).__name__}")
    return hs, labels


def ema(values: Any, beta: float) -> np.ndarray:
    """Debiased exponential moving average of a 1-D series (as in Adam: the first values are not pulled
    towards 0). Non-finite values are gaps (nan) and leave the average unchanged. ``beta`` in [0, 1) is the
    weight of the past; 0 returns the values."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    y = as_array(values, "values", 1)
    ok = np.isfinite(y)
    res = np.full_like(y, np.nan)
    yf = y[ok]
    if beta == 0.0 or not yf.size:
        res[ok] = yf
        return res
    # s_k = b^k s_0 + (1-b) b^k cumsum_j(b^-j y_j), in chunks short enough that b^-j stays finite
    out = np.empty_like(yf)
    chunk = max(1, int(200 / -np.log10(beta)))
    state = weight = 0.0
    for lo in range(0, yf.size, chunk):
        part = yf[lo:lo + chunk]
        k = np.arange(1, part.size + 1)
        bk = beta**k
        s_k = bk * state + (1 - beta) * bk * np.cumsum(part * beta ** -k)
        w_k = bk * weight + (1 - bk)
        out[lo:lo + part.size] = s_k / w_k
        state, weight = s_k[-1], w_k[-1]
    res[ok] = out
    return res


def _default_labels(hs: list[Any]) -> list[str]:
    """Label each run by the hyperparameters that differ between runs (e.g. ``lr=0.1, seed=2``)."""
    keys = [k for k in hs[0].hparams if len({repr(h.hparams.get(k)) for h in hs}) > 1]
    if not keys:
        return [f"run {i}" for i in range(len(hs))] if len(hs) > 1 else ["run"]
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    return [", ".join(f"{k}={fmt(h.hparams.get(k))}" for k in keys) for h in hs]


def loss_curves(
    histories: Any,
    metric: str = "loss",
    labels: Sequence[str] | None = None,
    log_y: bool | None = None,
    *,
    smooth: float | None = None,
    title: str | None = None,
    height: int = 380,
) -> go.Figure:
    """One curve per training run: ``metric`` against the step.

    ``histories`` is a :class:`labkit.train.History`, a list of them (e.g. from
    ``fit_many``) or a dict ``{label: History}``. ``metric="loss"`` is the
    training (mini-batch) loss at every step; ``"lr"`` the learning rate; any
    other name is an evaluation metric (``"accuracy"``, or ``"eval_loss"`` for
    ``History.eval["loss"]``) at ``History.eval_steps``. ``log_y=None`` uses a
    log axis for losses and learning rates and a linear one otherwise. A
    diverged run is drawn dashed with an x at its last value on the plot; on a
    log loss axis values above ``DIVERGED_CUT`` (1e4) times the starting loss
    are cut, so a diverging run leaves through the top instead of squashing
    the others into a thin band.
    ``smooth`` (a moving-average weight in [0, 1), see :func:`ema`) draws the
    raw curve faint and its moving average on top; ``None`` smooths the
    per-batch loss of mini-batch runs (``hparams["batch_size"]`` set) with 0.9.
    """
    hs, given = _histories(histories)
    if not hs:
        raise ValueError("histories is empty: nothing to plot")
    labels = list(labels) if labels is not None else (given or _default_labels(hs))
    if len(labels) != len(hs):
        raise ValueError(f"labels has {len(labels)} entries for {len(hs)} histories")
    key = "loss" if metric == "eval_loss" else metric
    if metric not in ("loss", "lr") and not any(key in h.eval for h in hs):
        have = sorted({k for h in hs for k in h.eval} | {"loss", "lr"} | ({"eval_loss"} if hs[0].eval else set()))
        raise ValueError(f"metric={metric!r} was not recorded; choose one of {have}")
    if log_y is None:
        log_y = "loss" in metric or metric == "lr"
    names = {"loss": "training loss", "lr": "learning rate", "eval_loss": "evaluation loss"}
    y_title = names.get(metric, metric)
    fig = theme.figure(title if title is not None else y_title, "step", _scale(y_title, log_y), log_y=log_y,
                       height=height)
    colors = palette(len(hs))
    series = []
    for h in hs:
        if metric in ("loss", "lr"):
            y = np.asarray(getattr(h, metric), dtype=float)
            series.append((np.arange(len(y)), y))
        else:
            y = np.asarray(h.eval.get(key, []), dtype=float)
            series.append((np.asarray(h.eval_steps[: len(y)]), y))
    if log_y and "loss" in metric:
        start = max((first_value(y) for _, y in series), default=math.nan)
        series = [(x, cut_above(y, start)) for x, y in series]
    for h, label, color, (x, y) in zip(hs, labels, colors, series):
        dash = "dash" if h.diverged else "solid"
        beta = smooth if smooth is not None else (0.9 if metric == "loss" and h.hparams.get("batch_size") else 0.0)
        if beta:
            fig.add_trace(go.Scatter(x=x, y=finite_or_none(y), mode="lines", name=f"{label} (per step)",
                                     opacity=0.3, line=dict(color=color, dash=dash, width=1), legendgroup=label,
                                     showlegend=False))
            y = ema(y, beta)
        fig.add_trace(go.Scatter(x=x, y=finite_or_none(y), mode="lines", legendgroup=label,
                                 name=f"{label} (moving average, {beta:g})" if beta else label,
                                 line=dict(color=color, dash=dash)))
        if h.diverged:
            ok = np.flatnonzero(np.isfinite(y))
            if ok.size:
                fig.add_trace(go.Scatter(x=[x[ok[-1]]], y=[y[ok[-1]]], mode="markers", legendgroup=label,
                                         marker=dict(symbol="x", size=10, color=theme.DIVERGED), showlegend=False,
                                         name=f"{label} diverged at step {h.diverged_at}"))
    fig.update_layout(showlegend=len(hs) > 1)
    return fig


# ---------------------------------------------------------------- spectra


def reference_line(x: Sequence[float], y: Sequence[float], label: str, dash: str = "dash") -> go.Scatter:
    """A grey dashed reference line drawn as a trace (correct on log axes too, unlike layout shapes)."""
    return go.Scatter(x=list(x), y=list(y), mode="lines", name=label, hoverinfo="name",
                      line=dict(color=theme.REFERENCE, dash=dash, width=1.5))


def _references(fig: go.Figure, reference: float | Mapping[str, float] | None, x0: float, x1: float) -> None:
    if reference is None:
        return
    refs = reference if isinstance(reference, Mapping) else {"reference": reference}
    for label, value in refs.items():
        fig.add_trace(reference_line([x0, x1], [float(value)] * 2, f"{label} = {float(value):.4g}"))
    fig.update_layout(showlegend=True)


def spectrum(
    values: Any,
    reference: float | Mapping[str, float] | None = None,
    *,
    labels: Sequence[str] | None = None,
    log_y: bool = False,
    title: str = "Eigenvalues",
    height: int = 380,
) -> go.Figure:
    """Eigenvalues as a stem plot against their rank (largest first).

    ``values`` is a 1-D array (or an object with ``.values``, such as an
    ``EigResult``), or a list of them / dict ``{label: values}`` to compare
    several spectra. ``reference`` draws dashed horizontal lines, e.g.
    ``{"2/lr": 2 / lr}`` for the edge of stability (Cohen et al. 2021).
    """
    if isinstance(values, Mapping):
        series, labels = list(values.values()), [str(k) for k in values]
    elif isinstance(values, (list, tuple)) and values and not np.isscalar(values[0]):
        series = list(values)
    else:
        series = [values]
    if labels is None:
        labels = ["eigenvalues"] if len(series) == 1 else [f"spectrum {i}" for i in range(len(series))]
    labels = list(labels)
    fig = theme.figure(title, "rank (largest first)", _scale("eigenvalue", log_y), log_y=log_y, height=height)
    for s, label, color in zip(series, labels, palette(len(series))):
        v = _eigenvalues(s, "values")
        v = v[np.argsort(-v, kind="stable")]
        rank = np.arange(1, len(v) + 1)
        xs = np.repeat(rank, 3).astype(float)  # stems: (r, 0) -> (r, v) -> gap
        base = min(v[v > 0].min(), 1.0) if log_y and (v > 0).any() else 0.0
        ys = np.stack([np.full_like(v, base), v, np.full_like(v, np.nan)], 1).ravel()
        fig.add_trace(go.Scatter(x=xs, y=finite_or_none(ys), mode="lines", line=dict(color=color, width=1.5),
                                 legendgroup=label, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=rank, y=finite_or_none(v), mode="markers", name=label, legendgroup=label,
                                 marker=dict(color=color, size=7)))
    fig.update_layout(showlegend=len(series) > 1)
    n = max((len(_eigenvalues(s, "values")) for s in series), default=1)
    _references(fig, reference, 0.5, n + 0.5)
    return fig


def density(
    grid: Any,
    density: Any,
    eigenvalues: Any = None,
    *,
    log_y: bool = True,
    floor: float = 1e-6,
    title: str = "Spectral density",
    height: int = 380,
) -> go.Figure:
    """A spectral density ``density(grid)`` (e.g. from stochastic Lanczos quadrature).

    ``log_y=True`` (default) shows the decades between the bulk and the
    outliers (Ghorbani, Krishnan & Xiao 2019). On the log axis values below
    ``floor`` times the peak are drawn at that floor (the axis title says so):
    the Gaussian tails of the smoothing kernel reach 1e-50 and would squeeze
    the bulk and the outliers into a thin band. ``eigenvalues`` (optional) are
    marked as a rug of ticks along the bottom.
    """
    x = as_array(grid, "grid", 1)
    y = as_array(density, "density", 1)
    if x.shape != y.shape:
        raise ValueError(f"grid and density must have the same length, got {x.shape} and {y.shape}")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor < 1:
        raise ValueError(f"floor must be a fraction of the peak in (0, 1), e.g. 1e-6, got {floor!r}")
    y_title = _scale("density", log_y)
    shown = y
    if log_y:
        finite = y[np.isfinite(y)]
        peak = float(finite.max()) if finite.size else 0.0
        if peak > 0:
            shown = np.where(np.isfinite(y), np.maximum(y, floor * peak), np.nan)
            y_title = f"density (log scale, floor {floor:.0e} \u00d7 peak)"
        else:
            shown = np.full_like(y, np.nan)
    fig = theme.figure(title, "eigenvalue", y_title, log_y=log_y, height=height)
    fig.add_trace(go.Scatter(x=x, y=finite_or_none(shown), mode="lines", name="density",
                             line=dict(color=theme.COLORS[0], width=2)))
    if eigenvalues is not None:
        ev = _eigenvalues(eigenvalues, "eigenvalues")
        fig.add_trace(go.Scatter(x=ev, y=np.zeros_like(ev), mode="markers", name="eigenvalues", yaxis="y2",
                                 marker=dict(symbol="line-ns-open", size=14, color=theme.COLORS[1])))
        fig.update_layout(yaxis2=dict(overlaying="y", range=[0, 1], visible=False))
    fig.update_layout(showlegend=eigenvalues is not None)
    return fig


# ---------------------------------------------------------------- matrices and scans


def heatmap(
    matrix: Any,
    x_label: str | None = None,
    y_label: str | None = None,
    symmetric: bool = False,
    *,
    title: str = "",
    colorscale: Any = None,
    colorbar_title: str | None = None,
    height: int = 420,
) -> go.Figure:
    """A matrix (e.g. a kernel Gram matrix) as a heatmap, row 0 at the top, square cells.

    ``symmetric=True`` centres a diverging colour scale on zero (for matrices
    with both signs, e.g. the change of an NTK during training).
    """
    z = as_array(matrix, "matrix", 2)
    kw: dict[str, Any] = {"colorscale": colorscale or ("RdBu_r" if symmetric else "Viridis")}
    if symmetric:
        finite = np.abs(z[np.isfinite(z)])
        bound = float(finite.max()) if finite.size else 1.0
        kw.update(zmid=0.0, zmin=-bound, zmax=bound)
    fig = theme.figure(title, x_label or "column index", y_label or "row index", height=height)
    fig.add_trace(go.Heatmap(z=z, colorbar=dict(title=colorbar_title or "value"), **kw))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False)
    fig.update_xaxes(constrain="domain", showgrid=False)
    return fig


def intervals(
    x: Any,
    mean: Any,
    lower: Any,
    upper: Any,
    *,
    name: str = "prediction",
    points: tuple[Any, Any] | None = None,
    truth: tuple[Any, Any] | None = None,
    title: str = "",
    x_label: str = "x",
    y_label: str = "f(x)",
    fig: go.Figure | None = None,
    color: str | None = None,
) -> go.Figure:
    """A predictive mean with a shaded interval ``[lower, upper]`` over a 1-D input ``x`` (sorted for drawing).

    ``points``: ``(x, y)`` drawn as black markers (training data); ``truth``: ``(x, y)`` held-out targets as
    open markers. Pass ``fig`` (and a ``color``) to add another band to an existing figure.
    """
    xs = as_array(x, "x").reshape(-1)
    arrays = [as_array(a, n).reshape(-1) for a, n in ((mean, "mean"), (lower, "lower"), (upper, "upper"))]
    if any(len(a) != len(xs) for a in arrays):
        raise ValueError(f"mean, lower and upper must each have one value per x ({len(xs)}), got "
                         f"{[len(a) for a in arrays]}")
    order = np.argsort(xs)
    xs, (mu, lo, hi) = xs[order], [a[order] for a in arrays]
    if fig is None:
        fig = theme.figure(title, x_label, y_label)
    color = color or theme.COLORS[len(fig.data) % len(theme.COLORS)]
    rgb = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    fig.add_scatter(x=np.concatenate([xs, xs[::-1]]), y=finite_or_none(np.concatenate([hi, lo[::-1]])),
                    fill="toself", fillcolor=f"rgba{(*rgb, 0.2)}", line=dict(width=0), hoverinfo="skip",
                    name=f"{name} interval")
    fig.add_scatter(x=xs, y=finite_or_none(mu), mode="lines", line=dict(color=color), name=f"{name} mean")
    if truth is not None:
        fig.add_scatter(x=as_array(truth[0], "truth x").reshape(-1), y=as_array(truth[1], "truth y").reshape(-1),
                        mode="markers", name="held-out targets",
                        marker=dict(symbol="circle-open", color=theme.REFERENCE, size=7))
    if points is not None:
        fig.add_scatter(x=as_array(points[0], "points x").reshape(-1), y=as_array(points[1], "points y").reshape(-1),
                        mode="markers", name="training data", marker=dict(color="black", size=8))
    return fig


def _edges(centres: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted cell centres (midpoints; geometric on a log axis)."""
    c = np.log10(centres) if log else centres
    if len(c) == 1:
        e = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[1:] + c[:-1]) / 2
        e = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    return 10**e if log else e


#: A window narrower than this fraction of its position is labelled as offsets from its centre.
OFFSET_BELOW = 1e-3


def _axis(centres: np.ndarray, log: bool, label: str, name: str) -> tuple[np.ndarray, bool, str, str]:
    """Cell edges, log flag, title and hover format for one image axis.

    A deep zoom (window width < ``OFFSET_BELOW`` x its centre) would need ticks of ~10 significant digits
    that differ only at the end: its axis is linear in the offset from the window centre, in units of a
    power of ten, and the centre is written once in the title. Over such a window a log axis is linear to
    better than 0.1%, so the cells stay evenly spaced.
    """
    edges = _edges(centres, log)
    lo, hi = float(edges.min()), float(edges.max())
    centre, width = (lo + hi) / 2, hi - lo
    if not (width > 0 and width < OFFSET_BELOW * abs(centre)):
        return edges, log, _scale(label, log), f"{name}=%{{{name}:.4g}}"
    power = math.floor(math.log10(width / 2))
    digits = min(17, math.ceil(math.log10(abs(centre) / width)) + 3)
    c = float(f"{centre:.{digits}g}")  # the centre as written in the title: offsets are exact from it
    shown = f"{c:.{digits}g}" if c >= 0 else f"({c:.{digits}g})"
    title = f"{label} \u2212 {shown}  (\u00d7 10<sup>{power}</sup>)"
    return (edges - c) / 10.0**power, False, title, f"{name}={c:.{digits}g} %{{{name}:+.4g}}e{power}"


def image2d(
    z: Any,
    x: Any = None,
    y: Any = None,
    log_x: bool = False,
    log_y: bool = False,
    colorscale: Any = "Viridis",
    zmin: float | None = None,
    zmax: float | None = None,
    x_label: str | None = None,
    y_label: str | None = None,
    *,
    title: str = "",
    colorbar_title: str | None = None,
    height: int = 480,
) -> go.Figure:
    """A 2-D scan ``z[i, j]`` at ``(x[j], y[i])`` (e.g. trainability over two learning rates).

    ``x`` and ``y`` are the cell centres (default: indices); on a log axis the
    cells are centred geometrically so they all have the same width. Values
    outside ``[zmin, zmax]`` saturate; NaN cells are left blank. An axis whose
    window is much narrower than its position (a deep zoom, width below
    ``OFFSET_BELOW`` of the centre) is labelled as the offset from the window's
    centre, in units of a power of ten, the centre shown once in its title.
    """
    zz = as_array(z, "z", 2)
    ny, nx = zz.shape
    xs = np.arange(nx, dtype=float) if x is None else as_array(x, "x", 1)
    ys = np.arange(ny, dtype=float) if y is None else as_array(y, "y", 1)
    if xs.shape != (nx,) or ys.shape != (ny,):
        raise ValueError(f"z has shape {zz.shape} (rows=y, columns=x) but x has {xs.size} and y has {ys.size} values")
    for name, v, log in (("x", xs, log_x), ("y", ys, log_y)):
        if log and (v <= 0).any():
            raise ValueError(f"log_{name}=True needs positive {name} values, got min {v.min():.3g}")
    x_edges, log_x, x_title, x_hover = _axis(xs, log_x, x_label or "x", "x")
    y_edges, log_y, y_title, y_hover = _axis(ys, log_y, y_label or "y", "y")
    fig = theme.figure(title, x_title, y_title, log_x=log_x, log_y=log_y, height=height)
    fig.add_trace(go.Heatmap(z=zz.astype(np.float32), x=x_edges, y=y_edges, colorscale=colorscale,
                             zmin=zmin, zmax=zmax, colorbar=dict(title=colorbar_title or "value"),
                             hovertemplate=f"{x_hover}<br>{y_hover}<br>z=%{{z:.4g}}<extra></extra>"))
    fig.update_xaxes(showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fig


# ---------------------------------------------------------------- batch size


def _fit_value(fit: Any, name: str) -> float:
    for key in (name, name.upper(), name.capitalize(), name[0].upper() + name[1:]):
        if isinstance(fit, Mapping) and key in fit:
            return float(fit[key])
        if hasattr(fit, key):
            return float(getattr(fit, key))
    raise TypeError(f"fit must provide {name!r} (as a key or attribute), got {fit!r}")


def tradeoff(
    steps: Any,
    examples: Any,
    batch_sizes: Any = None,
    fit: Any = None,
    *,
    title: str = "Steps vs examples to reach the target",
    height: int = 420,
) -> go.Figure:
    """The batch-size trade-off: optimisation steps S against examples E = B S, log-log.

    One marker per batch size (labelled with it). ``fit`` (a mapping or object
    with ``s_min`` and ``e_min``) adds McCandlish et al. (2018)'s curve
    ``(S/S_min - 1)(E/E_min - 1) = 1``, its asymptotes, and the critical batch
    size ``B_crit = E_min / S_min``. Runs that never reached the target
    (non-finite entries) are dropped.
    """
    s = as_array(steps, "steps", 1)
    e = as_array(examples, "examples", 1)
    if s.shape != e.shape:
        raise ValueError(f"steps and examples must have the same length, got {s.size} and {e.size}")
    b = None if batch_sizes is None else as_array(batch_sizes, "batch_sizes", 1)
    if b is not None and b.shape != s.shape:
        raise ValueError(f"batch_sizes must have one entry per point, got {b.size} for {s.size}")
    ok = np.isfinite(s) & np.isfinite(e) & (s > 0) & (e > 0)
    fig = theme.figure(title, _scale("examples processed E", True), _scale("optimisation steps S", True),
                       log_x=True, log_y=True, height=height)
    text = [f"B={v:g}" for v in b[ok]] if b is not None else None
    fig.add_trace(go.Scatter(x=e[ok], y=s[ok], mode="markers+text" if text else "markers", text=text,
                             textposition="top right", name="measured", marker=dict(size=9, color=theme.COLORS[0])))
    if fit is not None:
        s_min, e_min = _fit_value(fit, "s_min"), _fit_value(fit, "e_min")
        b_crit = e_min / s_min
        lo = min(b[ok].min() if b is not None and ok.any() else b_crit, b_crit) / 8
        hi = max(b[ok].max() if b is not None and ok.any() else b_crit, b_crit) * 8
        bb = np.geomspace(lo, hi, 200)
        fig.add_trace(go.Scatter(x=e_min * (1 + bb / b_crit), y=s_min * (1 + b_crit / bb), mode="lines",
                                 name=f"fit, B_crit = {b_crit:.3g}", line=dict(color=theme.COLORS[1])))
        ex, sx = e_min * (1 + bb / b_crit), s_min * (1 + b_crit / bb)
        fig.add_trace(reference_line([ex.min(), ex.max()], [s_min, s_min], f"S_min = {s_min:.3g}", "dot"))
        fig.add_trace(reference_line([e_min, e_min], [sx.min(), sx.max()], f"E_min = {e_min:.3g}", "dot"))
    return fig
