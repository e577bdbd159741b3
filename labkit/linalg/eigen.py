"""Extreme eigenpairs: block Lanczos (full re-orthogonalisation, true-residual stop, warm start); power iteration."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from labkit import _checks, _deprecated, threads
from labkit.linalg.operators import LinearOperator, as_operator, check_symmetric, to_dense

__all__ = ["WHICH", "EigResult", "Lanczos", "Which", "lanczos", "power_iteration", "top_eigenvalues"]

Which = Literal["largest", "smallest", "both_ends", "magnitude"]
WHICH = ("largest", "smallest", "both_ends", "magnitude")


@dataclass
class EigResult:
    """Eigenpairs: ``values (k,)``, ``vectors (n, k)`` (columns), true residuals ``|A v - lambda v|``.

    ``pair_converged (k,)`` says, pair by pair, whether the residual met the tolerance;
    ``converged`` is their conjunction; ``message`` says why a result is not what was
    asked for (no convergence, a rank below ``k``, an operator that returned NaN).
    """

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    n_matvec: int
    converged: bool = True
    pair_converged: torch.Tensor | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.pair_converged is None:
            self.pair_converged = torch.full((len(self.values),), bool(self.converged))

    def __repr__(self) -> str:
        values = ", ".join(f"{v:.6g}" for v in self.values.tolist())
        state = "converged" if self.converged else "NOT converged"
        note = f"; {self.message}" if self.message else ""
        return f"EigResult(values=[{values}], {state}, {self.n_matvec} products{note})"

    def figure(self, reference: Any = None) -> Any:
        """The eigenvalues as a stem plot, beside the top of a dense ``reference`` spectrum if given."""
        return _spectrum_figure(self.values, reference)


def _spectrum_figure(values: Any, reference: Any = None) -> Any:
    from labkit.viz import spectrum

    values = torch.as_tensor(values).detach().cpu()
    if reference is None:
        return spectrum(values)
    ref = torch.as_tensor(reference).detach().cpu().flatten().sort(descending=True).values[: len(values)]
    return spectrum({"estimate": values, "exact (dense)": ref})


def _floors(dtype: torch.dtype) -> tuple[float, float]:
    """``(drop, tol_floor)`` relative to ``|A|``: a direction shorter than ``drop`` is rounding noise (100 eps:
    a float32 Hessian-vector product of a null vector measures ~4 eps); residuals below ``tol_floor`` (1000 eps)
    cannot be resolved, so a smaller ``tol`` is raised to it."""
    eps = torch.finfo(dtype).eps
    return 100 * eps, 1000 * eps


class _Upcast(LinearOperator):
    """A float16/bfloat16 operator seen in float32: products in the operator's own dtype, the algebra
    (QR, SVD, eigh, which have no half-precision CPU kernels) in float32; ``precision`` keeps the tolerances
    honest about the products' rounding."""

    def __init__(self, op: LinearOperator):
        super().__init__(op.size, torch.float32, op.device)
        self.op, self.precision = op, op.dtype

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.op.matmat(V.to(self.precision)).to(torch.float32)


def _working(op: LinearOperator) -> LinearOperator:
    return _Upcast(op) if op.dtype in (torch.float16, torch.bfloat16) else op


def _precision(op: LinearOperator) -> torch.dtype:
    return getattr(op, "precision", op.dtype)


# ---------------------------------------------------------------- single-vector Lanczos (teaching, SLQ-style)


@dataclass
class Lanczos:
    """``m`` steps of Lanczos: ``A Q = Q T + beta_m q_{m+1} e_m^T`` with ``T = tridiag(beta, alpha, beta)``."""

    alpha: torch.Tensor  # (m,) diagonal of T
    beta: torch.Tensor  # (m,) beta[j] couples q_j and q_{j+1}; beta[-1] is the residual norm
    basis: torch.Tensor  # (n, m) orthonormal Lanczos vectors Q
    n_matvec: int

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigen-decomposition of T: Ritz values (ascending) and T's eigenvectors (m, m)."""
        m = len(self.alpha)
        T = torch.diag(self.alpha) + torch.diag(self.beta[: m - 1], 1) + torch.diag(self.beta[: m - 1], -1)
        return torch.linalg.eigh(T.cpu().double())


