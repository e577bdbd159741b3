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

from labkit.linalg.eigen import WHICH, EigResult, Lanczos, Which, lanczos, power_iteration, top_eigenvalues
from labkit.linalg.operators import (
    LinearOperator,
    Product,
    as_operator,
    check_symmetric,
    from_dense,
    from_function,
    to_dense,
    to_scipy,
)
from labkit.linalg.stochastic import Density, Estimate, spectral_density, trace

__all__ = [
    "WHICH",
    "Density",
    "EigResult",
    "Estimate",
    "Lanczos",
    "LinearOperator",
    "Product",
    "Which",
    "as_operator",
    "check_symmetric",
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
