"""The operator contract: a symmetric linear map known through ``matmat``, plus dense/function/scipy adapters."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from labkit import _checks, _deprecated

__all__ = [
    "LinearOperator", "Product", "as_operator", "check_symmetric", "from_dense", "from_function", "to_dense",
    "to_scipy",
]


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

    def __matmul__(self, x: Any) -> Any:
        """``A @ x`` for a vector or ``(n, k)`` block; ``A @ B`` of two operators is their :class:`Product`."""
        if isinstance(x, LinearOperator):
            return Product(self, x)
        x = self._check_input(x)
        return self.matvec(x) if x.ndim == 1 else self.matmat(x)

    def __add__(self, other: LinearOperator) -> LinearOperator:
        return _Combination([(1.0, self), (1.0, other)])

    def __sub__(self, other: LinearOperator) -> LinearOperator:
        return _Combination([(1.0, self), (-1.0, other)])

    def __mul__(self, c: float) -> LinearOperator:
        if isinstance(c, bool) or not isinstance(c, numbers.Real):
            return NotImplemented  # Python then raises its TypeError naming both types
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
        super().__init__(first.size, _common_dtype(op for _, op in terms), _common_device(op for _, op in terms))
        self.terms = terms

    def matmat(self, V: torch.Tensor) -> torch.Tensor:  # each term in its own dtype, the sum in the promoted one
        return sum(c * op.matmat(V.to(op.dtype)).to(self.dtype) for c, op in self.terms)


def _common_dtype(ops: Any) -> torch.dtype:
    """Operators of float32 and float64 combine in float64 (torch's promotion), as tensors do."""
    return functools.reduce(torch.promote_types, [op.dtype for op in ops])


def _common_device(ops: Any) -> torch.device:
    devices = {op.device for op in ops}
    if len(devices) > 1:
        raise ValueError(f"cannot combine operators on different devices {sorted(map(str, devices))}; move them to one")
    return devices.pop()


def check_symmetric(name: str, matrix: torch.Tensor, precision: torch.dtype | None = None) -> torch.Tensor:
    """``(M + M^T) / 2`` if ``M`` is symmetric up to rounding (``sqrt(eps)`` of its largest entry), else raise.

    ``eigh`` reads one triangle only: on a non-symmetric matrix it returns the eigenvalues of a
    different matrix without complaint, so the asymmetry is checked first. ``precision``: the dtype whose
    rounding the entries carry, if not their own (a float16 operator densified in float32).
    """
    scale = float(matrix.abs().max()) if matrix.numel() else 0.0
    asym = float((matrix - matrix.T).abs().max()) if matrix.numel() else 0.0
    tol = math.sqrt(torch.finfo(precision or matrix.dtype).eps) if matrix.is_floating_point() else 0.0
    if asym > tol * scale:
        i, j = divmod(int((matrix - matrix.T).abs().argmax()), matrix.shape[1])
        raise ValueError(
            f"{name} must be symmetric: entry ({i}, {j}) is {float(matrix[i, j]):.6g} but ({j}, {i}) is "
            f"{float(matrix[j, i]):.6g} (max |M - M^T| = {asym:.3g}, relative {asym / scale:.2g} > {tol:.1g}); "
            "labkit's eigen-solvers need a symmetric matrix: pass (M + M.T) / 2 if that is what you mean"
        )
    return (matrix + matrix.T) / 2


class Product(LinearOperator):
    """``A B`` as an operator (``A @ B``), e.g. ``trace(H @ Sigma)``. Not symmetric in general: use it for
    traces and products, not for the symmetric eigensolvers (which refuse it)."""

    def __init__(self, a: LinearOperator, b: LinearOperator):
        for name, op in (("a", a), ("b", b)):
            if not isinstance(op, LinearOperator):
                raise TypeError(f"{name} must be a LinearOperator, got {type(op).__name__}")
        if a.shape != b.shape:
            raise ValueError(f"cannot multiply operators of shapes {a.shape} and {b.shape}")
        super().__init__(a.size, _common_dtype((a, b)), _common_device((a, b)))
        self.a, self.b = a, b

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.a.matmat(self.b.matmat(V.to(self.b.dtype)).to(self.a.dtype)).to(self.dtype)


def from_dense(matrix: torch.Tensor) -> LinearOperator:
    """Wrap a symmetric ``(n, n)`` tensor as an operator (for tests, teaching and small problems).

    A non-symmetric or non-finite matrix is refused: every labkit algorithm assumes ``A = A^T``.
    """
    if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise ValueError(f"matrix must be a square 2-D tensor, got {shape}")
    if not matrix.is_floating_point():
        raise TypeError(f"matrix must be a floating-point tensor, got dtype {matrix.dtype}; use matrix.double()")
    if matrix.shape[0] == 0:
        raise ValueError("matrix must have at least one row, got shape (0, 0)")
    if not torch.isfinite(matrix).all():
        raise ValueError("matrix contains NaN or inf; its eigenvalues are undefined")
    check_symmetric("matrix", matrix)
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


def as_operator(op: Any) -> LinearOperator:
    """``op`` itself if it is a :class:`LinearOperator`; a square symmetric tensor wrapped by :func:`from_dense`."""
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, torch.Tensor):
        return from_dense(op)
    raise TypeError(f"op must be a labkit LinearOperator or a square tensor, got {type(op).__name__}")


@_deprecated.renamed(chunk="chunk_size")
def to_dense(op: LinearOperator, chunk_size: int = 256) -> torch.Tensor:
    """The ``(n, n)`` matrix of ``op``, ``chunk_size`` columns at a time (n matvecs)."""
    _checks.positive("chunk_size", chunk_size, integer=True)
    op = as_operator(op)
    eye = torch.eye(op.size, dtype=op.dtype, device=op.device)
    cols = [op.matmat(eye[:, i : i + chunk_size]) for i in range(0, op.size, chunk_size)]
    return torch.cat(cols, dim=1)


def to_scipy(op: LinearOperator) -> Any:
    """A ``scipy.sparse.linalg.LinearOperator`` view (float64 numpy arrays), e.g. for ``eigsh``."""
    from scipy.sparse.linalg import LinearOperator as ScipyOperator

    op = as_operator(op)

    def mm(x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(np.asarray(x), dtype=op.dtype, device=op.device)
        out = op.matvec(v) if v.ndim == 1 else op.matmat(v)
        return out.detach().cpu().numpy().astype(np.float64)

    return ScipyOperator(shape=op.shape, matvec=mm, matmat=mm, rmatvec=mm, dtype=np.float64)