def _start_block(n: int, b: int, v0: torch.Tensor | None, seed: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """``(n, b)`` start block: random, or the columns of ``v0`` plus a little noise (then random columns)."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(n, b, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    noise = noise / noise.norm(dim=0)
    if v0 is None:
        return noise
    v0 = torch.as_tensor(v0).to(device=device, dtype=dtype)
    if v0.ndim not in (1, 2) or v0.shape[0] != n:
        raise ValueError(f"v0 must have shape ({n},) or ({n}, j), got {tuple(v0.shape)}")
    if not torch.isfinite(v0).all():
        raise ValueError("v0 contains NaN or inf; pass a finite warm start or v0=None")
    v = v0.reshape(n, -1)[:, :b]
    v = v / v.norm(dim=0).clamp_min(1e-300)
    # a small random part keeps every eigendirection in the Krylov space
    v = v + 1e-3 * noise[:, : v.shape[1]]
    return torch.cat([v / v.norm(dim=0), noise[:, v.shape[1] :]], 1)


@_deprecated.renamed(k_steps="lanczos_steps")
@_deprecated.keyword_only("seed")
def lanczos(op: LinearOperator, lanczos_steps: int, v0: torch.Tensor | None = None, *, seed: int = 0) -> Lanczos:
    """``lanczos_steps`` of Lanczos with full re-orthogonalisation (stops early on an invariant subspace)."""
    op = as_operator(op)
    _checks.positive("lanczos_steps", lanczos_steps, integer=True)
    n = op.size
    m_max = min(lanczos_steps, n)
    drop, _ = _floors(op.dtype)
    Q = torch.zeros(n, m_max, dtype=op.dtype, device=op.device)
    alpha, beta = [], []
    q = _start_block(n, 1, v0, seed, op.dtype, op.device)[:, 0]
    scale = 0.0
    for j in range(m_max):
        Q[:, j] = q
        w = op.matvec(q)
        a = torch.dot(w, q)
        w = w - Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)  # full re-orthogonalisation,
        w = w - Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)  # twice is enough (Kahan-Parlett)
        b = w.norm()
        alpha.append(float(a))
        beta.append(float(b))
        scale = max(scale, abs(float(a)) + float(b))
        if b <= drop * scale or j + 1 == m_max:
            break
        q = w / b
    m = len(alpha)
    return Lanczos(torch.tensor(alpha, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64), Q[:, :m], m)


# ---------------------------------------------------------------- block Lanczos for top_eigenvalues


def _select(theta: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """Indices (into ascending ``theta``) of the wanted Ritz values, in report order."""
    m = len(theta)
    k = min(k, m)
    if which == "largest":
        return torch.arange(m - 1, m - 1 - k, -1)
    if which == "smallest":
        return torch.arange(k)
    if which == "magnitude":
        return torch.argsort(theta.abs(), descending=True, stable=True)[:k]
    hi = (k + 1) // 2  # both_ends: like scipy's "BE", the extra one from the top
    return torch.cat([torch.arange(m - 1, m - 1 - hi, -1), torch.arange(k - hi)])


def _project(Q: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``(I - Q^T Q) Y`` for a basis stored as rows ``Q (m, n)`` (contiguous rows: twice as fast as columns)."""
    return Y - Q.T @ (Q @ Y)


def _extend(Q: torch.Tensor, Y: torch.Tensor, tiny: float, ref: float, passes: int) -> torch.Tensor:
    """Orthonormal columns spanning the part of ``Y`` outside the row space of ``Q``; directions shorter than
    ``tiny`` dropped (the rank is revealed by an SVD, or a norm for one column).

    ``passes`` projections first (twice is enough, Kahan-Parlett); after a large cancellation (a kept length
    below 1e-3 of ``ref``, the length before projection) the normalised direction carries rounding noise from
    ``span(Q)`` magnified by ``ref / length``, so it is projected once more.
    """
    for _ in range(passes):
        Y = _project(Q, Y)
    if Y.shape[1] == 1:
        s = Y.norm(dim=0)
        U = Y / s if float(s) > tiny else Y[:, :0]
    else:
        U, s, _ = torch.linalg.svd(Y, full_matrices=False)
        U = U[:, s > tiny]
    s = s[s > tiny]
    if U.shape[1] and float(s.min()) < 1e-3 * ref:
        U = _project(Q, U)
        U = torch.linalg.qr(U)[0] if U.shape[1] > 1 else U / U.norm()
    return U


@dataclass
class _Block:
    """State of a block Lanczos run, vectors stored as rows: basis ``Q (m, n)``, products ``W = (A Q^T)^T`` and
    ``H = Q A Q^T``."""

    Q: torch.Tensor
    W: torch.Tensor
    H: torch.Tensor
    m: int = 0
    scale: float = 0.0  # largest |A x| seen: an estimate of |A|
    last: slice = field(default_factory=lambda: slice(0, 0))

    def reserve(self, rows: int) -> None:
        """Grow the storage (doubling) to hold ``rows`` vectors; a run that converges early stays small."""
        have = self.Q.shape[0]
        if rows <= have:
            return
        new = max(rows, 2 * have)
        grow = (new - have, self.Q.shape[1])
        self.Q = torch.cat([self.Q, self.Q.new_empty(grow)])
        self.W = torch.cat([self.W, self.W.new_empty(grow)])
        H = self.H.new_zeros(new, new)
        H[:have, :have] = self.H
        self.H = H


def _block_step(op: LinearOperator, st: _Block, X: torch.Tensor, sym_tol: float) -> torch.Tensor:
    """Append the orthonormal block ``X (n, p)``; return the residual ``(I - Q^T Q) A X`` that seeds the next."""
    m, p = st.m, X.shape[1]
    st.reserve(m + p)
    AX = op.matmat(X)
    if tuple(AX.shape) != tuple(X.shape):
        raise ValueError(f"op.matmat returned shape {tuple(AX.shape)} for input of shape {tuple(X.shape)}")
    st.Q[m : m + p], st.W[m : m + p] = X.T, AX.T
    Qm = st.Q[: m + p]
    C = Qm @ AX  # (m + p, p): Q A X, a new column block of H
    st.scale = max(st.scale, float(AX.norm(dim=0).max()))
    # symmetry for free: (A x_prev).x must equal x_prev.(A x), and X^T A X must be symmetric
    asym = (C[m:] - C[m:].T).abs().max()
    if st.last.stop > st.last.start:
        asym = torch.maximum(asym, (st.W[st.last] @ X - C[st.last]).abs().max())
    if float(asym) > sym_tol * max(st.scale, 1e-300):
        raise ValueError(
            f"op is not symmetric: u.Av - v.Au = {float(asym):.3g} on Lanczos vectors (relative "
            f"{float(asym) / st.scale:.2g} > {sym_tol:.1g}); top_eigenvalues needs a symmetric operator "
            "(for a matrix M, use (M + M.T) / 2)"
        )
    Cd = C.to(device="cpu", dtype=torch.float64)
    st.H[: m + p, m : m + p] = Cd
    st.H[m : m + p, :m] = Cd[:m].T
    st.H[m : m + p, m : m + p] = (Cd[m:] + Cd[m:].T) / 2
    st.m, st.last = m + p, slice(m, m + p)
    return _project(Qm, AX - Qm.T @ C)  # classical Gram-Schmidt, twice


_MISS = 0.02  # a check stops once a hidden eigenvalue would have shown with probability >= 1 - _MISS


def _region(wanted: torch.Tensor, which: str, thr: float) -> tuple[float, float]:
    """``(lo, hi)``: a value ``<= lo`` or ``>= hi`` would enter the wanted set ``wanted`` (report order) by more
    than ``thr``; ``-inf``/``inf`` where no value could."""
    w = wanted.tolist()
    if which == "largest":
        return -math.inf, w[-1] + thr
    if which == "smallest":
        return w[-1] - thr, math.inf
    if which == "magnitude":
        edge = min(abs(x) for x in w) + thr
        return -edge, edge
    top = (len(w) + 1) // 2  # both_ends
    return (max(w[top:]) - thr if len(w) > top else -math.inf), min(w[:top]) + thr


def _copy_region(wanted: torch.Tensor, which: str, thr: float) -> tuple[float, float]:
    """``(lo, hi)`` where a hidden copy that changes the answer must lie: a copy of one of the wanted values
    but the last of each end (a copy of that one only ties with it).

    A copy is exact (a repeated eigenvalue, missing from the Krylov space), or within ``3 thr`` of a found
    value: a cluster wider than that, with ordinary components in the start vector, mixes into the Ritz
    vector and keeps its residual above ``thr``. Clipped to the values that enter the wanted set at all.
    """
    full_lo, full_hi = _region(wanted, which, thr)
    w = wanted.tolist()
    if which == "magnitude":
        edge = max(sorted(abs(x) for x in w)[1] - 3 * thr, full_hi) if len(w) > 1 else math.inf
        return -edge, edge
    top = {"largest": len(w), "smallest": 0}.get(which, (len(w) + 1) // 2)
    upper, lower = sorted(w[:top]), sorted(w[top:], reverse=True)  # each end's values, the last one first
    hi = max(upper[1] - 3 * thr, full_hi) if len(upper) > 1 else math.inf
    lo = min(lower[1] + 3 * thr, full_lo) if len(lower) > 1 else -math.inf
    return lo, hi


def _mass_outside(T: torch.Tensor, beta: float, lo: float, hi: float, scale: float) -> float:
    """An upper bound on the weight the spectral measure of a Lanczos start vector puts on
    ``(-inf, lo] U [hi, inf)``, from its ``j`` steps: ``T (j, j)`` and the last residual norm ``beta``.

    The Gauss-Radau rule with a node fixed at ``hi`` (one more row of ``T``, no products) is exact for
    polynomials of degree ``2j``; by the Chebyshev-Markov-Stieltjes inequalities the weight on ``[hi, inf)``
    is at most the rule's weight on its nodes ``>= hi`` (likewise below ``lo``). The bound adapts to the
    spectrum seen so far: a bulk far from the wanted values leaves little room for hidden weight.
    """
    j = T.shape[0]
    e = torch.zeros(j, dtype=T.dtype)
    e[-1] = 1
    total = 0.0
    for node, side in ((hi, 1.0), (lo, -1.0)):
        if not math.isfinite(node):
            continue
        radau = torch.zeros(j + 1, j + 1, dtype=T.dtype)
        radau[:j, :j] = T
        radau[j, j] = node + beta**2 * torch.linalg.solve(T - node * torch.eye(j, dtype=T.dtype), e)[-1]
        radau[j - 1, j] = radau[j, j - 1] = beta
        if not bool(torch.isfinite(radau).all()):
            return 1.0
        x, S = torch.linalg.eigh(radau)
        total += float((S[0] ** 2)[side * (x - node) >= -1e-8 * scale].sum())
    return min(total, 1.0)


def _miss_probability(mass: float, dim: int) -> float:
    """The chance that a random unit vector of a ``dim``-dimensional space puts at most ``mass`` on a given
    direction: the squared component is Beta(1/2, (dim - 1)/2), whose CDF is below ``2 sqrt(mass) / B``."""
    if dim <= 1:
        return float(mass > 0)
    log_b = math.lgamma(0.5) + math.lgamma((dim - 1) / 2) - math.lgamma(dim / 2)
    return min(1.0, 2 * math.sqrt(max(mass, 0.0)) * math.exp(-log_b))


def _random_block(Q: torch.Tensor, cols: int, g: torch.Generator) -> torch.Tensor:
    """``cols`` random orthonormal directions orthogonal to the rows of ``Q``."""
    Z = torch.randn(Q.shape[1], cols, generator=g, dtype=torch.float64).to(device=Q.device, dtype=Q.dtype)
    return _extend(Q, Z / Z.norm(dim=0), math.sqrt(torch.finfo(Q.dtype).eps), 1.0, 2)


def _krylov_eigs(
    op: LinearOperator, k: int, which: str, tol: float, cap: int, b: int, v0: Any, seed: int
) -> EigResult:
    """Lanczos sequences (blocks of ``b``) on one growing basis; Rayleigh-Ritz with ``H = Q A Q^T`` over all of it.

    Why a check at all: the Krylov space of one start vector ``v`` holds, in each eigenspace, only the
    projection of ``v`` on it, so a sequence sees one copy of a repeated eigenvalue, and nothing in its
    Ritz values or residuals hints at the others (in exact arithmetic they are absent from the space).
    Only a vector with its own component in the eigenspace can reveal them.

    What the converged pairs do say is where a copy that matters can be: at one of the first ``k - 1``
    wanted values (a copy of the last one only ties with it), or within ``3 tol |theta|_max`` of one, since
    a wider cluster with ordinary components in ``v`` mixes into the Ritz vector and keeps its residual
    high (``_copy_region``). Anything else a random start misses is the risk plain Lanczos runs too.

    So a sequence runs until the ``k`` wanted pairs converge (a sequence whose Krylov space closes goes
    on from a random vector). Then, unless ``b >= k``, a check runs: Lanczos from one random vector ``u``
    orthogonal to the basis, i.e. on the deflated operator ``P A P``. A Ritz value of it that would enter
    the wanted set means something was hidden: the check goes on as an ordinary sequence until the new
    wanted pairs converge, then a fresh check starts. A check passes once the Gauss-Radau bound on the
    weight ``u`` puts where a copy could be is so small that a hidden eigenvector (whose squared
    component in ``u`` is Beta(1/2, (N - 1)/2)) would have shown with probability ``>= 1 - _MISS``. Its
    length depends on how far those values stand from the rest of ``P A P``, not on ``tol``: a few
    products beside outliers (a Hessian's top), tens inside a spectrum clustered at the wanted end.
    """
    n, dt, dev = op.size, op.dtype, op.device
    drop, floor = _floors(_precision(op))
    tol = max(tol, floor)
    sym_tol = math.sqrt(torch.finfo(_precision(op)).eps)
    start = min(cap, max(4 * b, 32))
    st = _Block(torch.empty(start, n, dtype=dt, device=dev), torch.empty(start, n, dtype=dt, device=dev),
                torch.zeros(start, start, dtype=torch.float64))
    g = torch.Generator().manual_seed(int(seed) + 1)
    X = torch.linalg.qr(_start_block(n, b, v0, seed, dt, dev))[0]
    seq, checking, region = 0, False, ((0.0, 0.0), (0.0, 0.0))  # first row of the current sequence; a check runs
    closed: list[tuple[slice, torch.Tensor]] = []  # last block and residual of each sequence ended early
    paused: tuple[slice, torch.Tensor] | None = None  # the sequence a running check interrupted
    unverified = k > 1 and b < k
    while True:
        width = X.shape[1]
        R = _block_step(op, st, X, sym_tol)
        m = st.m
        if not torch.isfinite(R).all():  # R = (I - Q^T Q) A X carries any NaN/inf of the products
            return _nan_result(op, k, m, "the operator returned NaN or inf (a diverged model?)")
        theta, S = torch.linalg.eigh(st.H[:m, :m])
        scale = float(theta.abs().max())
        thr = tol * scale
        ok = False
        if m >= k:
            idx = _select(theta, k, which)
            Sw = S[:, idx].to(device=dev, dtype=dt)
            est = R @ Sw[st.last] + sum((Rc @ Sw[sl] for sl, Rc in closed), torch.zeros_like(R[:, :1]))
            ok = bool((est.norm(dim=0) <= thr).all())  # an upper bound on |A y - theta y| for each wanted pair
        Xn = _extend(st.Q[:m], R, drop * st.scale, st.scale, 0)
        exhausted = Xn.shape[1] == 0
        if checking:
            T = st.H[seq:m, seq:m]
            local = torch.linalg.eigvalsh(T)
            (lo, hi), (clo, chi) = region
            if bool((local >= hi).any() or (local <= lo).any()):
                checking = False  # a value the earlier sequences could not see: converge it, then check again
            elif _miss_probability(_mass_outside(T, 0.0 if exhausted else float(R.norm()), clo, chi, scale),
                                   n - seq) <= _MISS:
                unverified = checking = False
                if ok:
                    break
        fresh = ok and not checking
        if fresh:
            if not unverified:
                break
            region = _region(theta[idx], which, thr), _copy_region(theta[idx], which, thr)
            if region[1] == (-math.inf, math.inf):  # k = 2 at both ends: a copy could only tie
                unverified = False
                break
            checking = True
        room = cap - m
        if room <= 0:
            break
        if not checking and not ok and paused is not None and not unverified:
            # the check passed, but the Ritz pairs moved with the larger basis: resume the interrupted sequence
            closed = [c for c in closed if c is not paused]
            if not exhausted:
                closed.append((st.last, R))
            X, paused = _extend(st.Q[:m], paused[1], drop * st.scale, st.scale, 2)[:, :room], None
            if X.shape[1] == 0:
                X = _random_block(st.Q[:m], min(b, room), g)
        elif fresh or exhausted:  # a new check, or a closed Krylov space: go on from a random vector
            if not exhausted:
                closed.append((st.last, R))
            if fresh:
                paused = None if exhausted else closed[-1]
            X, seq = _random_block(st.Q[:m], 1 if checking else min(b, room), g), m
        else:
            X = Xn[:, :room]
            if X.shape[1] < min(width, room):  # part of the block closed: continue it from random directions
                X = torch.cat([X, _random_block(torch.cat([st.Q[:m], X.T]), min(width, room) - X.shape[1], g)], 1)
        if X.shape[1] == 0:
            unverified = False  # the basis spans the whole space: H is A itself
            break
    m = st.m
    theta, S = torch.linalg.eigh(st.H[:m, :m])
    idx = _select(theta, k, which)
    Sw = S[:, idx].to(device=dev, dtype=dt)
    vals = theta[idx].to(device=dev, dtype=dt)
    vecs = st.Q[:m].T @ Sw
    res = (st.W[:m].T @ Sw - vecs * vals).norm(dim=0)  # true residuals |A v - lambda v|, no extra products
    out = _finish(vals, vecs, res, m, tol * float(theta.abs().max()), k, st.scale, drop)
    if unverified and m < n:
        note = (f"max_matvecs={cap} ran out before a check for repeated eigenvalues (which one Lanczos "
                "sequence cannot see) was done; raise max_matvecs")
        out.message = "; ".join(x for x in (out.message, note) if x)
    return out


def _nan_result(op: LinearOperator, k: int, used: int, why: str) -> EigResult:
    nan = torch.full((k,), math.nan, dtype=op.dtype, device=op.device)
    vecs = torch.full((op.size, k), math.nan, dtype=op.dtype, device=op.device)
    warnings.warn(f"top_eigenvalues: {why}; returning NaN", RuntimeWarning, stacklevel=3)
    return EigResult(nan, vecs, nan.clone(), used, False, torch.zeros(k, dtype=torch.bool), why)


def _finish(vals: torch.Tensor, vecs: torch.Tensor, res: torch.Tensor, used: int, thr: float, k: int,
            scale: float, drop: float) -> EigResult:
    ok = (res <= thr).cpu()
    notes = []
    if not ok.all():
        bad = int((~ok).sum())
        notes.append(f"{bad} of the {k} pairs did not converge: residual |A v - lambda v| up to "
                     f"{float(res.max()):.3g} > tol * |lambda|_max = {thr:.3g} after {used} products; "
                     "raise max_matvecs or tol")
        warnings.warn("top_eigenvalues: " + notes[-1], RuntimeWarning, stacklevel=3)
    zero = int((vals.abs() <= 10 * drop * max(scale, 1e-300)).sum())
    if zero and drop < 1e-4:  # in half precision (drop ~ 0.1) "zero" would mean "small": say nothing
        notes.append(f"{zero} of the {k} values are zero to working precision: the operator has a null space "
                     "among the wanted values (e.g. its rank is below k, as for a Gauss-Newton matrix of few examples)")
    return EigResult(vals, vecs, res, used, bool(ok.all()), ok, "; ".join(notes))


@threads.hot
@_deprecated.keyword_only("seed", "dense", "block_size")
def top_eigenvalues(
    op: LinearOperator,
    k: int = 1,
    which: Which = "largest",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    v0: torch.Tensor | None = None,
    *,
    seed: int = 0,
    dense: bool | None = None,
    block_size: int | None = None,
) -> EigResult:
    """The ``k`` extreme eigenpairs of a symmetric operator by Lanczos with full re-orthogonalisation.

    Always ``k`` pairs, with their multiplicities. Lanczos from one vector sees one copy of a
    repeated eigenvalue (on the identity its Krylov space closes after one step), so: a sequence
    whose Krylov space closes continues from a fresh random vector, and once the wanted pairs
    have converged (``k >= 2``) one more sequence from a random vector orthogonal to everything
    found checks for values the first could not see (Lanczos on the deflated operator); a value
    it finds among the wanted ones is added and the check repeats. The check stops as soon as a
    Gauss-Radau bound says a hidden copy of a wanted value would have shown with probability
    >= 98%: a few products beside outliers, so top-5 costs 1.1-1.3x the products of plain
    Lanczos (benchmarks/bench_hessian.py). ``block_size=b`` instead
    starts from ``b`` vectors (products batched), which sees up to ``b`` copies directly (no check
    when ``b >= k``). Stops when every wanted Ritz pair has residual ``|A v - theta v| <= tol *
    |theta|_max`` (``tol`` is raised to 1000 machine epsilons of the operator's precision); the
    eigenvalue error is then about ``residual^2 / gap``. ``residuals`` and ``pair_converged`` are
    the true residuals (from the stored products ``A Q``, no extra products); ``message`` says
    why a result is not what was asked (no convergence, values zero to working precision).
    A non-symmetric operator is refused (checked for free on the Lanczos vectors); an operator
    returning NaN gives NaN values and ``converged=False``. ``v0`` warm-starts from a previous
    estimate. ``which``: ``"largest"`` (descending), ``"smallest"`` (ascending), ``"both_ends"``
    (``ceil(k/2)`` from the top, the rest from the bottom) or ``"magnitude"``. ``dense=None``
    uses the dense matrix and ``eigh`` when ``n <= 256`` (``n_matvec = n``); ``False`` forces
    Lanczos. Memory: two ``(n, m)`` blocks for ``m`` products (at most ``max_matvecs``).

    >>> values = top_eigenvalues(torch.eye(300, dtype=torch.float64), k=3).values
    >>> len(values), bool(torch.allclose(values, torch.ones(3, dtype=torch.float64), atol=1e-12))
    (3, True)
    """
    user = as_operator(op)
    op = _working(user)
    n = op.size
    _checks.positive("k", k, integer=True)
    if k > n:
        raise ValueError(f"k={k} is larger than the operator (size {n}); choose k <= {n}")
    _checks.choice("which", which, WHICH)
    _checks.positive("tol", tol, allow_zero=True)
    b = 1 if block_size is None else _checks.in_range("block_size", block_size, 1, n)
    if max_matvecs is None:
        max_matvecs = min(n, max(200, 20 * k))
    _checks.positive("max_matvecs", max_matvecs, integer=True)
    if max_matvecs < k:
        raise ValueError(f"max_matvecs={max_matvecs} is below k={k}: k pairs need at least k products")
    if dense or (dense is None and n <= 256):
        D = to_dense(op)
        if not torch.isfinite(D).all():
            return _nan_result(op, k, n, "the operator returned NaN or inf (a diverged model?)")
        D = check_symmetric("op", D, precision=_precision(op))
        evals, evecs = torch.linalg.eigh(D)
        idx = _select(evals.cpu(), k, which).to(evals.device)
        vals, vecs = evals[idx], evecs[:, idx]
        res = (D @ vecs - vecs * vals).norm(dim=0)
        drop, floor = _floors(_precision(op))
        scale = float(evals.abs().max())
        thr = max(tol, floor, 10 * n * torch.finfo(op.dtype).eps) * scale  # eigh's backward error grows with n
        out = _finish(vals, vecs, res, n, thr, k, scale, drop)
    else:
        out = _krylov_eigs(op, k, which, tol, min(max_matvecs, n), min(b, n), v0, seed)
    if op is not user:  # report in the operator's own dtype
        out.values, out.vectors, out.residuals = (t.to(user.dtype) for t in (out.values, out.vectors, out.residuals))
    return out


@threads.hot
@_deprecated.keyword_only("seed")
def power_iteration(
    op: LinearOperator,
    k: int = 1,
    tol: float = 1e-6,
    max_matvecs: int = 1000,
    v0: torch.Tensor | None = None,
    *,
    seed: int = 0,
) -> EigResult:
    """Power iteration with deflation: the teaching baseline (PyHessian's algorithm, with a residual stop).

    Finds the ``k`` eigenvalues of largest magnitude one at a time: iterate
    ``v <- A v / |A v|`` on ``A`` deflated by the pairs already found, stop when
    ``|A v - (v.Av) v| <= tol |v.Av|``. Converges like ``(|lambda_2| / |lambda_1|)^t``:
    slowly when the top eigenvalues are close, which Lanczos does not mind.
    """
    op = as_operator(op)
    _checks.positive("k", k, integer=True)
    if k > op.size:
        raise ValueError(f"k={k} is larger than the operator (size {op.size}); choose k <= {op.size}")
    _checks.positive("max_matvecs", max_matvecs, integer=True)
    _checks.positive("tol", tol, allow_zero=True)
    vals, vecs, res, flags = [], [], [], []
    used = 0
    budget = max(1, max_matvecs // k)
    for i in range(k):
        v = _start_block(op.size, 1, v0, seed + i, op.dtype, op.device)[:, 0]
        lam, r = torch.zeros((), dtype=op.dtype), torch.tensor(float("inf"))
        for _ in range(budget):
            if vecs:
                V = torch.stack(vecs, 1)
                v = v - V @ (V.T @ v)
            w = op.matvec(v)
            used += 1
            if vecs:  # deflation: P A P v with P = I - V V^T projects out the pairs found
                w = w - V @ (V.T @ w)
            lam = torch.dot(v, w)
            r = (w - lam * v).norm()
            if r <= tol * lam.abs():
                break
            v = w / w.norm()
        flags.append(bool(r <= tol * lam.abs()))
        vals.append(lam)
        vecs.append(v)
        res.append(r)
    ok = torch.tensor(flags)
    msg = "" if ok.all() else f"{int((~ok).sum())} of the {k} pairs did not converge in {used} products"
    return EigResult(torch.stack(vals), torch.stack(vecs, 1), torch.stack(res), used, bool(ok.all()), ok, msg)
