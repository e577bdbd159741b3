"""The curvature map: per cell of a trainability scan, the preconditioned sharpness at initialisation or later.

With one learning rate per layer, gradient descent's step is ``theta <- theta - D grad L`` (``D`` the per-parameter
learning rates), so near a point it is stable iff the top eigenvalue of ``D^(1/2) H D^(1/2)`` is below 2 (the
quadratic model; for one learning rate ``eta`` this is ``eta x lambda_max < 2``). :func:`sharpness_map` measures
that number at the scan's shared initialisation for every cell of a window: on ``("lr_in", "lr_out")`` axes the
Hessian ``H`` (the scan's own loss, ``P x P``, built once) is shared and each cell's ``D`` differs, so all cells
of a chunk run one lockstep Lanczos (:func:`labkit.linalg.lockstep.lockstep_eigenvalues`, one GEMM per product);
on ``("offset", "lr")`` axes ``H`` depends on the offset only and ``D = lr I``, so the map is
``lr x lambda_max(H(offset))`` with one dense eigenvalue per column. Reading the map beside the scan: below 2 the
linear model says the first steps contract; between 2 and the catapult limit (about 4 for the squared loss,
Lewkowycz et al. 2020) a network can still converge after a catapult; far above it diverges.

``sharpness_map(..., step=t)`` measures the same number after ``t`` steps of the scan's own dynamics (gradient
descent with the cell's per-layer learning rates on the scan's loss, mini-batches included): every cell then
has its own parameters and Hessian, so each chunk of cells is trained as one vectorised computation
(``vmap`` of the loss's gradient over the cells) and its Lanczos runs on per-cell Hessian-vector products
(``vmap`` of forward-over-reverse). A cell whose loss is no longer finite by step ``t`` is NaN: undefined.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from labkit import _checks, threads
from labkit.fractal.experiment import Experiment
from labkit.fractal.result import window
from labkit.linalg.lockstep import bytes_per_member, lockstep_eigenvalues
from labkit.machine import MAX_MEMORY

__all__ = ["CATAPULT", "STABLE", "band_check", "block_sharpness", "boundary_cells", "estimate_memory", "hessian",
           "loss_function", "sharpness_map", "trained_parameters"]

#: Gradient descent on a quadratic is stable iff the preconditioned sharpness is below this.
STABLE = 2.0
#: Above STABLE a wide network trained on the squared loss can still converge after a catapult, up to about this
#: (Lewkowycz et al. 2020, arXiv:2003.02218: 2 < eta lambda_0 < 4); far above it, it diverges.
CATAPULT = 4.0
_TOL = 1e-6
_CHUNK = 1024  # cells per lockstep run: the unit of work, so tiles and in-process runs give the same bits


def loss_function(exp: Experiment) -> Any:
    """``L(theta, idx=None)`` of the scan's network and data, ``theta = (W0.flatten(), W1.flatten())`` (``W0 (d,
    h)``, ``W1 (h, 1)``): the loss whose exact gradients the scanner follows, ``mean_i (f_i - y_i)^2`` over all
    points, or over the points ``idx`` (a step's mini-batch)."""
    x, y = exp.data()
    d, h, g = exp.input_dim, exp.width, exp.gain
    act = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda z: z}[exp.nonlinearity]
    x, y = x.to(exp.torch_dtype), y.to(exp.torch_dtype)

    def loss(theta: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        xb, yb = (x, y) if idx is None else (x.index_select(0, idx), y.index_select(0, idx))
        w0, w1 = theta[: d * h].view(d, h), theta[d * h:].view(h, 1)
        f = act(g * (xb @ w0) / math.sqrt(d)) @ w1 / h
        return (f - yb).square().mean()

    return loss


def _theta0(exp: Experiment, offset: float = 0.0) -> torch.Tensor:
    w0, w1 = exp.init_weights()
    return torch.cat([(w0 + offset).flatten(), w1.flatten()]).to(exp.torch_dtype)


def hessian(exp: Experiment, offset: float = 0.0) -> torch.Tensor:
    """The dense ``P x P`` Hessian of :func:`loss_function` at the scan's initialisation (plus ``offset`` on every
    input-layer weight, as the offset axis adds it), symmetrised."""
    theta = _theta0(exp, offset).requires_grad_(True)
    with torch.enable_grad():  # P reverse passes through one gradient graph (no torch.func warm-up: ~0.1 s)
        g = torch.autograd.grad(loss_function(exp)(theta), theta, create_graph=True)[0]
        H = torch.stack([torch.autograd.grad(g[i], theta, retain_graph=True)[0] for i in range(len(g))])
    return (H + H.T) / 2


def estimate_memory(experiment: Experiment | str, resolution: int | tuple[int, int]) -> dict[str, int]:
    """Bytes :func:`sharpness_map` needs at least: the ``(ny, nx)`` float64 map, the Hessian and one cell's
    Lanczos basis (``{"result", "per_cell", "total"}``); a chunk of cells adds ``per_cell`` each."""
    exp = Experiment.preset(experiment) if isinstance(experiment, str) else experiment
    nx, ny = (resolution, resolution) if not isinstance(resolution, (tuple, list)) else resolution
    P, item = exp.num_params, torch.finfo(exp.torch_dtype).bits // 8
    per_cell = bytes_per_member(P, min(P, 200), 1, exp.torch_dtype)
    result = 8 * int(nx) * int(ny) + item * P * P
    return {"result": result, "per_cell": per_cell, "total": result + per_cell}


def _cells(exp: Experiment, H: torch.Tensor, lr_in: np.ndarray, lr_out: np.ndarray, tol: float) -> np.ndarray:
    """The preconditioned top eigenvalue of cells with learning rates ``lr_in``, ``lr_out`` (one lockstep run)."""
    dt, P, dh = H.dtype, H.shape[0], exp.input_dim * exp.width
    s = torch.empty(len(lr_in), P, dtype=dt)
    s[:, :dh] = torch.as_tensor(lr_in, dtype=dt).sqrt().unsqueeze(1)
    s[:, dh:] = torch.as_tensor(lr_out, dtype=dt).sqrt().unsqueeze(1)
    res = lockstep_eigenvalues(lambda V, a: ((V * s[a]) @ H) * s[a], P, len(lr_in), tol=tol, dtype=dt,
                               max_memory=2**62)
    return res.values[:, 0].double().numpy()


def _tile(exp: Experiment, xs: np.ndarray, ys: np.ndarray, lo: int, hi: int, size: int, tol: float,
          axes: tuple[str, str] = ("lr_in", "lr_out"), step: int = 0) -> np.ndarray:
    """Cells ``lo..hi`` (row-major) of a map in chunks of ``size`` (a task for a worker): at initialisation on
    ``("lr_in", "lr_out")`` axes one shared Hessian; after ``step`` steps (any axes) per-cell Hessians."""
    out = np.empty(hi - lo)
    H = hessian(exp) if not step else None
    P = exp.num_params
    with torch.no_grad(), threads.for_work(2.0 * P * (P if not step else exp.points) * size):  # a chunk's products
        for a in range(lo, hi, size):
            k = np.arange(a, min(hi, a + size))
            x, y = xs[k % len(xs)], ys[k // len(xs)]
            if step:
                lr_in, lr_out, offset = (x, y, None) if axes[0] != "offset" else (y, y, x)
                out[a - lo: k[-1] + 1 - lo] = _trained_cells(exp, lr_in, lr_out, offset, step, tol)
            else:
                out[a - lo: k[-1] + 1 - lo] = _cells(exp, H, x, y, tol)
    return out


_TRAINED_CHUNK = 256  # cells per chunk after training: each holds its own parameters and Lanczos basis


def trained_parameters(exp: Experiment, lr_in: Any, lr_out: Any, offset: Any = None, *, step: int) -> torch.Tensor:
    """``(C, P)``: the parameters of ``C`` cells after ``step`` steps of the scan's dynamics (gradient descent
    with per-layer learning rates ``lr_in``, ``lr_out`` on the scan's loss or its mini-batches, from the shared
    initialisation plus ``offset`` on every input-layer weight), all cells in one vectorised computation.
    Rows of cells whose parameters stopped being finite are NaN."""
    from torch.func import grad, vmap

    dt, dh = exp.torch_dtype, exp.input_dim * exp.width
    lr_in, lr_out = (torch.as_tensor(np.asarray(v, dtype=float), dtype=dt).reshape(-1) for v in (lr_in, lr_out))
    C = len(lr_in)
    theta = _theta0(exp).expand(C, -1).clone()
    if offset is not None:
        theta[:, :dh] += torch.as_tensor(np.asarray(offset, dtype=float), dtype=dt).reshape(-1, 1)
    D = torch.empty_like(theta)
    D[:, :dh], D[:, dh:] = lr_in.unsqueeze(1), lr_out.unsqueeze(1)
    idx = exp.batch_indices()
    loss = loss_function(exp)
    g = vmap(grad(loss), in_dims=(0, None)) if idx is not None else vmap(grad(loss))
    with torch.no_grad():
        for t in range(int(step)):
            theta -= D * (g(theta) if idx is None else g(theta, idx[t]))
    bad = ~torch.isfinite(theta).all(1)
    theta[bad] = math.nan
    return theta


def _trained_cells(exp: Experiment, lr_in: np.ndarray, lr_out: np.ndarray, offset: np.ndarray | None, step: int,
                   tol: float) -> np.ndarray:
    """The preconditioned top eigenvalue of cells after ``step`` steps: lockstep Lanczos on per-cell products."""
    from torch.func import grad, jvp, vmap

    theta = trained_parameters(exp, lr_in, lr_out, offset, step=step)
    dt, (C, P), dh = theta.dtype, theta.shape, exp.input_dim * exp.width
    s = torch.empty(C, P, dtype=dt)
    s[:, :dh] = torch.as_tensor(np.asarray(lr_in, dtype=float), dtype=dt).sqrt().unsqueeze(1)
    s[:, dh:] = torch.as_tensor(np.asarray(lr_out, dtype=float), dtype=dt).sqrt().unsqueeze(1)
    loss = loss_function(exp)
    hvp = vmap(lambda th, v: jvp(grad(loss), (th,), (v,))[1])
    dead = ~torch.isfinite(theta).all(1)
    res = lockstep_eigenvalues(lambda V, a: hvp(theta[a], V * s[a]) * s[a], P, C, tol=tol, dtype=dt,
                               max_memory=2**62, skip=dead)
    return res.values[:, 0].double().numpy()


def sharpness_map(
    experiment: Experiment | str = "quick",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    resolution: int | tuple[int, int] = 64,
    *,
    axes: tuple[str, str] | None = None,
    log: bool | tuple[bool, bool] | None = None,
    max_memory: int = MAX_MEMORY,
    chunk_size: int | None = None,
    tol: float = _TOL,
    executor: Any = None,
    tile_size: int | None = None,
    progress: bool = True,
    step: int = 0,
) -> np.ndarray:
    """``(ny, nx)``: per cell, the top eigenvalue of ``D^(1/2) H D^(1/2)`` at initialisation (stable iff < 2), or
    after ``step`` steps of the scan's dynamics (NaN for a cell whose loss is not finite by then).

    The window arguments are :func:`labkit.fractal.scan`'s (same cells, same order). ``max_memory`` bounds the map,
    the Hessian and the Lanczos bases of a chunk; a map that does not fit is refused before any work. ``chunk_size``
    (default 1024) cells run one lockstep Lanczos; ``executor``/``tile_size`` split the cells into tiles of whole chunks
    on workers, which gives the same bits as in-process. Mini-batch presets: the full-batch Hessian.
    """
    exp, axes, _, _, _, xs, ys = window(experiment, x_range, y_range, resolution, axes, log)
    nx, ny = len(xs), len(ys)
    _checks.positive("max_memory", max_memory, integer=True)
    _checks.in_range("step", step, 0, exp.steps - 1)
    if step and axes[0] == "offset" and exp.offset_every_step:
        raise ValueError("step > 0 is not supported with offset_every_step=True (the offset then changes the "
                         "dynamics at every step); use offset_every_step=False or step=0")
    need = estimate_memory(exp, (nx, ny))
    if need["total"] > max_memory:
        raise ValueError(
            f"a {nx}x{ny} curvature map needs at least {need['total'] / 2**20:.3g} MiB (the map, the "
            f"{exp.num_params}x{exp.num_params} Hessian and one cell's Lanczos basis of {need['per_cell'] / 2**20:.3g} "
            f"MiB), more than max_memory={max_memory / 2**20:.3g} MiB; lower the resolution or the width, or raise "
            "max_memory (bytes)")
    size = max(1, min(_CHUNK if chunk_size is None else _checks.positive("chunk_size", chunk_size, integer=True),
                      (max_memory - need["result"]) // need["per_cell"]))
    if step:
        size = max(1, min(size, _TRAINED_CHUNK))
    if axes == ("offset", "lr") and not step:
        lam = np.array([float(torch.linalg.eigvalsh(hessian(exp, float(o)))[-1]) for o in xs])
        return ys[:, None] * lam[None, :]
    cells = nx * ny
    flat = np.empty(cells)
    from tqdm.auto import tqdm

    bar = tqdm(total=cells, desc=f"sharpness {exp.name}", unit="net", delay=2, disable=not progress)
    try:
        if executor is None:
            flat[:] = _tile(exp, xs, ys, 0, cells, size, tol, axes, step)
            bar.update(cells)
        else:
            from labkit import parallel

            if tile_size is None:
                tile_size = -(-cells // (4 * parallel.n_workers(executor)))
            tile_size = -(-_checks.positive("tile_size", tile_size, integer=True) // size) * size  # whole chunks
            bounds = [*range(0, cells, tile_size), cells]
            args = [(exp, xs, ys, lo, hi, size, tol, axes, step) for lo, hi in itertools.pairwise(bounds)]
            for i, part in parallel.submit(_tile, args, name="sharpness-tile", executor=executor):
                flat[bounds[i]: bounds[i + 1]] = part
                bar.update(bounds[i + 1] - bounds[i])
    finally:
        bar.close()
    return flat.reshape(ny, nx)


def boundary_cells(converged: np.ndarray) -> np.ndarray:
    """``(ny, nx)`` bool: cells with a 4-neighbour of the other phase (the trainability boundary, cell by cell)."""
    c = np.asarray(converged, dtype=bool)
    b = np.zeros_like(c)
    dx, dy = c[:, :-1] != c[:, 1:], c[:-1] != c[1:]
    b[:, :-1] |= dx
    b[:, 1:] |= dx
    b[:-1] |= dy
    b[1:] |= dy
    return b


def band_check(converged: np.ndarray, sharpness: np.ndarray, *, scale: float = 1.0, stable: float = STABLE,
               limit: float = CATAPULT) -> dict[str, float]:
    """Where the trainability boundary sits on the curvature map, with the thresholds from theory (times ``scale``).

    Returns ``below`` (fraction of cells with sharpness < 0.75 x stable that converged), ``far_above`` (fraction of
    cells above 4 x limit that diverged), ``in_band`` (fraction of boundary cells with stable <= sharpness <= limit),
    and the cell counts ``n_below``, ``n_far_above``, ``n_boundary``. ``scale`` (a control) mis-scales the band.
    """
    c, s = np.asarray(converged, dtype=bool), np.asarray(sharpness, dtype=float)
    lo, hi = stable * scale, limit * scale
    b = boundary_cells(c)
    below, far = s < 0.75 * lo, s > 4 * hi
    sb = s[b]
    mean = lambda a: float(a.mean()) if a.size else float("nan")  # noqa: E731
    return {"below": mean(c[below]), "far_above": mean(~c[far]), "in_band": mean((sb >= lo) & (sb <= hi)),
            "n_below": int(below.sum()), "n_far_above": int(far.sum()), "n_boundary": int(b.sum())}


def block_sharpness(experiment: Experiment | str, x_range: tuple[float, float], y_range: tuple[float, float],
                    resolution: int | tuple[int, int], *, block: str = "readout",
                    log: bool | tuple[bool, bool] | None = None) -> np.ndarray:
    """``(ny, nx)``: one layer's own preconditioned sharpness at initialisation, ``lr_layer x lambda_max(H_layer)``
    (``H_layer`` that layer's diagonal block of the Hessian), on ``("lr_in", "lr_out")`` axes.

    ``block="readout"``: the loss is exactly quadratic in the readout weights ``W1`` (the network is linear in
    them), so with ``W0`` held fixed gradient descent on ``W1`` diverges iff this is above 2; tanh keeps the hidden
    units bounded, so nothing the input layer does can undo that. ``block="input"``: the input layer's number, which
    has no such meaning (a large input-layer rate saturates the units instead): the control.
    """
    _checks.choice("block", block, ("readout", "input"))
    exp, axes, _, _, _, xs, ys = window(experiment, x_range, y_range, resolution, None, log)
    if axes != ("lr_in", "lr_out"):
        raise ValueError(f"block_sharpness needs ('lr_in', 'lr_out') axes, got {axes!r}")
    nx, ny = len(xs), len(ys)
    H, dh = hessian(exp), exp.input_dim * exp.width
    part = H[dh:, dh:] if block == "readout" else H[:dh, :dh]
    lam = float(torch.linalg.eigvalsh(part)[-1])
    lr = np.broadcast_to(ys[:, None], (ny, nx)) if block == "readout" else np.broadcast_to(xs[None, :], (ny, nx))
    return lam * lr
