"""Hessian-vector products two ways, and the faster one chosen per operator by measuring both once.

- **forward-over-reverse** (Pearlmutter 1994): ``H v = d/dt grad L(theta + t v)``, a ``jvp`` of
  ``grad``; vectorises over many ``v`` with ``vmap`` (what :class:`labkit.curvature.HessianOperator`
  does by itself).
- **double backward**: build ``g = grad L`` with ``create_graph=True`` once per batch, then
  ``H v = d(g . v)/dtheta`` is one more reverse pass; ``k`` vectors share the graph and go through
  one vmapped backward (``is_grads_batched``). When the risk is one batch the operator keeps that
  graph (``op._hvp_graph``: the operator is a snapshot, so ``g`` never changes) and every later
  product is only the second reverse pass.

Which is faster depends on the model (and the library versions), so :func:`matmat` times both on the
first product it is asked for and remembers the winner *on the operator instance* (``op._hvp_method``,
so nothing outlives the operator and no id can be reused), then uses it for every later product::

    H = HessianOperator(model, "mse", data)
    HV = hvp.matmat(H, V, forward_over_reverse=lambda V: CurvatureOperator.matmat(H, V))
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["METHODS", "GradientGraph", "double_backward", "matmat"]

METHODS = ("forward_over_reverse", "double_backward")


class GradientGraph:
    """``g = grad L_b`` of every batch of ``risk`` at its snapshot, built with ``create_graph=True`` once and
    kept, so each later ``H v`` costs one reverse pass of it (the snapshot never changes, so neither does g).
    Holds the activations of all batches: cache it only where one gradient's memory is affordable."""

    def __init__(self, risk):
        self.names = list(risk.params)
        self.parts = []
        for x, y in risk.batches:
            with torch.enable_grad():
                p = [risk.params[n].detach().requires_grad_(True) for n in self.names]
                g = torch.autograd.grad(risk.batch_loss(dict(zip(self.names, p)), x, y), p, create_graph=True)
            self.parts.append((p, g))


def double_backward(risk, V: torch.Tensor, graph: GradientGraph | None = None) -> torch.Tensor:
    """``H V`` of ``risk``'s mean loss at its snapshot by reverse-over-reverse; ``V`` is ``(P, k)``.
    ``graph`` reuses the gradient graphs of an earlier call (``GradientGraph(risk)``)."""
    k = V.shape[1]
    graph = graph or GradientGraph(risk)
    names = graph.names
    tangents = risk.spec.unflatten(V.T.to(risk.device, risk.dtype))  # {name: (k, *shape)}
    out = torch.zeros(k, risk.spec.numel, dtype=risk.dtype, device=risk.device)
    for p, g in graph.parts:
        if k == 1:  # d(g . v)/dtheta
            hv = torch.autograd.grad(g, p, [tangents[n][0] for n in names], allow_unused=True, retain_graph=True)
            hv = [h[None] if h is not None else torch.zeros_like(tangents[n]) for n, h in zip(names, hv)]
        else:  # all k vectors through one vmapped backward of the same graph
            hv = _batched_backward(g, p, [tangents[n] for n in names])
            hv = [h if h is not None else torch.zeros_like(tangents[n]) for n, h in zip(names, hv)]
        out += torch.cat([h.detach().reshape(k, -1) for h in hv], dim=1)
    return out.T


def _batched_backward(g, params, cotangents):
    """``k`` vector-Jacobian products of ``g`` in one vmapped backward; column by column where an op has no
    batching rule."""
    try:
        return torch.autograd.grad(g, params, cotangents, is_grads_batched=True, allow_unused=True,
                                   retain_graph=True)
    except RuntimeError:
        cols = [torch.autograd.grad(g, params, [c[j] for c in cotangents], allow_unused=True, retain_graph=True)
                for j in range(cotangents[0].shape[0])]
        return [None if col[0] is None else torch.stack(col) for col in zip(*cols)]


def _timed(fn: Callable[[torch.Tensor], torch.Tensor], V: torch.Tensor) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = fn(V)
    return out, time.perf_counter() - t0


def _graph(op) -> GradientGraph | None:
    """The operator's cached gradient graph when its risk is one batch (memory of one gradient), else None."""
    if len(op.risk.batches) != 1:
        return None
    if getattr(op, "_hvp_graph", None) is None:
        op._hvp_graph = GradientGraph(op.risk)
    return op._hvp_graph


def matmat(op, V: torch.Tensor, forward_over_reverse: Callable[[torch.Tensor], torch.Tensor],
           method: str | None = None) -> torch.Tensor:
    """``H V`` for a Hessian operator ``op`` (it has ``op.risk``) by the faster of the two methods.

    ``forward_over_reverse(V)`` is the operator's own jvp-of-grad product. ``method`` forces one of
    :data:`METHODS`; otherwise the first call times both (each twice, best of two, so one-off
    warm-up costs do not decide), stores the winner in ``op._hvp_method`` and on the model
    (``model._labkit_hvp_method``, so later operators of the same model, e.g. a sharpness tracker's, reuse
    it), and returns its product.
    A method that raises (double backward through an op without a second derivative) loses.
    """
    impl = {"forward_over_reverse": forward_over_reverse, "double_backward": lambda W: double_backward(
        op.risk, W, _graph(op))}
    model = getattr(op.risk, "model", None)
    method = method or getattr(op, "_hvp_method", None) or getattr(model, "_labkit_hvp_method", None)
    if method is not None:
        if method not in impl:
            raise ValueError(f"method={method!r} is not supported; choose one of {list(METHODS)}")
        return impl[method](V)
    best: dict[str, float] = {}
    results: dict[str, torch.Tensor] = {}
    errors: dict[str, Exception] = {}
    for _ in range(2):
        for name, fn in impl.items():
            if name in errors:
                continue
            try:
                results[name], t = _timed(fn, V)
            except RuntimeError as err:
                errors[name] = err
                continue
            best[name] = min(best.get(name, float("inf")), t)
    if not best:
        raise next(iter(errors.values()))
    op._hvp_method = min(best, key=best.get)
    op._hvp_timings = best
    if model is not None:  # kept on the model (it dies with it): a tracker's next operator need not re-measure
        model._labkit_hvp_method = op._hvp_method
    return results[op._hvp_method]
