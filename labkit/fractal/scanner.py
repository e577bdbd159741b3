"""Scan a window of hyperparameter space: train every cell's network at once and record its outcome.

All cells of a chunk train **simultaneously** with hand-batched tensor operations
(no autograd, no per-network work). With ``C`` cells, width ``h``, input dimension
``d`` and ``n`` points, the state is the first-layer weights of all cells as one
``(C*h, d)`` matrix and the readouts as ``(C, h)``; one step is

* ``A = V0 @ x^T``: one ``(C*h, d) x (d, n)`` GEMM (every cell shares the data);
* ``H = phi(A)`` in place; ``f = U1 . H`` (batched matvec); ``r = f - y``;
* ``Q = r * phi'(A)`` in one fused kernel (``tanh_backward`` / ``threshold_backward``);
* ``G = Q @ x``: one ``(C*h, n) x (n, d)`` GEMM; ``V0 -= K0 * U1 * G``; ``U1 -= K1 * (H . r)``,

where ``V0 = gain * W0 / sqrt(d)`` and ``U1 = W1 / h`` hold the mean-field scalings
and ``K0, K1`` the per-cell learning rates and constants, so the gradients are the
exact analytic gradients of ``mean_i (f_i - y_i)^2`` (checked against autograd
loops in ``tests/test_fractal_scan.py``). Chunks are sized for the cache on CPUs
(the whole grid at once is several times slower) and for ``max_memory`` on GPUs.

Outcome (as in the paper's notebook): losses ``l_t`` of ``theta_t`` for
``t = 0 .. steps-1`` are divided by ``l_0``, non-finite values count as 1e6 and
everything is clipped at 1e6; a cell **converged** when the mean normalised loss of
the last ``tail`` steps is < 1. Score: converged ``-sum_t l_t/l_0``, diverged
``+sum_t l_0/l_t``. A cell whose loss became non-finite has non-finite weights and
stays so; it is dropped from the chunk and its remaining steps are filled in exactly.

The offset axis adds the offset to every input-layer weight **once, at
initialisation** (``Experiment.offset_every_step=True`` re-adds it before every
step, as the paper's notebook does).
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from labkit import _checks, _deprecated, threads
from labkit.fractal.experiment import Experiment
from labkit.fractal.result import ScanResult, window
from labkit.machine import MAX_MEMORY

__all__ = ["estimate_memory", "scan"]

_CLIP = 1e6
_CPU_CHUNK_BYTES = 2 << 20  # ~2 MiB activation buffer per chunk: stays in cache on CPUs


class _Problem:
    """The data, the shared initialisation and the constants of one experiment on one device."""

    def __init__(self, exp: Experiment, device: torch.device) -> None:
        dt = exp.torch_dtype
        x, y = exp.data()
        w0, w1 = exp.init_weights()
        self.exp, self.device, self.dtype = exp, device, dt
        self.d, self.h, self.n = exp.input_dim, exp.width, exp.points
        self.x = x.to(device, dt)  # (n, d)
        self.xT = self.x.T.contiguous()  # (d, n)
        self.yT = y.T.to(device, dt)  # (1, n)
        # tanh(g z) = 2 sigmoid(2 g z) - 1: sigmoid is ~3x cheaper than tanh in float64 on CPUs, so for tanh
        # the state holds 2x the pre-activation and the kernels work with s = sigmoid(A) (H = 2s - 1).
        self.sig = exp.nonlinearity == "tanh"
        self.v0_scale = exp.gain / math.sqrt(self.d) * (2.0 if self.sig else 1.0)
        self.v0 = (w0 * self.v0_scale).T.contiguous().to(device, dt)  # (h, d): row j = unit j's scaled weights
        self.u1 = (w1[:, 0] / self.h).to(device, dt)  # (h,)
        idx = exp.batch_indices()
        self.idx = None if idx is None else idx.to(device)
        self.nb = self.n if idx is None else exp.batch_size  # points per gradient
        self.k0 = exp.gain**2 * 2.0 / (self.d * self.nb) * (8.0 if self.sig else 1.0)  # times lr_in
        self.k1 = 2.0 / (self.nb * self.h**2)  # times lr_out: readout step constant
        self.tiny = torch.finfo(dt).tiny

    def bytes_per_cell(self) -> int:
        """Working memory of one cell in a chunk (activations, weights, gradient buffers)."""
        return estimate_memory(self.exp, 1)["per_cell"]


def _train_chunk(p: _Problem, lr_in: torch.Tensor, lr_out: torch.Tensor, offset: torch.Tensor | None) -> tuple:
    """Train ``C`` cells at once; return ``(sum l/l0, sum l0/l, tail mean)`` per cell as float64 numpy arrays."""
    exp, (h, d, n), dt = p.exp, (p.h, p.d, p.n), p.dtype
    steps, tail_len = exp.steps, exp.tail
    c = lr_in.shape[0]
    v0 = p.v0.expand(c, h, d).clone()  # (C, h, d)
    off = None if offset is None else (offset * p.v0_scale).view(-1, 1, 1)
    if off is not None and not exp.offset_every_step:
        v0 += off
    u1 = p.u1.expand(c, h).clone()  # (C, h)
    k0, k1 = lr_in * p.k0, lr_out * p.k1  # (C,)
    pos = torch.arange(c, device=p.device)  # chunk position of each live cell
    s_fwd, s_inv, s_tail = (torch.zeros(c, dtype=dt, device=p.device) for _ in range(3))
    l0 = None
    out = torch.zeros(3, c, dtype=torch.float64, device=p.device)
    buf = torch.empty(c * h * n, dtype=dt, device=p.device)
    qbuf = torch.empty(c * h * (n if p.idx is None else exp.batch_size), dtype=dt, device=p.device)
    act = {"tanh": torch.sigmoid_, "relu": torch.relu_, "identity": None}[exp.nonlinearity]
    for t in range(steps):
        live = v0.shape[0]
        if live == 0:
            break
        if off is not None and exp.offset_every_step:
            v0 += off
        a = torch.mm(v0.view(live * h, d), p.xT, out=buf[: live * h * n].view(live * h, n)).view(live, h, n)
        if act is not None:
            act(a)  # H = phi(A) in place (tanh: s = sigmoid(A), H = 2s - 1)
        if p.sig:
            f = torch.bmm((2.0 * u1).unsqueeze(1), a).view(live, n) - u1.sum(1, keepdim=True)
        else:
            f = torch.bmm(u1.unsqueeze(1), a).view(live, n)
        r = f - p.yT  # residuals (live, n)
        loss = r.square().mean(1)
        if l0 is None:
            l0 = loss.clone()
        nl = torch.nan_to_num(loss / l0, nan=_CLIP, posinf=_CLIP, neginf=_CLIP).clamp_(p.tiny, _CLIP)
        s_fwd += nl
        s_inv += nl.reciprocal()
        if t >= steps - tail_len:
            s_tail += nl
        if t == steps - 1:
            break
        if p.idx is not None:  # mini-batch: the gradient on this step's samples
            i = p.idx[t]
            hb, rb, xbT = a.index_select(2, i), r.index_select(1, i), p.xT.index_select(1, i)
        else:
            hb, rb, xbT = a, r, p.xT
        g1 = torch.bmm(hb, rb.unsqueeze(2)).view(live, h)  # sum_n H r (readout gradient, unscaled), no (C, h, n) temp
        if p.sig:
            g1 = 2.0 * g1 - rb.sum(1, keepdim=True)
        rs = (rb * k0.unsqueeze(1)).unsqueeze(1).expand(live, h, rb.shape[1])
        qb = qbuf[: live * h * rb.shape[1]].view(live, h, rb.shape[1])  # reused: no fresh (C, h, n) per step
        if p.sig:
            q = torch.ops.aten.sigmoid_backward.grad_input(rs, hb, grad_input=qb)  # r * s (1 - s), one pass
        elif exp.nonlinearity == "relu":
            q = torch.ops.aten.threshold_backward.grad_input(rs, hb, 0, grad_input=qb)  # r * 1[H > 0]
        else:
            q = rs
        g0 = torch.mm(xbT, q.reshape(live * h, -1).T).T.view(live, h, d)  # (x^T Q^T)^T: the faster BLAS layout
        v0.addcmul_(u1.unsqueeze(2), g0, value=-1.0)
        u1.addcmul_(k1.unsqueeze(1), g1, value=-1.0)
        if t % 8 == 7:  # drop cells whose loss is non-finite: they stay so; fill in their remaining steps exactly
            dead = ~torch.isfinite(loss)
            if bool(dead.any()):
                rest, rest_tail = steps - 1 - t, min(tail_len, steps - 1 - t)
                out[:, pos[dead]] = torch.stack(
                    [s_fwd[dead] + rest * _CLIP, s_inv[dead] + rest / _CLIP, s_tail[dead] + rest_tail * _CLIP]
                ).double()
                keep = ~dead
                v0, u1, k0, k1, pos, l0 = v0[keep], u1[keep], k0[keep], k1[keep], pos[keep], l0[keep]
                s_fwd, s_inv, s_tail = s_fwd[keep], s_inv[keep], s_tail[keep]
                off = None if off is None else off[keep]
    out[:, pos] = torch.stack([s_fwd, s_inv, s_tail]).double()
    out[2] /= tail_len
    return tuple(out.cpu().numpy())


def _chunk_cells(p: _Problem, chunk: int | None, budget: int) -> int:
    cap = max(1, budget // p.bytes_per_cell())
    if p.device.type == "cpu":
        per_cell = p.h * p.n * torch.finfo(p.dtype).bits // 8
        cap = min(cap, max(8, _CPU_CHUNK_BYTES // per_cell))
    return cap if chunk is None else max(1, min(chunk, cap))


def _coords(p: _Problem, axes: tuple[str, str], xs: np.ndarray, ys: np.ndarray, sl: slice) -> tuple:
    """(lr_in, lr_out, offset) of the cells ``sl`` (row-major: cell k is x[k % nx], y[k // nx])."""
    k = np.arange(sl.start, sl.stop)
    cx, cy = (torch.as_tensor(v, dtype=p.dtype, device=p.device) for v in (xs[k % len(xs)], ys[k // len(xs)]))
    return (cx, cy, None) if axes == ("lr_in", "lr_out") else (cy, cy, cx)


def _outcome(s_fwd: np.ndarray, s_inv: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(converged, score) of trained cells: converged when the tail's mean normalised loss is < 1."""
    conv = tail < 1.0
    return conv, np.where(conv, -s_fwd, s_inv)


def _tile(exp: Experiment, axes: tuple[str, str], xs: np.ndarray, ys: np.ndarray, device: str | None,
          lo: int, hi: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``lo..hi`` of a scan, trained in chunks of ``size`` exactly as in-process (a task for a worker)."""
    from labkit import device as default_device

    p = _Problem(exp, torch.device(device) if device else default_device())
    conv, score = np.zeros(hi - lo, dtype=bool), np.full(hi - lo, np.nan)
    with torch.no_grad(), threads.for_work(2.0 * size * p.h * p.n * p.d):  # a chunk's GEMM per op
        for a in range(lo, hi, size):
            sl = slice(a, min(hi, a + size))
            part = slice(a - lo, sl.stop - lo)
            conv[part], score[part] = _outcome(*_train_chunk(p, *_coords(p, axes, xs, ys, sl)))
    return conv, score


#: Bytes per cell of a :class:`ScanResult`: ``score`` (float64) and ``converged`` (bool).
RESULT_BYTES_PER_CELL = 9


def estimate_memory(experiment: Experiment | str, resolution: int | tuple[int, int]) -> dict[str, int]:
    """Bytes a scan needs at least: ``{"result": ..., "per_cell": ..., "total": ...}``, allocating nothing.

    ``result`` is the result arrays (9 bytes per cell), ``per_cell`` the working memory of one network in a
    chunk; ``total`` is their sum with a one-cell chunk, the least ``max_memory`` that :func:`scan` accepts.
    """
    exp = Experiment.preset(experiment) if isinstance(experiment, str) else experiment
    nx, ny = (resolution, resolution) if not isinstance(resolution, (tuple, list)) else resolution
    result = int(nx) * int(ny) * RESULT_BYTES_PER_CELL
    nb = exp.batch_size or 0
    per_cell = torch.finfo(exp.torch_dtype).bits // 8 * (
        exp.width * (exp.points + nb) + 2 * exp.width * exp.input_dim + 6 * exp.points + 16)
    return {"result": result, "per_cell": per_cell, "total": result + per_cell}


def _check_memory(exp: Experiment, nx: int, ny: int, max_memory: int) -> int:
    """Refuse a scan whose result alone would not fit ``max_memory``; return the bytes left for chunks."""
    need = estimate_memory(exp, (nx, ny))
    if need["total"] > max_memory:
        fit = math.isqrt(max(0, max_memory - need["per_cell"]) // RESULT_BYTES_PER_CELL)
        gib = 2**30
        raise ValueError(
            f"a {nx}x{ny} scan needs at least {need['total'] / gib:.2f} GiB ({need['result'] / gib:.2f} GiB of result "
            f"arrays, 9 bytes per cell), more than max_memory={max_memory / gib:.2f} GiB; lower the resolution "
            f"(at most about {fit} x {fit} fits) or raise max_memory (CLI: --max-memory GiB)"
        )
    return max_memory - need["result"]


@threads.hot  # its set-up (checks, dry runs) too: a busy neighbour holds a core
@_deprecated.renamed(chunk="chunk_size", tile="tile_size")
def scan(
    experiment: Experiment | str = "quick",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    resolution: int | tuple[int, int] = 64,
    *,
    axes: tuple[str, str] | None = None,
    log: bool | tuple[bool, bool] | None = None,
    device: Any = None,
    max_memory: int = MAX_MEMORY,
    chunk_size: int | None = None,
    progress: bool = True,
    cancel: Callable[[], bool] | None = None,
    on_chunk: Callable[[ScanResult], None] | None = None,
    executor: Any = None,
    tile_size: int | None = None,
    measure: str | None = None,
) -> ScanResult:
    """Train one network per grid cell and return the converged/diverged picture.

    ``experiment`` is an :class:`Experiment` or a preset name; ``x_range``/``y_range``
    default to its first window and ``axes`` to its axes (``("lr_in", "lr_out")`` or
    ``("offset", "lr")``). ``resolution`` is ``n`` or ``(nx, ny)``. ``log`` defaults to
    log-spaced learning-rate axes and a linear offset axis. ``max_memory`` (bytes, default
    1 GiB, well inside Binder's 2 GB) bounds the result arrays (9 bytes per cell) plus the
    working memory of a chunk: a scan whose result does not fit is refused before anything
    is allocated (see :func:`estimate_memory`); memory stays O(chunk) beyond the result.
    ``chunk_size`` caps the cells per chunk (they are otherwise sized for the cache on CPUs and for
    ``max_memory`` on GPUs). ``cancel()`` is polled between chunks; on ``KeyboardInterrupt``
    or cancel the scan **returns the partial result** (``complete=False``; cells are scanned
    row by row, ``res.done`` marks the finished ones, the others have ``score`` NaN and
    ``converged`` False, and ``converged_fraction``/``boundary``/``dimension`` use finished
    cells only) with a warning.

    ``executor`` (see :mod:`labkit.parallel`: ``None`` in-process, ``"local"``, a scheduler address or a
    ``distributed.Client``) splits the grid into tiles of ``tile_size`` cells (default: about four per worker, a
    multiple of the chunk), each trained on a worker exactly as in-process: the result is identical bit for
    bit to an in-process scan with the workers' BLAS thread count (one per worker on a LocalCluster); with
    another thread count a matrix product's last bits can differ, which leaves the converged/diverged picture
    unchanged here but moves scores by ~1e-13. Tiles arrive in completion order (``on_chunk`` sees each), and
    cancelling cancels the queued tiles.

    ``measure="sharpness"`` also records, per cell, the top eigenvalue of ``D^(1/2) H D^(1/2)`` at initialisation
    (``D`` the cell's per-parameter learning rates; gradient descent is stable iff it is below 2) in
    ``result.sharpness`` (:func:`labkit.fractal.curvature_map.sharpness_map`, on the same executor); ``max_memory``
    then bounds both, and a scan whose map does not fit beside it is refused before training.

    >>> res = scan("quick", (1e-1, 1e2), (1e-1, 1e2), 8, progress=False)
    >>> res.converged.shape, bool(res.converged[0, 0]), bool(res.converged[-1, -1])
    ((8, 8), True, False)
    """
    from labkit import device as default_device

    exp, axes, x_range, y_range, logs, xs, ys = window(experiment, x_range, y_range, resolution, axes, log)
    nx, ny = len(xs), len(ys)
    _checks.positive("max_memory", max_memory, integer=True)
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
    dev = torch.device(default_device() if device is None else device)
    if dev.type == "mps" and exp.torch_dtype == torch.float64:
        if device is not None:
            raise ValueError(f"device={device!r} does not support float64; use device='cpu' or an Experiment "
                             "with dtype='float32'")
        dev = torch.device("cpu")  # Apple GPUs have no float64: the default falls back to the CPU

    if measure not in (None, "sharpness"):
        raise ValueError(f"measure must be None or 'sharpness', got {measure!r}")
    if measure is not None:
        from labkit.fractal import curvature_map

        need = curvature_map.estimate_memory(exp, (nx, ny))["total"]  # runs after training, beside the scan's result
        have = max_memory - estimate_memory(exp, (nx, ny))["result"]
        if need > have:
            raise ValueError(f"scan(measure='sharpness') needs about {need / 2**20:.3g} MiB for the curvature map "
                             f"beside the scan's result, more than max_memory={max_memory / 2**20:.3g} MiB allows; "
                             "lower the resolution or raise max_memory (bytes)")
    budget = _check_memory(exp, nx, ny, max_memory)
    p = _Problem(exp, dev)
    cells = nx * ny
    score = np.full((ny, nx), np.nan)  # the result arrays, in their final dtype; nothing else is grid-sized
    converged = np.zeros((ny, nx), dtype=bool)
    flat_score, flat_conv = score.reshape(-1), converged.reshape(-1)
    result = ScanResult(exp, axes, x_range, y_range, logs, xs, ys, converged, score)

    size = _chunk_cells(p, chunk_size, budget)
    start, complete = time.perf_counter(), True
    from tqdm.auto import tqdm

    bar = tqdm(total=cells, desc=f"scan {exp.name}", unit="net", delay=2, disable=not progress)
    stream = None
    try:
        if executor is None:
            with torch.no_grad(), threads.for_work(2.0 * size * p.h * p.n * p.d):  # a chunk's GEMM per op
                for lo in range(0, cells, size):
                    if cancel is not None and cancel():
                        complete = False
                        break
                    sl = slice(lo, min(cells, lo + size))
                    flat_conv[sl], flat_score[sl] = _outcome(*_train_chunk(p, *_coords(p, axes, xs, ys, sl)))
                    bar.update(sl.stop - sl.start)
                    if on_chunk is not None:
                        on_chunk(result)
        else:
            from labkit import parallel

            if tile_size is None:
                per_tile = -(-cells // (4 * parallel.n_workers(executor)))
                tile_size = -(-per_tile // size) * size
            _checks.positive("tile_size", tile_size, integer=True)
            tile_size = -(-tile_size // size) * size  # a multiple of the chunk: the same chunks as in-process
            bounds = [*range(0, cells, tile_size), cells]
            worker_device = None if device is None else str(dev)
            args = [(exp, axes, xs, ys, worker_device, lo, hi, size) for lo, hi in itertools.pairwise(bounds)]
            stream = parallel.submit(_tile, args, name="fractal-tile", executor=executor)
            for i, (conv, sc) in stream:
                lo, hi = bounds[i], bounds[i + 1]
                flat_conv[lo:hi], flat_score[lo:hi] = conv, sc
                bar.update(hi - lo)
                if on_chunk is not None:
                    on_chunk(result)
                if cancel is not None and cancel() and result.cells_done < cells:
                    complete = False
                    stream.cancel()
                    break
    except KeyboardInterrupt:
        complete = False
        if stream is not None:
            stream.cancel()
    finally:
        bar.close()
    if not complete:
        warnings.warn(f"scan interrupted: returning a partial result ({result.cells_done:,} of {cells:,} cells done; "
                      "the others have score NaN, see ScanResult.done)", stacklevel=2)
    if measure is not None and complete:
        result.sharpness = curvature_map.sharpness_map(exp, x_range, y_range, (nx, ny), axes=axes, log=logs,
                                                   max_memory=have, executor=executor, progress=progress)
    result.complete = complete
    result.wall_time = time.perf_counter() - start
    result.device = str(dev)
    return result
