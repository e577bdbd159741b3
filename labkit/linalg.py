"""Symmetric linear operators and the matrix-free algorithms every curvature probe shares.

A :class:`LinearOperator` is anything that can multiply a block of vectors:
a subclass writes one method, ``matmat(V) -> A V`` for ``V`` of shape ``(n, k)``;
``matvec``, ``A @ v`` and ``A @ V`` follow. The Hessian, the Gauss-Newton matrix
and the NTK are operators; the algorithms below take any of them and report
their cost in matrix-vector products (``n_matvec``)::

    A = from_dense(torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)))
    top_eigenvalues(A, k=1).values        # tensor([3.], dtype=torch.float64)
    trace(A, n_matvec=3).value            # 6.0 (exact: Hutch++ with n_matvec >= n)

Algorithms: Lanczos with full re-orthogonalisation (Lanczos 1950; Golub & Van Loan,
Matrix Computations, sec. 10.1), power iteration (the teaching baseline), Hutchinson and
Hutch++ trace estimation (Hutchinson 1989; Meyer, Musco, Musco & Woodruff 2021,
arXiv:2010.09649) and stochastic Lanczos quadrature for the spectral density
(Golub & Meurant 1994; Ghorbani, Krishnan & Xiao 2019, arXiv:1901.10159).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from labkit import _checks

__all__ = [
    "Density",
    "EigResult",
    "Estimate",
    "LinearOperator",
    "from_dense",
    "from_function",
    "lanczos",
    "power_iteration",
    "spectral_density",
    "to_dense",
    "to_scipy",
    "top_eigenvalues",
    "trace",
]

Which = Literal["largest", "smallest", "both_ends", "magnitude"]
WHICH = ("largest", "smallest", "both_ends", "magnitude")


# ---------------------------------------------------------------- the operator contract


class LinearOperator:
    """A symmetric ``n x n`` linear map known only through products with vectors.

    Subclasses call ``super().__init__(size, dtype, device)`` and implement
    :meth:`matmat`. Operators compose: ``A + B``, ``A - B``, ``c * A``.
    """

    def __init__(self, size: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
        _checks.positive("size", size, integer=True)
        self._size = int(size)
        self._dtype = dtype
        self._device = torch.device(device)

    @property
    def size(self) -> int:
        """``n``, the length of the vectors it acts on."""
        return self._size

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, n)``."""
        return (self._size, self._size)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``A @ V`` for ``V`` of shape ``(n, k)``; the one method a subclass must write."""
        raise NotImplementedError(f"{type(self).__name__} must implement matmat(V)")

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A @ v`` for ``v`` of shape ``(n,)``."""
        return self.matmat(v.reshape(-1, 1)).reshape(-1)

    def _check_input(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"an operator multiplies torch tensors, got {type(x).__name__}")
        if x.ndim not in (1, 2) or x.shape[0] != self._size:
            raise ValueError(f"operator of shape {self.shape} cannot multiply a tensor of shape {tuple(x.shape)}")
        return x.to(device=self._device, dtype=self._dtype)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return self.matvec(x) if x.ndim == 1 else self.matmat(x)

    def __add__(self, other: LinearOperator) -> LinearOperator:
        return _Combination([(1.0, self), (1.0, other)])

    def __sub__(self, other: LinearOperator) -> LinearOperator:
        return _Combination([(1.0, self), (-1.0, other)])

    def __mul__(self, c: float) -> LinearOperator:
        return _Combination([(float(c), self)])

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return _Combination([(-1.0, self)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self._size}, dtype={self._dtype}, device={self._device})"

    def to_scipy(self) -> Any:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (numpy in, numpy out)."""
        return to_scipy(self)


class _Dense(LinearOperator):
    def __init__(self, matrix: torch.Tensor):
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V


class _Function(LinearOperator):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], size: int, dtype: torch.dtype, device: Any):
        super().__init__(size, dtype, device)
        self.fn = fn

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.fn(V)


class _Combination(LinearOperator):
    def __init__(self, terms: list[tuple[float, LinearOperator]]):
        first = terms[0][1]
        for _, op in terms:
            if not isinstance(op, LinearOperator):
                raise TypeError(f"can only combine LinearOperators, got {type(op).__name__}")
            if op.shape != first.shape:
                raise ValueError(f"cannot combine operators of shapes {first.shape} and {op.shape}")
        super().__init__(first.size, first.dtype, first.device)
        self.terms = terms

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return sum(c * op.matmat(V) for c, op in self.terms)


def from_dense(matrix: torch.Tensor) -> LinearOperator:
    """Wrap a symmetric ``(n, n)`` tensor as an operator (for tests, teaching and small problems)."""
    if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise ValueError(f"matrix must be a square 2-D tensor, got {shape}")
    return _Dense(matrix)


def from_function(
    matmat_fn: Callable[[torch.Tensor], torch.Tensor],
    size: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> LinearOperator:
    """An operator from a function ``V (n, k) -> A V (n, k)``."""
    if not callable(matmat_fn):
        raise TypeError(f"matmat_fn must be callable, got {type(matmat_fn).__name__}")
    return _Function(matmat_fn, size, dtype, device)


def _as_operator(op: Any) -> LinearOperator:
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, torch.Tensor):
        return from_dense(op)
    raise TypeError(f"op must be a labkit LinearOperator or a square tensor, got {type(op).__name__}")


def to_dense(op: LinearOperator, chunk: int = 256) -> torch.Tensor:
    """The ``(n, n)`` matrix of ``op``, ``chunk`` columns at a time (n matvecs)."""
    op = _as_operator(op)
    eye = torch.eye(op.size, dtype=op.dtype, device=op.device)
    cols = [op.matmat(eye[:, i : i + chunk]) for i in range(0, op.size, chunk)]
    return torch.cat(cols, dim=1)


def to_scipy(op: LinearOperator) -> Any:
    """A ``scipy.sparse.linalg.LinearOperator`` view (float64 numpy arrays), e.g. for ``eigsh``."""
    from scipy.sparse.linalg import LinearOperator as ScipyOperator

    op = _as_operator(op)

    def mm(x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(np.asarray(x), dtype=op.dtype, device=op.device)
        out = op.matvec(v) if v.ndim == 1 else op.matmat(v)
        return out.detach().cpu().numpy().astype(np.float64)

    return ScipyOperator(shape=op.shape, matvec=mm, matmat=mm, rmatvec=mm, dtype=np.float64)


# ---------------------------------------------------------------- results


@dataclass
class EigResult:
    """Eigenpairs: ``values (k,)``, ``vectors (n, k)`` (columns), Ritz ``residuals`` ``|A v - lambda v|``."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    n_matvec: int
    converged: bool = True

    def figure(self, reference: Any = None) -> Any:
        """The eigenvalues as a stem plot, beside the top of a dense ``reference`` spectrum if given."""
        return _spectrum_figure(self.values, reference)


