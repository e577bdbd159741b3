"""Extreme eigenpairs: Lanczos with full re-orthogonalisation (Ritz-residual stop, warm start), power iteration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from labkit import _checks
from labkit.linalg.operators import LinearOperator, as_operator, to_dense

__all__ = ["WHICH", "EigResult", "Lanczos", "Which", "lanczos", "power_iteration", "top_eigenvalues"]

Which = Literal["largest", "smallest", "both_ends", "magnitude"]
WHICH = ("largest", "smallest", "both_ends", "magnitude")

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
    return _lanczos_run(as_operator(op), k_steps, v0, seed, None)


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
    op = as_operator(op)
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
    res = (lz.beta[-1] * S[-1, idx]).abs().to(device=op.device, dtype=op.dtype)
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
    op = as_operator(op)
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
