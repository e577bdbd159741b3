"""Lockstep Lanczos: one Krylov sequence per member of a population of symmetric operators, all in batched matmuls.

``M`` operators of one size ``n`` (the Hessians of ``M`` networks, say) are known through one batched product
``matvec(V, active) -> A_i v_i`` for the rows ``V (A, n)`` of the ``active`` members. Every step is one such
product plus full re-orthogonalisation as two batched ``bmm`` (a second pass only for the members whose new vector
would otherwise lose semi-orthogonality: :func:`_reorthogonalise`) and one batched ``eigh`` of the ``(A, m, m)``
tridiagonal matrices. A member whose ``k`` wanted Ritz pairs have Lanczos residual
``|beta_m s_m| <= tol * |theta|_max`` (the stop of :func:`labkit.linalg.top_eigenvalues`) is finished and dropped
from the active set, so it costs no further products; a member whose product is NaN/inf reports NaN with
``converged=False`` and is dropped too, without touching the others (members never mix).

Every member starts from the same vector as ``top_eigenvalues(..., seed=seed)`` does, so each member's sequence
is the one the single-operator Lanczos builds, and the result of a member does not depend on which others run
beside it (chunks and tiles give the same numbers). Memory: the basis ``(A, m, n)`` of the active members, at most
``max_memory`` bytes: larger populations run in chunks of members that fit, one after another.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from labkit import _checks
from labkit.machine import MAX_MEMORY

__all__ = ["LockstepResult", "bytes_per_member", "lockstep_eigenvalues", "start_vector"]

Matvec = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LockstepResult:
    """Per-member top eigenpairs: ``values (M, k)`` (descending), ``residuals (M, k)`` (Lanczos residuals
    ``|A y - theta y|``), ``converged (M,)``, ``n_matvec (M,)`` (products each member cost), ``vectors
    (M, n, k)`` or None, and ``message`` (why some members are not what was asked for)."""

    values: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    n_matvec: torch.Tensor
    vectors: torch.Tensor | None = None
    message: str = ""


def start_vector(n: int, dtype: torch.dtype, device: Any, *, seed: int = 0) -> torch.Tensor:
    """The unit start vector ``top_eigenvalues(..., seed=seed)`` starts its Lanczos sequence from."""
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(n, 1, generator=g, dtype=torch.float64)[:, 0]
    return (v / v.norm()).to(device=device, dtype=dtype)


def bytes_per_member(n: int, steps: int, k: int, dtype: torch.dtype) -> int:
    """Working memory of one member: a basis of ``steps`` vectors of size ``n`` and the tridiagonal algebra."""
    item = torch.finfo(dtype).bits // 8
    return item * (n * (steps + 4 + k)) + 8 * (3 * steps * steps + 4 * steps)


def lockstep_eigenvalues(
    matvec: Matvec,
    size: int,
    members: int,
    *,
    k: int = 1,
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: Any = "cpu",
    vectors: bool = False,
    max_memory: int = MAX_MEMORY,
    skip: torch.Tensor | None = None,
) -> LockstepResult:
    """The ``k`` largest eigenvalues of each of ``members`` symmetric ``size x size`` operators, in lockstep.

    ``matvec(V, active)`` returns ``A_i V[j]`` for member ``i = active[j]`` (``V (len(active), size)``).
    ``skip (members,)`` (bool) marks members known to be undefined (a diverged network): NaN, no products.
    ``max_matvecs`` caps each member's products (default ``min(size, max(200, 20 k))``, as
    :func:`labkit.linalg.top_eigenvalues`); a member that reaches it unconverged says so in ``converged``.
    ``vectors=True`` also returns the Ritz vectors. Members run in chunks that fit ``max_memory`` bytes.
    """
    _checks.positive("size", size, integer=True)
    _checks.positive("members", members, integer=True)
    _checks.positive("k", k, integer=True)
    if k > size:
        raise ValueError(f"k={k} is larger than the operators (size {size}); choose k <= {size}")
    _checks.positive("tol", tol, allow_zero=True)
    steps = min(size, max(200, 20 * k)) if max_matvecs is None else _checks.positive("max_matvecs", max_matvecs,
                                                                                      integer=True)
    steps = min(steps, size)
    if steps < k:
        raise ValueError(f"max_matvecs={max_matvecs} is below k={k}: k pairs need at least k products")
    _checks.positive("max_memory", max_memory, integer=True)
    per = bytes_per_member(size, steps, k, dtype)
    if per > max_memory:
        raise ValueError(f"one member's Lanczos basis needs {per / 2**20:.3g} MiB ({steps} vectors of size {size}), "
                         f"more than max_memory={max_memory / 2**20:.3g} MiB; lower max_matvecs (about "
                         f"{max(1, max_memory // (per // steps) - 4 - k)} fit) or raise max_memory (bytes)")
    chunk = max(1, max_memory // per)
    eps = torch.finfo(dtype).eps
    tol = max(tol, 1000 * eps)
    values = torch.full((members, k), math.nan, dtype=torch.float64)
    residuals = torch.full((members, k), math.nan, dtype=torch.float64)
    converged = torch.zeros(members, dtype=torch.bool)
    used = torch.zeros(members, dtype=torch.long)
    vecs = torch.full((members, size, k), math.nan, dtype=dtype, device=device) if vectors else None
    skip = torch.zeros(members, dtype=torch.bool) if skip is None else torch.as_tensor(skip, dtype=torch.bool).cpu()
    if skip.shape != (members,):
        raise ValueError(f"skip must have shape ({members},), got {tuple(skip.shape)}")
    todo = torch.nonzero(~skip).flatten()
    q0 = start_vector(size, dtype, device, seed=seed)
    notes: list[str] = []
    for lo in range(0, len(todo), chunk):
        ids = todo[lo: lo + chunk]
        _run(matvec, ids, q0, k, tol, steps, 100 * eps, values, residuals, converged, used, vecs, notes)
    bad_nan = int(skip.sum())
    if bad_nan:
        notes.insert(0, f"{bad_nan} member(s) undefined (non-finite parameters or loss): NaN, converged=False")
    left = int((~converged & ~skip & torch.isfinite(values).all(1)).sum())
    if left:
        notes.append(f"{left} member(s) did not converge in {steps} products (tol={tol:.3g}); raise max_matvecs")
    return LockstepResult(values.to(dtype), residuals.to(dtype), converged, used, vecs, "; ".join(dict.fromkeys(notes)))


# Bytes of Lanczos basis re-orthogonalised per block of members on a CPU: a block's basis is then read from memory
# once per pass and the second product of the pass finds it in cache. Measured (2-core machine, loaded, float64,
# 460 members x 16 vectors of 1,315): one block of all 75-120 ms per step, blocks of 4-32 members (0.7-5 MiB) 60-80 ms.
_REORTH_BLOCK_BYTES = 1 << 20


def _project_out(Qj: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One classical Gram-Schmidt pass per member: ``w - Qj^T (Qj w)`` and the coefficients ``Qj w (R, j)``, in
    cache-sized blocks of members on a CPU (all at once elsewhere)."""
    R = w.shape[0]
    per = max(1, Qj.shape[1] * Qj.shape[2] * Qj.element_size())
    step = R if Qj.device.type != "cpu" else max(1, _REORTH_BLOCK_BYTES // per)
    if step >= R:
        c = torch.bmm(Qj, w.unsqueeze(2))
        return torch.baddbmm(w.unsqueeze(2), Qj.transpose(1, 2), c, alpha=-1).squeeze(2), c.squeeze(2)
    out, coef = torch.empty_like(w), w.new_empty(R, Qj.shape[1])
    for lo in range(0, R, step):
        out[lo: lo + step], coef[lo: lo + step] = _project_out(Qj[lo: lo + step], w[lo: lo + step])
    return out, coef


def _reorthogonalise(Qj: torch.Tensor, w: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``w`` orthogonalised against each member's basis ``Qj (R, j, n)``, ``q_j . w`` (the Lanczos alpha) and the
    orthogonalised norms (the Lanczos beta).

    Full re-orthogonalisation by classical Gram-Schmidt, with the second pass ("twice is enough", Kahan-Parlett)
    only for the members that need it: one pass leaves components of size ``~eps |w| / |w'|`` along the basis, so
    a member whose norm fell below ``eta |w|`` (``eta = sqrt(eps)``) is projected again. Every new vector is thus
    orthogonal to its basis to ``sqrt(eps)`` at least, the semi-orthogonality under which the tridiagonal matrix's
    Ritz values are accurate to working precision (Simon 1984); the usual case (a Lanczos residual well above
    ``sqrt(eps)`` of the product) pays one pass instead of two."""
    norm_in = w.norm(dim=1)
    w, coef = _project_out(Qj, w)
    b = w.norm(dim=1)
    again = torch.nonzero(b < eta * norm_in).flatten()
    if len(again):
        w2, _ = _project_out(Qj.index_select(0, again), w.index_select(0, again))
        w, b = w.index_copy(0, again, w2), b.index_copy(0, again, w2.norm(dim=1))
    return w, coef[:, -1], b


def _run(matvec: Matvec, ids: torch.Tensor, q0: torch.Tensor, k: int, tol: float, steps: int, drop: float,
         values: torch.Tensor, residuals: torch.Tensor, converged: torch.Tensor, used: torch.Tensor,
         vecs: torch.Tensor | None, notes: list[str]) -> None:
    """One chunk of members ``ids`` (global indices) in lockstep; finished members are written out and leave the
    products at once, and the stored bases are compacted once a quarter of the rows has finished (a copy of the
    bases per finished member would cost more than the re-orthogonalisation it saves)."""
    n, dt, dev = q0.shape[0], q0.dtype, q0.device
    eta = torch.finfo(dt).eps ** 0.5
    R = len(ids)
    rows_id = ids.clone()  # global index of each stored row
    live = torch.ones(R, dtype=torch.bool)
    Q = torch.empty(R, min(steps, 32), n, dtype=dt, device=dev)  # grows by doubling: early stops stay small
    alpha = torch.zeros(R, steps, dtype=torch.float64)
    beta = torch.zeros(R, steps, dtype=torch.float64)
    scale = torch.zeros(R, dtype=torch.float64)
    q = q0.expand(R, n).clone()
    for j in range(steps):
        if j == Q.shape[1]:
            Q = torch.cat([Q, torch.empty(Q.shape[0], min(steps, 2 * j) - j, n, dtype=dt, device=dev)], 1)
        Q[:, j] = q
        L = torch.nonzero(live).flatten()
        every = len(L) == len(live)
        Ld = L.to(dev)
        w_live = matvec(q if every else q.index_select(0, Ld), rows_id[L].to(dev))
        if tuple(w_live.shape) != (len(L), n):
            raise ValueError(f"matvec returned shape {tuple(w_live.shape)} for input of shape {(len(L), n)}")
        w = w_live if every else q.new_zeros(q.shape).index_copy_(0, Ld, w_live)  # finished rows: zero
        w, a, b = _reorthogonalise(Q[:, : j + 1], w, eta)
        alpha[:, j], beta[:, j] = a.double().cpu(), b.double().cpu()
        m = j + 1
        # the live rows' tridiagonal matrices (only the m columns used: the arrays are sized for max_matvecs)
        al, be = (alpha[:, :m], beta[:, :m]) if every else (alpha[L, :m], beta[L, :m])
        finite = torch.isfinite(al[:, j]) & torch.isfinite(be[:, j])
        sc_old = scale if every else scale[L]
        sc = torch.maximum(sc_old, torch.where(finite, al[:, j].abs() + be[:, j], sc_old))
        scale[L] = sc
        T = torch.diag_embed(al[:, :m]) + torch.diag_embed(be[:, : m - 1], 1) + torch.diag_embed(be[:, : m - 1], -1)
        T = torch.where(finite.view(-1, 1, 1), T, torch.zeros_like(T))
        theta, S = torch.linalg.eigh(T)  # ascending, per member
        kk = min(k, m)
        top = theta.flip(1)[:, :kk]
        Stop = S.flip(2)[:, :, :kk]
        res = (be[:, j: j + 1] * Stop[:, -1, :]).abs()  # |A y - theta y| = beta_m |s_m| (Lanczos)
        thr = tol * theta.abs().amax(1)
        closed = be[:, j] <= drop * sc  # invariant subspace: the Ritz values are exact
        ok = (m >= k) & ((res <= thr.unsqueeze(1)).all(1) | closed)
        done = ok | ~finite | (m == steps) | (closed & (m < k))
        if bool(done.any()):
            d = torch.nonzero(done).flatten()
            g = rows_id[L[d]]
            fin = finite[d]
            out = torch.full((len(d), k), math.nan, dtype=torch.float64)
            out_r = out.clone()
            out[:, :kk], out_r[:, :kk] = top[d], res[d]
            out[~fin], out_r[~fin] = math.nan, math.nan
            values[g], residuals[g] = out, out_r
            converged[g] = ok[d] & fin
            used[g] = m
            if bool((~fin).any()):
                notes.append("the operator returned NaN or inf for some member(s) (diverged?): NaN, converged=False")
            if bool((closed[d] & (m < k)).any()):
                notes.append(f"some member(s) have rank below k={k}: the missing values are NaN")
            if vecs is not None:
                rows = L[d].to(dev)
                y = torch.bmm(Q[:, :m].index_select(0, rows).transpose(1, 2), Stop[d].to(device=dev, dtype=dt))
                y[~fin.to(dev)] = math.nan
                vecs[g, :, :kk] = y
            live[L[d]] = False
            if not bool(live.any()):
                return
            if 4 * int((~live).sum()) >= len(live):  # compact: drop the finished rows' bases
                kd = torch.nonzero(live).flatten().to(dev)
                kept = Q.new_empty(len(kd), Q.shape[1], n)  # same capacity; only the m vectors in use are copied
                torch.index_select(Q[:, :m], 0, kd, out=kept[:, :m])
                Q, w, b = kept, w.index_select(0, kd), b.index_select(0, kd)
                alpha, beta, scale, rows_id, live = alpha[live], beta[live], scale[live], rows_id[live], live[live]
        b = torch.where(live.to(dev), b, torch.ones_like(b))  # finished rows keep a harmless zero vector
        q = w / b.unsqueeze(1)