@dataclass
class Estimate:
    """A stochastic estimate with its standard error and cost."""

    value: float
    stderr: float
    n_matvec: int

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        return f"Estimate({self.value:.6g} +/- {self.stderr:.2g}, n_matvec={self.n_matvec})"


@dataclass
class Density:
    """A smoothed spectral density on ``grid`` plus the quadrature ``nodes`` and ``weights`` it came from.

    ``nodes``/``weights`` (``(n_probes, steps)``, weights summing to 1 over all probes)
    are a discrete probability measure approximating the eigenvalue distribution
    ``(1/n) sum_i delta(lambda_i)``; ``density`` is it convolved with N(0, sigma^2).
    """

    grid: torch.Tensor
    density: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor
    sigma: float
    n_matvec: int

    def figure(self, eigenvalues: Any = None) -> Any:
        """The density (log scale), with exact ``eigenvalues`` as a rug if given."""
        from labkit.viz import density

        return density(self.grid, self.density, eigenvalues=eigenvalues, title="Spectral density (SLQ)")


def _spectrum_figure(values: Any, reference: Any = None) -> Any:
    from labkit.viz import spectrum

    values = torch.as_tensor(values).detach().cpu()
    if reference is None:
        return spectrum(values)
    ref = torch.as_tensor(reference).detach().cpu().flatten().sort(descending=True).values[: len(values)]
    return spectrum({"estimate": values, "exact (dense)": ref})


