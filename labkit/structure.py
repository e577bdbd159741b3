"""Layer structure of a network: each linear layer's inputs and backpropagated output cotangents.

For a linear layer ``y = weight_mult * x W^T + bias_mult * b`` the derivative of a
scalar ``c . f(x)`` of the network output with respect to ``W`` is the outer product
``weight_mult * g^T x``, where ``g = d(c . f)/dy`` is the cotangent at the layer's
output. One forward pass that records every layer's input and one (batched) backward
pass that records every ``g`` therefore give per-example gradients, their norms and
the empirical NTK without materialising a per-example Jacobian (the idea behind
BackPACK, Dangel et al. 2020, and neural-tangents' structured derivatives, Novak et
al. 2022, "Fast Finite Width Neural Tangent Kernel", ICML)::

    traces = backprop_layers(model, param_dict(model), x, cotangents)  # cotangents (k, n, out)
    t = traces[0]
    grad_W = t.weight_mult * t.grads[j, i].T @ t.inputs[i]   # example i, cotangent j (2-D case)

Supported layers: :class:`labkit.models.Dense`, ``nn.Linear`` (inputs ``(n, in)`` or
``(n, ..., in)``) and ``nn.Conv2d`` with ``groups=1`` and numeric zero padding, which is
a linear layer applied at every output position of the unfolded input. Inputs with
extra dimensions give ``inputs (n, P, in)`` and ``grads (k, n, P, out)`` (``P`` positions,
flattened), and the gradient sums over positions: ``weight_mult * grads[j, i].T @ inputs[i]``
still holds with ``(P, out)`` and ``(P, in)`` matrices. Callers that need something else
check :func:`supported` and fall back to generic ``torch.func`` code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from labkit import _deprecated
from labkit.models import Dense, call

__all__ = ["LayerTrace", "backprop_layers", "layer_gradients", "per_example_sq_norms", "supported"]


@dataclass
class LayerTrace:
    """One linear layer's view of a forward/backward pass.

    ``inputs``: ``(n, in)`` or ``(n, P, in)`` (what multiplies ``W^T``; for a convolution the
    unfolded patches, ``in = C_in * kh * kw``); ``grads``: ``(k, n, out)`` or ``(k, n, P, out)``,
    the cotangent at the layer's output ``y`` for each of the ``k`` cotangent vectors;
    ``weight_shape``: the parameter's own shape (a convolution's gradient matrix
    ``(out, in)`` reshapes to it).
    """

    name: str
    inputs: torch.Tensor
    grads: torch.Tensor
    weight_mult: float
    bias_mult: float
    has_bias: bool
    weight_shape: torch.Size

    @property
    def positions(self) -> bool:
        """True when the layer acts at several positions per example (extra input dims)."""
        return self.inputs.ndim == 3


def _layer_ok(module: nn.Module, prefix: str, params: Mapping[str, torch.Tensor] | None) -> bool:
    if getattr(module, "couples_batch", False):  # batch norm mixes examples: no per-example structure at all
        return False
    own = [n for n, _ in module.named_parameters(recurse=False)]
    if isinstance(module, nn.Conv2d) and own:
        if module.groups != 1 or module.padding_mode != "zeros":
            return False
        if isinstance(module.padding, str) and module.padding != "valid":
            return False
    if params is None:
        trainable = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
    else:
        trainable = [n for n in own if f"{prefix}{n}" in params]
    if not isinstance(module, (Dense, nn.Linear, nn.Conv2d)):
        return not trainable  # other layers may sit in between as long as none of their parameters is traced
    return "weight" in trainable or not trainable  # a frozen weight with a trainable bias is not handled


def supported(model: nn.Module) -> bool:
    """True when every module that owns trainable parameters is a supported linear layer.

    :func:`backprop_layers` also accepts a ``params`` dict restricted to supported layers
    (other layers then keep their own, untraced parameters).

    Supported: :class:`labkit.models.Dense`, ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``,
    zero padding given as numbers or ``"valid"``). Layers must not be called twice per
    forward pass (:func:`backprop_layers` raises if one is).
    """
    return all(_layer_ok(m, f"{name}." if name else "", None) for name, m in model.named_modules())


def _linear_layers(model: nn.Module, params: Mapping[str, torch.Tensor]) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if not _layer_ok(m, prefix, params):
            raise ValueError(
                f"layer {name or type(m).__name__!r} ({type(m).__name__}) is not supported by labkit.structure; "
                "check structure.supported(model) first and fall back to torch.func"
            )
        if isinstance(m, (Dense, nn.Linear, nn.Conv2d)) and f"{prefix}weight" in params:
            out.append((name, m))
    return out


def _mults(m: nn.Module) -> tuple[float, float]:
    return (m.weight_mult, m.bias_mult) if isinstance(m, Dense) else (1.0, 1.0)


def _as_rows(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer input as ``(n, in)`` or ``(n, P, in)`` rows that multiply ``W^T``."""
    if isinstance(m, nn.Conv2d):
        if x.ndim == 3:
            x = x.unsqueeze(0)
        pad = 0 if isinstance(m.padding, str) else m.padding
        cols = nn.functional.unfold(x, m.kernel_size, dilation=m.dilation, padding=pad, stride=m.stride)
        return cols.transpose(1, 2)  # (n, P, C_in * kh * kw)
    return x if x.ndim == 2 else x.reshape(x.shape[0], -1, x.shape[-1])


