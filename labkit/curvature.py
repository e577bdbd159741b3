"""Curvature operators of a :class:`~labkit.risk.Risk`: matrix-free ``P x P`` matrices for :mod:`labkit.linalg`.

For ``L(theta) = (1/N) sum_i l(f(x_i; theta), y_i)`` with per-example gradients ``g_i``, their mean
``G``, Jacobians ``J_i = df(x_i)/dtheta`` and output Hessians ``H_out,i = d^2 l / df^2``:

=========================  ============================================  =====================================
operator                   matrix                                        product
=========================  ============================================  =====================================
:class:`HessianOperator`   ``H = d^2 L / dtheta^2``                      jvp of the gradient (Pearlmutter 1994)
:class:`GaussNewtonOperator` ``G = (1/N) sum_i J_i^T H_out,i J_i``       jvp, output-space jvp, vjp (Schraudolph 2002)
:func:`residual_operator`  ``H - G``                                     the two above
:class:`EmpiricalFisher`   ``(1/N) sum_i g_i g_i^T``                     per-example gradients
:class:`GradientCovariance` ``Sigma = (1/N) sum_i (g_i - G)(g_i - G)^T`` the same, centred (divisor N)
:class:`Fisher`            ``(1/N) sum_i E_{y ~ p(.|f_i)} [s s^T]``      ``J^T Lambda J``, ``Lambda`` exact
=========================  ============================================  =====================================

The Fisher takes the expectation over the model's own predictive, the distribution whose negative
log-likelihood is the loss: a softmax over classes for cross-entropy, ``N(f, variance I)`` for MSE
(``variance=1/2`` makes labkit's ``sum_o (f - y)^2`` the NLL). Then ``Fisher = GaussNewton`` exactly
for both (Martens 2020, "New insights and perspectives on the natural gradient method"); with a
unit-variance Gaussian it is ``G / 2``.

**The hook.** A subclass writes one method, ``_product(v, x, y) -> dict``: the contribution of the
batch ``(x, y)`` to ``A v`` for one parameter-shaped tangent ``v`` (weight the batch by
``len(x) / N``). :meth:`CurvatureOperator.matmat` sums batches and vectorises over the columns of
``V`` with ``vmap``. All operators are evaluated at the risk's snapshot (see :mod:`labkit.risk`).
``A @ B`` of two operators is their product (:class:`labkit.linalg.Product`), e.g. ``trace(H @ Sigma)``.

>>> import torch, labkit
>>> model = labkit.models.mlp(3, [], 1, bias=False, seed=0).double()    # f = w.x
>>> x = torch.eye(3, dtype=torch.float64); y = torch.zeros(3, 1, dtype=torch.float64)
>>> H = HessianOperator(model, "mse", (x, y))                           # L = mean_i (w.x_i)^2
>>> labkit.linalg.to_dense(H)                                           # 2/3 I
tensor([[0.6667, 0.0000, 0.0000],
        [0.0000, 0.6667, 0.0000],
        [0.0000, 0.0000, 0.6667]], dtype=torch.float64)
>>> bool(torch.allclose(labkit.linalg.to_dense(Fisher(H.risk)), labkit.linalg.to_dense(H)))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import grad, jvp, vjp, vmap

from labkit import _checks, linalg
from labkit.linalg import LinearOperator, Product
from labkit.losses import Loss
from labkit.machine import MAX_MEMORY
from labkit.risk import Params, Risk

__all__ = [
    "CurvatureOperator",
    "EmpiricalFisher",
    "Fisher",
    "GaussNewtonOperator",
    "GradientCovariance",
    "HessianOperator",
    "Product",
    "residual_operator",
    "trace_product",
]


def as_risk(model: nn.Module | Risk, loss: str | Loss | Callable = "auto", data: Any = None, *,
            batch_size: int | None = None, params: Sequence[str] | None = None) -> Risk:
    """``model`` if it is a :class:`Risk` (then ``data`` must be None), else ``Risk(model, loss, data, ...)``."""
    if isinstance(model, Risk):
        if data is not None or batch_size is not None or params is not None:
            raise ValueError("pass either a Risk or (model, loss, data, batch_size=, params=), not both")
        return model
    return Risk(model, loss, data, params=params, batch_size=batch_size)


class CurvatureOperator(LinearOperator):
    """A ``P x P`` matrix of a :class:`Risk` known through products; subclasses write ``_product``.

    Built from a ``Risk`` or from ``(model, loss, data, batch_size=, params=)`` (the Risk's arguments);
    ``chunk_size`` bounds how many vectors one ``matmat`` pushes through ``vmap`` at once.
    """

    def __init__(self, model: nn.Module | Risk, loss: str | Loss | Callable = "auto", data: Any = None, *,
                 batch_size: int | None = None, params: Sequence[str] | None = None, chunk_size: int | None = None):
        self.risk = as_risk(model, loss, data, batch_size=batch_size, params=params)
        super().__init__(self.risk.spec.numel, self.risk.dtype, self.risk.device)
        if chunk_size is not None:
            _checks.positive("chunk_size", chunk_size, integer=True)
        self.chunk_size = chunk_size

    # convenient views of the risk
    @property
    def spec(self):
        return self.risk.spec

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return self.risk.params

    @property
    def model(self) -> nn.Module:
        return self.risk.model

    @property
    def num_examples(self) -> int:
        return self.risk.num_examples

    def value(self) -> float:
        """The mean loss at the snapshot."""
        return self.risk.value()

    def gradient(self) -> torch.Tensor:
        """The flat gradient at the snapshot."""
        return self.risk.gradient()

    def _product(self, v: Params, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch ``(x, y)``'s share of ``A v`` (``v`` a parameter dict): the one method to write."""
        raise NotImplementedError(f"{type(self).__name__} must implement _product(v, x, y)")

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        k = V.shape[1]
        tangents = self.spec.unflatten(V.T.to(self.device, self.dtype))  # {name: (k, *shape)}
        out = torch.zeros(k, self.size, dtype=self.dtype, device=self.device)
        for x, y in self.risk.batches:
            if k == 1:
                out += self.spec.flatten(self._product({n: t[0] for n, t in tangents.items()}, x, y))[None]
            else:  # one vectorised pass for all k vectors
                prod = vmap(self._product, in_dims=(0, None, None), chunk_size=self.chunk_size,
                            randomness="same")(tangents, x, y)
                out += self.spec.flatten(prod)
        return out.T


# ---------------------------------------------------------------- Hessian and Gauss-Newton


class HessianOperator(CurvatureOperator):
    """The Hessian of the mean loss: ``H v = d/dt grad L(theta + t v)`` (forward-over-reverse) or
    ``d(grad L . v)/dtheta`` (double backward), whichever :mod:`labkit.hvp` measures faster on this operator's
    first product (the choice is kept on the instance)."""

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        from labkit import hvp

        return hvp.matmat(self, V, super().matmat)

    def _product(self, v: Params, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        gradient = grad(self.risk.batch_loss)  # theta -> dL_b/dtheta
        return jvp(lambda p: gradient(p, x, y), (self.params,), (v,))[1]


def _output_hessian_product(loss: Loss, out: torch.Tensor, y: torch.Tensor, u: torch.Tensor,
                            weight: float) -> torch.Tensor:
    """``weight * H_out u`` per example: a jvp of the loss gradient in output space (the loss is a batch mean)."""
    out_grad = grad(lambda o: loss(o, y) * (weight * len(o)))
    return jvp(out_grad, (out,), (u,))[1]


class _OutputSpace(CurvatureOperator):
    """``(1/N) sum_i J_i^T Lambda_i J_i``: subclasses give ``weight * Lambda_i u_i`` in output space (weight 1/N)."""

    def _output_product(self, out: torch.Tensor, y: torch.Tensor, u: torch.Tensor, weight: float) -> torch.Tensor:
        raise NotImplementedError

    def _product(self, v: Params, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.risk.output_fn(x)
        out, Jv = jvp(f, (self.params,), (v,))
        return vjp(f, self.params)[1](self._output_product(out, y, Jv, 1.0 / self.num_examples))[0]


class GaussNewtonOperator(_OutputSpace):
    """The generalised Gauss-Newton matrix ``G = (1/N) sum_i J_i^T H_out,i J_i`` (PSD for convex losses)."""

    def _output_product(self, out: torch.Tensor, y: torch.Tensor, u: torch.Tensor, weight: float) -> torch.Tensor:
        return _output_hessian_product(self.risk.loss, out, y, u, weight)


def residual_operator(model: nn.Module | Risk, loss: Any = "auto", data: Any = None, **kwargs: Any) -> LinearOperator:
    """``R = H - G``: the part of the Hessian that comes from the network's own curvature."""
    risk = as_risk(model, loss, data, batch_size=kwargs.pop("batch_size", None), params=kwargs.pop("params", None))
    return HessianOperator(risk, **kwargs) - GaussNewtonOperator(risk, **kwargs)


class Fisher(_OutputSpace):
    """The Fisher ``(1/N) sum_i J_i^T E_{y ~ p(.|f_i)}[s s^T] J_i`` with the exact expectation.

    ``s = d log p(y|f) / df``; ``p`` is a softmax over classes (cross-entropy, the sum over all
    classes) or ``N(f, variance I)`` (MSE, where ``E[s s^T] = I / variance``).
    """

    def __init__(self, *args: Any, variance: float = 0.5, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.risk.loss.name not in ("mse", "cross_entropy"):
            raise TypeError(f"Fisher knows the predictive of loss='mse' and 'cross_entropy', not "
                            f"{self.risk.loss.name!r}; use EmpiricalFisher or GaussNewtonOperator")
        self.variance = _checks.positive("variance", variance)

    def _output_product(self, out: torch.Tensor, y: torch.Tensor, u: torch.Tensor, weight: float) -> torch.Tensor:
        if self.risk.loss.name == "mse":
            return u * (weight / self.variance)
        n, c = out.shape
        labels = torch.arange(c, device=out.device)
        # s_c = d l(f, c) / df for every candidate label c: (C, n, C)
        scores = vmap(lambda lab: grad(lambda f: self.risk.loss.per_example(f, lab.expand(n)).sum())(out))(labels)
        prob = torch.softmax(out, -1).T  # (C, n): p(c | x_i)
        return weight * (prob[..., None] * scores * (scores * u).sum(-1, keepdim=True)).sum(0)


# ---------------------------------------------------------------- gradient second moments


class EmpiricalFisher(CurvatureOperator):
    """``(1/N) sum_i g_i g_i^T`` with the observed labels (uncentred; not the Fisher, see Kunstner et al. 2019)."""

    centred = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mean_gradient = self.risk.gradient() if self.centred else None
        self._factor: torch.Tensor | None = None

    def _grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = vmap(grad(self.risk.example_loss), in_dims=(None, 0, 0))(self.params, x, y)
        g = self.spec.flatten(g)  # (n_b, P)
        return g - self.mean_gradient if self.centred else g

    def _product(self, v: Params, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        g = self._grads(x, y)
        return self.spec.unflatten(g.T @ (g @ self.spec.flatten(v)) / self.num_examples)

    def factor(self) -> torch.Tensor:
        """``C`` of shape ``(P, N)`` with ``A = C C^T`` (computed once: ``N x P`` numbers)."""
        if self._factor is None:
            g = self.risk.per_example_gradients()
            if self.centred:
                g = g - self.mean_gradient
            self._factor = g.T / math.sqrt(self.num_examples)
        return self._factor

    def trace(self) -> float:
        """``tr(A) = mean_i |g_i - G|^2`` exactly, from per-example squared norms (structured when possible)."""
        sq = float(self.risk.per_example_sq_norms().mean())
        return sq - float(self.mean_gradient.square().sum()) if self.centred else sq


class GradientCovariance(EmpiricalFisher):
    """``Sigma = (1/N) sum_i (g_i - G)(g_i - G)^T``: the covariance of one example's gradient (divisor N).

    ``G`` (``mean_gradient``) is computed once, at the snapshot. Undefined for a single example.
    """

    centred = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.num_examples < 2:
            raise ValueError("the gradient covariance of one example is undefined (it is 0 by construction); "
                             "pass at least 2 examples")


def trace_product(a: LinearOperator, b: LinearOperator, n_matvec: int | None = None, *, method: str = "hutchpp",
                  seed: int = 0, chunk_size: int = 64, max_memory: int = MAX_MEMORY) -> float:
    """``tr(A B)``: exact when ``n_matvec`` is None, else :func:`labkit.linalg.trace` of ``A @ B``.

    Exact uses ``B = C C^T`` when ``B`` has a ``factor()`` (``tr(C^T A C)``, one product per column
    of ``C``, ``chunk_size`` at a time), else ``P`` products.
    """
    if n_matvec is not None:
        return float(linalg.trace(Product(a, b), n_matvec, method, seed=seed, max_memory=max_memory).value)
    if hasattr(b, "factor"):
        C = b.factor()
        return float(sum((c * a.matmat(c)).sum() for c in C.split(chunk_size, dim=1)))
    return float(linalg.trace(Product(a, b), a.size, max_memory=max_memory).value)