# ---------------------------------------------------------------- Lanczos


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


def _start_vector(n: int, v0: torch.Tensor | None, seed: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(n, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    if v0 is None:
        return noise / noise.norm()
    v0 = torch.as_tensor(v0).to(device=device, dtype=dtype)
    if v0.shape[0] != n or v0.ndim not in (1, 2):
        raise ValueError(f"v0 must have shape ({n},) or ({n}, j), got {tuple(v0.shape)}")
    v = v0.reshape(n, -1)
    v = (v / v.norm(dim=0).clamp_min(1e-300)).sum(1)
    # a small random part keeps every eigendirection in the Krylov space
    v = v / v.norm() + 1e-3 * noise / noise.norm()
    return v / v.norm()


def lanczos(op: LinearOperator, k_steps: int, v0: torch.Tensor | None = None, seed: int = 0) -> Lanczos:
    """``k_steps`` of Lanczos with full re-orthogonalisation (stops early on an invariant subspace)."""
    return _lanczos_run(_as_operator(op), k_steps, v0, seed, None)


def _lanczos_run(
    op: LinearOperator,
    k_steps: int,
    v0: torch.Tensor | None,
    seed: int,
    done: Callable[[Lanczos], bool] | None,
) -> Lanczos:
    _checks.positive("k_steps", k_steps, integer=True)
    n = op.size
    m_max = min(k_steps, n)
    Q = torch.zeros(n, m_max, dtype=op.dtype, device=op.device)
    alpha, beta = [], []
    q = _start_vector(n, v0, seed, op.dtype, op.device)
    for j in range(m_max):
        Q[:, j] = q
        w = op.matvec(q)
        a = torch.dot(w, q)
        w = w - Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)  # full re-orthogonalisation,
        w = w - Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)  # twice is enough (Kahan-Parlett)
        b = w.norm()
        alpha.append(float(a))
        beta.append(float(b))
        result = Lanczos(torch.tensor(alpha, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64),
                         Q[:, : j + 1], j + 1)
        scale = max(abs(x) for x in alpha) + max(beta)
        if b <= 1e-12 * scale or j + 1 == m_max or (done is not None and done(result)):
            return result
        q = w / b
    raise AssertionError("unreachable")