def _as_grad_rows(m: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """Cotangents ``(k, n, ...)`` at the layer output as ``(k, n, out)`` or ``(k, n, P, out)``."""
    k, n = g.shape[:2]
    if isinstance(m, nn.Conv2d):
        return g.reshape(k, n, m.out_channels, -1).transpose(2, 3)
    return g if g.ndim == 3 else g.reshape(k, n, -1, g.shape[-1])


@contextlib.contextmanager
def _recording(layers: Sequence[tuple[str, nn.Module]]) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Forward hooks that keep each layer's input and output (the output made differentiable)."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            if name in seen:
                raise ValueError(f"layer {name!r} is called twice in one forward pass; labkit.structure needs "
                                 "each linear layer used once (fall back to torch.func)")
            if not output.requires_grad:  # nothing upstream needs grad: make the output a leaf we can probe
                output = output.detach().requires_grad_()
            seen[name] = (args[0].detach(), output)
            return output

        return hook

    try:
        for name, m in layers:
            handles.append(m.register_forward_hook(hook_for(name)))
        yield seen
    finally:
        for h in handles:
            h.remove()


def backprop_layers(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    cotangents: torch.Tensor,
    *,
    return_output: bool = False,
) -> list[LayerTrace] | tuple[list[LayerTrace], torch.Tensor]:
    """Forward ``x`` through ``model`` with ``params``, backpropagate ``k`` output cotangents at once.

    ``cotangents``: ``(k, n, *out_shape)`` (``k`` vectors in the network's output space, e.g.
    one-hot rows for the Jacobian, or ``dloss_i/df_i`` for per-example gradients); it may also
    be a function ``f(output) -> (k, n, *out_shape)`` when it depends on the output. Returns one
    :class:`LayerTrace` per linear layer whose weight is in ``params``, in forward order (and
    the detached network output when ``return_output``). One forward and one batched backward
    pass (``torch.autograd.grad(..., is_grads_batched=True)``); parameters are not
    differentiated.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    layers = _linear_layers(model, params)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no linear layer with a weight in params")
    with torch.enable_grad(), _recording(layers) as seen:
        out = call(model, {k: v.detach() for k, v in params.items()}, x)
    cot = cotangents(out.detach()) if callable(cotangents) else cotangents
    if not isinstance(cot, torch.Tensor):
        raise TypeError(f"cotangents must be a tensor (k, n, *out_shape), got {type(cot).__name__}")
    if cot.shape[1:] != out.shape:
        raise ValueError(
            f"cotangents has shape {tuple(cot.shape)}; expected (k, *{tuple(out.shape)}) for a network output of "
            f"shape {tuple(out.shape)}"
        )
    names = [n for n, _ in layers if n in seen]
    outputs = [seen[n][1] for n in names]
    with torch.enable_grad():
        if cot.shape[0] == 1:
            grads = [g.unsqueeze(0) if g is not None else None
                     for g in torch.autograd.grad(out, outputs, cot[0], allow_unused=True)]
        else:
            grads = list(torch.autograd.grad(out, outputs, cot, allow_unused=True, is_grads_batched=True))
    modules = dict(layers)
    traces = []
    for name, y, g in zip(names, outputs, grads):
        m = modules[name]
        if g is None:  # the layer does not reach the output
            g = torch.zeros(cot.shape[0], *y.shape, dtype=y.dtype, device=y.device)
        wm, bm = _mults(m)
        prefix = f"{name}." if name else ""
        traces.append(LayerTrace(name, _as_rows(m, seen[name][0]), _as_grad_rows(m, g.detach()), wm, bm,
                                 f"{prefix}bias" in params and m.bias is not None, m.weight.shape))
    return (traces, out.detach()) if return_output else traces


def layer_gradients(trace: LayerTrace) -> dict[str, torch.Tensor]:
    """One layer's share of the per-example gradients, from its trace: ``{"weight": (k, n, *weight_shape),
    "bias": (k, n, out)}`` (the whole-network ``(N, P)`` rows are :meth:`labkit.risk.Risk.per_example_gradients`)."""
    eq = "knpo,npi->knoi" if trace.positions else "kno,ni->knoi"
    w = trace.weight_mult * torch.einsum(eq, trace.grads, trace.inputs)
    out = {"weight": w.reshape(*w.shape[:2], *trace.weight_shape)}
    if trace.has_bias:
        out["bias"] = trace.bias_mult * (trace.grads.sum(2) if trace.positions else trace.grads)
    return out


def per_example_sq_norms(traces: Sequence[LayerTrace]) -> torch.Tensor:
    """Squared norms of the per-example gradients over all traced parameters: ``(k, n)``.

    Without positions the weight gradient is rank one, so its squared norm is
    ``weight_mult^2 |g|^2 |x|^2`` and nothing of size ``in * out`` is formed.

    >>> lin = nn.Linear(2, 1, bias=False)
    >>> x = torch.tensor([[3.0, 4.0]]); cot = torch.ones(1, 1, 1)      # d(sum f)/df = 1
    >>> per_example_sq_norms(backprop_layers(lin, dict(lin.named_parameters()), x, cot))   # |x|^2
    tensor([[25.]])
    """
    total = 0.0
    for t in traces:
        if t.positions:
            total = total + layer_gradients(t)["weight"].flatten(2).square().sum(-1)
            if t.has_bias:
                total = total + (t.bias_mult * t.grads.sum(2)).square().sum(-1)
        else:
            g2 = t.grads.square().sum(-1)  # (k, n)
            total = total + t.weight_mult**2 * g2 * t.inputs.square().sum(-1)
            if t.has_bias:
                total = total + t.bias_mult**2 * g2
    return total


__getattr__ = _deprecated.moved(__name__, {"per_example_grads": "labkit.structure:layer_gradients"})
