"""Stochastic estimates from random probes: Hutchinson / Hutch++ trace and SLQ spectral density."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from labkit import _checks
from labkit.linalg.operators import LinearOperator, as_operator, to_dense

__all__ = ["Density", "Estimate", "spectral_density", "trace"]


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


def trace(op: LinearOperator, n_matvec: int = 100, method: str = "hutchpp", seed: int = 0) -> Estimate:
    """Unbiased estimate of ``tr(A)`` from ``n_matvec`` products with random sign vectors.

    ``"hutchinson"``: ``mean_i z_i^T A z_i`` (Hutchinson 1989); stderr = sample std / sqrt(m).
    ``"hutchpp"`` (Meyer et al. 2021): a third of the products find a range ``Q`` of
    ``A S``, whose part ``tr(Q^T A Q)`` is exact; Hutchinson on the deflated rest
    ``(I - QQ^T) A (I - QQ^T)`` with another third, whose sample std gives the stderr.
    When ``n_matvec >= n`` the exact trace is returned with stderr 0.
    """
    op = as_operator(op)
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
    SG = _rademacher(n, s + m, seed, op.dtype, op.device)  # one draw: sketch and residual probes independent
    S, G = SG[:, :s], SG[:, s:]
    Q, _ = torch.linalg.qr(op.matmat(S))
    exact = torch.diagonal(Q.T @ op.matmat(Q)).sum()
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
    op = as_operator(op)
    _checks.positive("n_probes", n_probes, integer=True)
    _checks.positive("lanczos_steps", lanczos_steps, integer=True)
    alpha, beta = _lanczos_probes(op, min(lanczos_steps, op.size), n_probes, seed)
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


def _lanczos_probes(op: LinearOperator, steps: int, n_probes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent Lanczos runs (full re-orthogonalisation) from ``n_probes`` random unit vectors, advanced
    together: one ``matmat`` with ``n_probes`` columns per step. Returns T's ``alpha, beta``, each ``(p, steps)``."""
    n = op.size
    g = torch.Generator().manual_seed(int(seed))
    q = torch.randn(n_probes, n, generator=g, dtype=torch.float64).to(device=op.device, dtype=op.dtype)
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