def _select(theta: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """Indices (into ascending ``theta``) of the wanted Ritz values, in report order."""
    m = len(theta)
    k = min(k, m)
    if which == "largest":
        return torch.arange(m - 1, m - 1 - k, -1)
    if which == "smallest":
        return torch.arange(k)
    if which == "magnitude":
        return torch.argsort(theta.abs(), descending=True)[:k]
    hi = (k + 1) // 2  # both_ends: like scipy's "BE", the extra one from the top
    return torch.cat([torch.arange(m - 1, m - 1 - hi, -1), torch.arange(k - hi)])


def top_eigenvalues(
    op: LinearOperator,
    k: int = 1,
    which: Which = "largest",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    dense: bool | None = None,
) -> EigResult:
    """The ``k`` extreme eigenpairs of a symmetric operator by Lanczos with full re-orthogonalisation.

    Stops when every wanted Ritz pair has residual ``|A v - theta v| <= tol * |theta|_max``
    (for Lanczos this residual is ``|beta_m s_{m,i}|``, free to compute); the eigenvalue
    error is then about ``residual^2 / gap``. ``v0`` warm-starts from a previous estimate
    (a vector or the columns of a previous ``EigResult.vectors``). ``which``: ``"largest"``
    (descending), ``"smallest"`` (ascending), ``"both_ends"`` (``ceil(k/2)`` from the top, the
    rest from the bottom) or ``"magnitude"``. ``dense=None`` computes the dense matrix and
    ``eigh`` instead when ``n <= 256`` (then ``n_matvec = n``); ``False`` forces Lanczos.
    """
    op = _as_operator(op)
    n = op.size
    _checks.positive("k", k, integer=True)
    if k > n:
        raise ValueError(f"k={k} is larger than the operator (size {n}); choose k <= {n}")
    _checks.choice("which", which, WHICH)
    _checks.positive("tol", tol, allow_zero=True)
    if max_matvecs is None:
        max_matvecs = min(n, max(200, 20 * k))
    _checks.positive("max_matvecs", max_matvecs, integer=True)
    if dense or (dense is None and n <= 256):
        evals, evecs = torch.linalg.eigh(to_dense(op))
        idx = _select(evals.cpu(), k, which).to(evals.device)
        vals, vecs = evals[idx], evecs[:, idx]
        res = (op.matmat(vecs) - vecs * vals).norm(dim=0)
        return EigResult(vals, vecs, res, n, True)

    def converged(lz: Lanczos) -> bool:
        m = len(lz.alpha)
        if m < min(k + 1, n):
            return False
        theta, S = lz.ritz()
        idx = _select(theta, k, which)
        res = (lz.beta[-1] * S[-1, idx]).abs()
        return bool((res <= tol * theta.abs().max()).all())

    lz = _lanczos_run(op, max_matvecs, v0, seed, converged)
    theta, S = lz.ritz()
    idx = _select(theta, k, which)
    vals = theta[idx].to(device=op.device, dtype=op.dtype)
    vecs = lz.basis @ S[:, idx].to(device=op.device, dtype=op.dtype)
    res = (lz.beta[-1] * S[-1, idx]).abs().to(op.dtype)
    ok = bool((res <= tol * theta.abs().max()).all()) or lz.beta[-1] <= 1e-12 * theta.abs().max()
    return EigResult(vals, vecs, res, lz.n_matvec, bool(ok))


def power_iteration(
    op: LinearOperator,
    k: int = 1,
    tol: float = 1e-6,
    max_matvecs: int = 1000,
    v0: torch.Tensor | None = None,
    seed: int = 0,
) -> EigResult:
    """Power iteration with deflation: the teaching baseline (PyHessian's algorithm, with a residual stop).

    Finds the ``k`` eigenvalues of largest magnitude one at a time: iterate
    ``v <- A v / |A v|`` on ``A`` deflated by the pairs already found, stop when
    ``|A v - (v.Av) v| <= tol |v.Av|``. Converges like ``(|lambda_2| / |lambda_1|)^t``:
    slowly when the top eigenvalues are close, which Lanczos does not mind.
    """
    op = _as_operator(op)
    _checks.positive("k", k, integer=True)
    if k > op.size:
        raise ValueError(f"k={k} is larger than the operator (size {op.size}); choose k <= {op.size}")
    _checks.positive("max_matvecs", max_matvecs, integer=True)
    vals, vecs, res = [], [], []
    used, ok = 0, True
    budget = max(1, max_matvecs // k)
    for i in range(k):
        v = _start_vector(op.size, v0, seed + i, op.dtype, op.device)
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
        ok = ok and bool(r <= tol * lam.abs())
        vals.append(lam)
        vecs.append(v)
        res.append(r)
    return EigResult(torch.stack(vals), torch.stack(vecs, 1), torch.stack(res), used, ok)


# ---------------------------------------------------------------- trace


def _rademacher(n: int, m: int, seed: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randint(0, 2, (n, m), generator=g) * 2 - 1).to(device=device, dtype=dtype)


def trace(op: LinearOperator, n_matvec: int = 100, method: str = "hutchpp", seed: int = 0) -> Estimate:
    """Unbiased estimate of ``tr(A)`` from ``n_matvec`` products with random sign vectors.

    ``"hutchinson"``: ``mean_i z_i^T A z_i`` (Hutchinson 1989); stderr = sample std / sqrt(m).
    ``"hutchpp"`` (Meyer et al. 2021): a third of the products find a range ``Q`` of
    ``A S``, whose part ``tr(Q^T A Q)`` is exact; Hutchinson on the deflated rest
    ``(I - QQ^T) A (I - QQ^T)`` with another third, whose sample std gives the stderr.
    When ``n_matvec >= n`` the exact trace is returned with stderr 0.
    """
    op = _as_operator(op)
    _checks.choice("method", method, ["hutchpp", "hutchinson"])
    _checks.positive("n_matvec", n_matvec, integer=True)
    n = op.size
    if n_matvec >= n:
        return Estimate(float(torch.diagonal(to_dense(op)).sum()), 0.0, n)
    if method == "hutchinson":
        if n_matvec < 2:
            raise ValueError(f"n_matvec must be >= 2 to report a standard error, got {n_matvec}")
        Z = _rademacher(n, n_matvec, seed, op.dtype, op.device)
        samples = (Z * op.matmat(Z)).sum(0)
        return Estimate(float(samples.mean()), float(samples.std() / math.sqrt(n_matvec)), n_matvec)
    if n_matvec < 6:
        raise ValueError(f"hutchpp needs n_matvec >= 6, got {n_matvec}")
    s = n_matvec // 3
    m = n_matvec - 2 * s  # probes for the residual part
    S = _rademacher(n, s, seed, op.dtype, op.device)
    Q, _ = torch.linalg.qr(op.matmat(S))
    exact = torch.diagonal(Q.T @ op.matmat(Q)).sum()
    G = _rademacher(n, m, seed + 1, op.dtype, op.device)
    G = G - Q @ (Q.T @ G)
    samples = (G * op.matmat(G)).sum(0)
    stderr = float(samples.std() / math.sqrt(m)) if m > 1 else float("nan")
    return Estimate(float(exact + samples.mean()), stderr, s + s + m)


# ---------------------------------------------------------------- spectral density


def spectral_density(
    op: LinearOperator,
    n_probes: int = 10,
    lanczos_steps: int = 80,
    grid: torch.Tensor | int | None = None,
    sigma: float | None = None,
    seed: int = 0,
) -> Density:
    """Eigenvalue density by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019).

    For a unit random probe ``v``, ``v^T f(A) v = sum_i (v.u_i)^2 f(lambda_i)`` is the
    integral of ``f`` against a measure with mass ``(v.u_i)^2`` at each eigenvalue, whose
    average over probes is ``(1/n) sum_i delta(lambda_i)``. Lanczos from ``v`` gives its
    Gauss quadrature: nodes = Ritz values, weights = squared first components of T's
    eigenvectors. Averaging ``n_probes`` quadratures and convolving with N(0, sigma^2)
    gives the density. Default ``sigma`` is 1% of the spectral width; ``grid`` is a
    tensor of points or a number of points (default 512) covering the nodes +/- 5 sigma.
    """
    op = _as_operator(op)
    _checks.positive("n_probes", n_probes, integer=True)
    _checks.positive("lanczos_steps", lanczos_steps, integer=True)
    nodes, weights, used = [], [], 0
    for p in range(n_probes):
        lz = lanczos(op, lanczos_steps, seed=seed * 100_003 + p)
        theta, S = lz.ritz()
        steps = min(lanczos_steps, op.size)
        pad = steps - len(theta)  # early stop on an invariant subspace: pad with zero weight
        nodes.append(torch.cat([theta, theta.new_full((pad,), float(theta[-1]))]))
        weights.append(torch.cat([S[0] ** 2, theta.new_zeros(pad)]) / n_probes)
        used += lz.n_matvec
    nodes_t, weights_t = torch.stack(nodes), torch.stack(weights)
    lo, hi = float(nodes_t.min()), float(nodes_t.max())
    width = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    if sigma is None:
        sigma = 0.01 * width
    _checks.positive("sigma", sigma)
    if grid is None or isinstance(grid, int):
        points = 512 if grid is None else _checks.positive("grid", grid, integer=True)
        grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, points, dtype=torch.float64)
    grid = torch.as_tensor(grid, dtype=torch.float64)
    z = (grid[:, None] - nodes_t.reshape(1, -1)) / sigma
    density = (torch.exp(-0.5 * z**2) * weights_t.reshape(1, -1)).sum(1) / (sigma * math.sqrt(2 * math.pi))
    return Density(grid, density, nodes_t, weights_t, float(sigma), used)
