"""Dense float64 references for every operator, and the check that an operator matches one.

Each reference is built the slow, obvious way (explicit Jacobians, one gradient per example,
``torch.func.hessian`` of the flat loss), independently of the matrix-free products in
:mod:`labkit.curvature` and :mod:`labkit.ntk`, so a new operator is tested the way labkit's own are::

    risk = Risk(model, "cross_entropy", data)
    assert_matches_dense(Fisher(risk), dense_fisher(risk))

Arguments are a :class:`~labkit.risk.Risk` or ``(model, loss, data)``; everything is for small models.

>>> import torch, labkit
>>> model = labkit.models.mlp(2, [3], 2, seed=0).double()
>>> x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> risk = labkit.risk.Risk(model, "cross_entropy", (x, torch.tensor([0, 1, 0, 1, 1])))
>>> assert_matches_dense(labkit.curvature.HessianOperator(risk), dense_hessian(risk))
>>> assert_matches_dense(labkit.curvature.HessianOperator(risk), dense_ggn(risk))
Traceback (most recent call last):
...
AssertionError: operator differs from the dense reference by ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import hessian, jacrev

from labkit.linalg import LinearOperator, to_dense
from labkit.risk import Function, Risk

__all__ = [
    "assert_matches_dense",
    "dense_empirical_fisher",
    "dense_fisher",
    "dense_ggn",
    "dense_gradient_covariance",
    "dense_hessian",
    "dense_ntk",
    "jacobian",
    "per_example_gradients",
]


def _risk(risk: Risk | nn.Module, loss: Any = "auto", data: Any = None, **kwargs: Any) -> Risk:
    return risk if isinstance(risk, Risk) else Risk(risk, loss, data, **kwargs)


def dense_hessian(risk: Risk | nn.Module, loss: Any = "auto", data: Any = None, **kwargs: Any) -> torch.Tensor:
    """``d^2 L / dtheta^2`` by ``torch.func.hessian`` of the flat loss (reverse-over-reverse), symmetrised."""
    risk = _risk(risk, loss, data, **kwargs)

    def flat_loss(vec: torch.Tensor) -> torch.Tensor:
        p = risk.spec.unflatten(vec)
        return sum(risk.batch_loss(p, x, y) for x, y in risk.batches)

    H = hessian(flat_loss)(risk.theta)
    return (H + H.T) / 2


def jacobian(fn: Function, x: torch.Tensor) -> torch.Tensor:
    """The explicit Jacobian ``(n, out, P)`` of the flattened outputs on ``x`` (``jacrev`` of a flat vector)."""
    out = jacrev(lambda vec: fn.forward(fn.spec.unflatten(vec), x).reshape(x.shape[0], -1))(fn.theta)
    return out


def _output_matrices(risk: Risk, out: torch.Tensor, y: torch.Tensor, fn: Callable) -> torch.Tensor:
    return torch.stack([fn(out[i], y[i]) for i in range(out.shape[0])])  # (n, O, O)


def _sandwich(risk: Risk, lam: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``(1/N) sum_i J_i^T Lambda(f_i, y_i) J_i`` with explicit Jacobians."""
    x, y = risk.examples()
    J = jacobian(risk, x)  # (n, O, P)
    with torch.no_grad():
        out = risk.forward(risk.params, x).reshape(x.shape[0], -1)
    L = _output_matrices(risk, out, y, lam)
    return torch.einsum("nap,nab,nbq->pq", J, L, J) / x.shape[0]


def dense_ggn(risk: Risk | nn.Module, loss: Any = "auto", data: Any = None, **kwargs: Any) -> torch.Tensor:
    """``(1/N) sum_i J_i^T H_out,i J_i`` with explicit Jacobians and output Hessians."""
    risk = _risk(risk, loss, data, **kwargs)
    return _sandwich(risk, lambda f, t: hessian(lambda o: risk.loss.per_example(o[None], t[None])[0])(f))


def dense_fisher(risk: Risk | nn.Module, loss: Any = "auto", data: Any = None, *, variance: float = 0.5,
                 **kwargs: Any) -> torch.Tensor:
    """The Fisher of the model's predictive: ``J^T (diag(p) - p p^T) J`` (cross-entropy), ``J^T J / variance`` (MSE)."""
    risk = _risk(risk, loss, data, **kwargs)
    if risk.loss.name == "mse":
        return _sandwich(risk, lambda f, t: torch.eye(f.numel(), dtype=f.dtype) / variance)

    def categorical(f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(f, -1)
        return torch.diag(p) - torch.outer(p, p)

    return _sandwich(risk, categorical)


def per_example_gradients(risk: Risk | nn.Module, loss: Any = "auto", data: Any = None, **kwargs: Any) -> torch.Tensor:
    """``(N, P)``: one ``torch.autograd.grad`` call per example (a Python loop: the slow, obvious way)."""
    risk = _risk(risk, loss, data, **kwargs)
    x, y = risk.examples()
    rows = []
    for i in range(x.shape[0]):
        p = {k: v.detach().clone().requires_grad_(True) for k, v in risk.params.items()}
        value = risk.loss.per_example(risk.forward(p, x[i : i + 1]), y[i : i + 1])[0]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, list(p.values()))]))
    return torch.stack(rows)


def dense_empirical_fisher(risk: Risk | nn.Module, loss: Any = "auto", data: Any = None, **kwargs: Any) -> torch.Tensor:
    """``(1/N) sum_i g_i g_i^T``."""
    g = per_example_gradients(_risk(risk, loss, data, **kwargs))
    return g.T @ g / g.shape[0]


def dense_gradient_covariance(risk: Risk | nn.Module, loss: Any = "auto", data: Any = None,
                              **kwargs: Any) -> torch.Tensor:
    """``(1/N) sum_i (g_i - G)(g_i - G)^T`` (divisor N)."""
    g = per_example_gradients(_risk(risk, loss, data, **kwargs))
    c = g - g.mean(0)
    return c.T @ c / g.shape[0]


def dense_ntk(model: nn.Module | Function, x1: torch.Tensor, x2: torch.Tensor | None = None,
              output: str = "trace") -> torch.Tensor:
    """``J(x1) J(x2)^T`` from explicit Jacobians: ``(n1, n2)`` summed over outputs, or ``(n1, n2, O, O)``."""
    fn = model if isinstance(model, Function) else Function(model)
    j1 = jacobian(fn, x1.to(fn.device, fn.dtype))
    j2 = j1 if x2 is None else jacobian(fn, x2.to(fn.device, fn.dtype))
    full = torch.einsum("iap,jbp->ijab", j1, j2)
    return full if output == "full" else full.diagonal(dim1=2, dim2=3).sum(-1)


def assert_matches_dense(op: LinearOperator | torch.Tensor, dense: torch.Tensor, *, atol: float = 1e-10,
                         rtol: float = 1e-10) -> None:
    """Raise ``AssertionError`` unless ``op`` (an operator, or a tensor) equals ``dense`` entrywise.

    The tolerance is ``atol + rtol * max|dense|`` (float64 products agree to about 1e-13 relative).
    """
    got = op if isinstance(op, torch.Tensor) else to_dense(op)
    if got.shape != dense.shape:
        raise AssertionError(f"operator has shape {tuple(got.shape)}, the dense reference {tuple(dense.shape)}")
    err = float((got - dense.to(got.dtype)).abs().max())
    tol = atol + rtol * float(dense.abs().max())
    if not err <= tol:
        raise AssertionError(f"operator differs from the dense reference by {err:.3g} (tolerance {tol:.3g})")
