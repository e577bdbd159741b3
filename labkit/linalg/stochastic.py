"""Stochastic estimates from random probes: Hutchinson / Hutch++ trace and SLQ spectral density."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from labkit import _checks, _deprecated, threads
from labkit.linalg.operators import LinearOperator, as_operator
from labkit.machine import MAX_MEMORY

__all__ = ["Density", "Estimate", "spectral_density", "trace"]

DIAGONAL_CHUNK = 256  # columns of the identity per product when the trace is computed exactly


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


def _rademacher(n: int, m: int, seed: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randint(0, 2, (n, m), generator=g) * 2 - 1).to(device=device, dtype=dtype)


def _refuse(what: str, need: int, max_memory: int, how: str) -> None:
    if need > max_memory:
        gib = 2**30
        raise ValueError(f"{what} needs about {need / gib:.3g} GiB, more than max_memory={max_memory / gib:.3g} "
                         f"GiB; {how}, or raise max_memory (bytes)")


def _trace_memory(n: int, n_matvec: int, method: str, itemsize: int) -> int:
    """Bytes :func:`trace` holds at once (probe blocks and their products; the operator's own work not counted)."""
    if n_matvec >= n:  # exact: a block of identity columns and its product
        return 2 * n * min(n, DIAGONAL_CHUNK) * itemsize
    if method == "hutchinson":  # Z, A Z, Z * A Z
        return 3 * n * n_matvec * itemsize
    s = n_matvec // 3
    m = n_matvec - 2 * s  # the probes [S G], A S, Q, A Q; G deflated, A G, G * A G
    return n * (s + m + 3 * s + 3 * m) * itemsize


def _diagonal_sum(op: LinearOperator) -> float:
    """``tr(A)`` from ``n`` products with identity columns, ``DIAGONAL_CHUNK`` at a time (never the dense matrix)."""
    n, total = op.size, 0.0
    for i in range(0, n, DIAGONAL_CHUNK):
        c = min(DIAGONAL_CHUNK, n - i)
        E = torch.zeros(n, c, dtype=op.dtype, device=op.device)
        E[i : i + c].fill_diagonal_(1)
        total += float(torch.diagonal(op.matmat(E)[i : i + c]).sum())
    return total


@threads.hot
@_deprecated.keyword_only("seed")
def trace(op: LinearOperator, n_matvec: int = 100, method: str = "hutchpp", *, seed: int = 0,
          max_memory: int = MAX_MEMORY) -> Estimate:
    """Unbiased estimate of ``tr(A)`` from ``n_matvec`` products with random sign vectors.

    ``"hutchinson"``: ``mean_i z_i^T A z_i`` (Hutchinson 1989); stderr = sample std / sqrt(m).
    ``"hutchpp"`` (Meyer et al. 2021): a third of the products find a range ``Q`` of
    ``A S``, whose part ``tr(Q^T A Q)`` is exact; Hutchinson on the deflated rest
    ``(I - QQ^T) A (I - QQ^T)`` with another third, whose sample std gives the stderr.
    When ``n_matvec >= n`` the exact trace is returned with stderr 0. The ``(n, n_matvec)`` probe blocks
    must fit ``max_memory`` (bytes, default 1 GiB; the operator's own work is not counted): a larger request
    is refused before any probe is drawn.
    """
    op = as_operator(op)
    _checks.choice("method", method, ["hutchpp", "hutchinson"])
    _checks.positive("n_matvec", n_matvec, integer=True)
    _checks.positive("max_memory", max_memory, integer=True)
    n = op.size
    need = _trace_memory(n, n_matvec, method, op.dtype.itemsize)
    _refuse(f"trace with n_matvec={n_matvec} {method} probes of size n={n}", need, max_memory,
            f"lower n_matvec (about {max(1, n_matvec * max_memory // max(need, 1))} fits)")
    if n_matvec >= n:
        return Estimate(_diagonal_sum(op), 0.0, n)
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
    SG = _rademacher(n, s + m, seed, op.dtype, op.device)  # one draw: sketch and residual probes independent
    S, G = SG[:, :s], SG[:, s:]
    Q, _ = torch.linalg.qr(op.matmat(S))
    exact = torch.diagonal(Q.T @ op.matmat(Q)).sum()
    G = G - Q @ (Q.T @ G)
    samples = (G * op.matmat(G)).sum(0)
    stderr = float(samples.std() / math.sqrt(m)) if m > 1 else float("nan")
    return Estimate(float(exact + samples.mean()), stderr, s + s + m)


# ---------------------------------------------------------------- spectral density


@threads.hot
@_deprecated.keyword_only("seed")
def spectral_density(
    op: LinearOperator,
    n_probes: int = 10,
    lanczos_steps: int = 80,
    grid: torch.Tensor | int | None = None,
    sigma: float | None = None,
    *,
    seed: int = 0,
    max_memory: int = MAX_MEMORY,
) -> Density:
    """Eigenvalue density by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019).

    For a unit random probe ``v``, ``v^T f(A) v = sum_i (v.u_i)^2 f(lambda_i)`` is the
    integral of ``f`` against a measure with mass ``(v.u_i)^2`` at each eigenvalue, whose
    average over probes is ``(1/n) sum_i delta(lambda_i)``. Lanczos from ``v`` gives its
    Gauss quadrature: nodes = Ritz values, weights = squared first components of T's
    eigenvectors. Averaging ``n_probes`` quadratures and convolving with N(0, sigma^2)
    gives the density. Default ``sigma`` is 1% of the spectral width; ``grid`` is a
    tensor of points or a number of points (default 512) covering the nodes +/- 5 sigma.

    Each probe keeps its Lanczos basis (``steps x n``): probes run together in blocks that fit
    ``max_memory`` (bytes, default 1 GiB; the operator's own work is not counted), and a request whose
    single probe, or whose quadrature and density arrays, do not fit is refused before any work.
    """
    op = as_operator(op)
    _checks.positive("n_probes", n_probes, integer=True)
    _checks.positive("lanczos_steps", lanczos_steps, integer=True)
    _checks.positive("max_memory", max_memory, integer=True)
    steps = min(lanczos_steps, op.size)
    need = _slq_memory(op.size, n_probes, steps, _grid_points(grid), op.dtype.itemsize)
    what = f"SLQ with n_probes={n_probes}, lanczos_steps={steps} on n={op.size}"
    _refuse(what, need["fixed"] + need["per_probe"], max_memory,
            "lower lanczos_steps or n_probes (or the grid points)")
    block = max(1, (max_memory - need["fixed"]) // need["per_probe"])  # probes advanced together
    g = torch.Generator().manual_seed(int(seed))
    q0 = torch.randn(n_probes, op.size, generator=g, dtype=torch.float64)  # the same probes for any block size
    runs = [_lanczos_probes(op, steps, q0[i : i + block]) for i in range(0, n_probes, block)]
    alpha, beta = (torch.cat(r) for r in zip(*runs))
    T = torch.diag_embed(alpha) + torch.diag_embed(beta[:, :-1], 1) + torch.diag_embed(beta[:, :-1], -1)
    nodes_t, S = torch.linalg.eigh(T)  # Gauss quadrature of each probe: nodes and first components
    weights_t = S[:, 0, :] ** 2 / n_probes
    used = n_probes * alpha.shape[1]
    # a probe whose Krylov space closed early has a decoupled zero block: its nodes carry no weight
    nodes_t = torch.where(weights_t > 0, nodes_t, nodes_t[weights_t > 0].max())
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


def _grid_points(grid: Any) -> int:
    if grid is None:
        return 512
    return grid if isinstance(grid, int) else int(torch.as_tensor(grid).numel())


def _slq_memory(n: int, n_probes: int, steps: int, points: int, itemsize: int) -> dict[str, int]:
    """Bytes of :func:`spectral_density`: ``fixed`` (start vectors, the ``(p, steps, steps)`` tridiagonals and
    eigenvectors, the ``(points, p * steps)`` density terms, all float64) and ``per_probe`` in a Lanczos block
    (its basis ``steps x n`` and about 4 vectors of size ``n``)."""
    fixed = 8 * (n_probes * n + 4 * n_probes * steps * steps + 3 * points * n_probes * steps)
    return {"fixed": fixed, "per_probe": itemsize * n * (steps + 4)}


def _lanczos_probes(op: LinearOperator, steps: int, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent Lanczos runs (full re-orthogonalisation) from the rows of ``q`` (``(p, n)`` start vectors),
    advanced together: one ``matmat`` with ``p`` columns per step. Returns T's ``alpha, beta``, each ``(p, steps)``."""
    n_probes, n = q.shape
    q = q.to(device=op.device, dtype=op.dtype)
    q = q / q.norm(dim=1, keepdim=True)  # (p, n)
    Q = torch.zeros(n_probes, steps, n, dtype=op.dtype, device=op.device)
    alpha = torch.zeros(n_probes, steps, dtype=torch.float64)
    beta = torch.zeros(n_probes, steps, dtype=torch.float64)
    scale = torch.zeros(n_probes, dtype=torch.float64)
    for j in range(steps):
        Q[:, j] = q
        w = op.matmat(q.T).T  # (p, n): A q for every probe
        alpha[:, j] = (w * q).sum(1).double().cpu()
        if j == 1:  # symmetry for free: q_0^T A q_1 must equal q_1^T A q_0 = beta_0
            asym = float(((Q[:, 0] * w).sum(1).double().cpu() - beta[:, 0]).abs().max())
            if asym > math.sqrt(torch.finfo(op.dtype).eps) * float(scale.max()):
                raise ValueError(f"op is not symmetric: u.Av - v.Au = {asym:.3g} on Lanczos vectors; "
                                 "spectral_density needs a symmetric operator")
        for _ in range(2):  # full re-orthogonalisation against each probe's own basis, twice
            B = Q[:, : j + 1]
            w = w - torch.einsum("pjn,pj->pn", B, torch.einsum("pjn,pn->pj", B, w))
        b = w.norm(dim=1)
        scale = torch.maximum(scale, alpha[:, j].abs() + b.double().cpu())
        alive = (b.double().cpu() > 1e-12 * scale).to(op.device)
        beta[:, j] = torch.where(alive.cpu(), b.double().cpu(), torch.zeros_like(scale))
        q = torch.where(alive[:, None], w / b.clamp_min(1e-300)[:, None], torch.zeros_like(w))
    return alpha, beta
