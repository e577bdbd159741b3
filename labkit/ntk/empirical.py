"""The empirical neural tangent kernel ``Theta(x1, x2) = J(x1) J(x2)^T`` of any module.

``J(x)`` is the Jacobian of the network output with respect to all trainable parameters
at their current values (Jacot, Gabriel & Hongler 2018, "Neural Tangent Kernel:
Convergence and Generalization in Neural Networks", NeurIPS, arXiv:1806.07572). Three
implementations sit behind ``method`` (Novak, Sohl-Dickstein & Schoenholz 2022, "Fast
Finite Width Neural Tangent Kernel", ICML, arXiv:2206.08720):

- ``"jacobian"``: per-sample Jacobians (``vmap(jacrev)``) contracted by matmuls; any module.
- ``"ntk_vp"``: rows of ``J(x1)`` pushed through ``jvp`` on ``x2`` (NTK-vector products); any module.
- ``"structured"``: for a linear layer ``y = a x W^T + c b`` the weight block is
  ``a^2 (x1 x2^T) * (g1 g2^T)`` (elementwise product of the Gram matrices of the layer
  inputs and of the output cotangents ``g``), the bias block ``c^2 (g1 g2^T)``; summed over
  layers, using :mod:`labkit.structure`. Convolutions use their per-example gradients;
  parameters of other layers fall back to ``"jacobian"``.
- ``"auto"`` picks the cheapest by a flop model of the sizes involved.

``output="trace"`` sums over the output dimension, ``(n1, n2)``; neural-tangents'
default ``trace_axes=(-1,)`` *averages* instead (divide by the output size to compare).
``output="full"`` gives ``(n1, n2, out, out)``::

    model = mlp(3, [64], 2, seed=0)
    K = empirical(model, x)                  # (n, n), sum over the 2 outputs
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import nn
from torch.func import jacrev, jvp, vjp, vmap
from torch.utils.flop_counter import FlopCounterMode

from labkit import _checks, structure, threads
from labkit.linalg import LinearOperator
from labkit.machine import MAX_MEMORY
from labkit.models import Dense, call
from labkit.risk import Function

__all__ = ["METHODS", "NTKOperator", "choose_method", "empirical", "estimate_memory"]

Method = Literal["auto", "jacobian", "ntk_vp", "structured"]
METHODS = ("auto", "jacobian", "ntk_vp", "structured")
OUTPUTS = ("trace", "full")
BUDGET = 2**24  # entries of the largest intermediate block (chunk_size=None)

Params = Mapping[str, torch.Tensor]


def _prepare(fn: Function, x1: torch.Tensor, x2: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check the inputs and move them to the parameters' device and dtype."""
    out = []
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            out.append(None)
            continue
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must have shape (n, features...) with n >= 1, got {tuple(x.shape)}")
        out.append(x.to(device=fn.device, dtype=fn.dtype))
    if out[1] is not None and out[1].shape[1:] != out[0].shape[1:]:
        raise ValueError(
            f"x2 has features of shape {tuple(out[1].shape[1:])} but x1 has {tuple(out[0].shape[1:])}; "
            "both must match the model's input"
        )
    return out[0], out[1]


def _single(model: nn.Module) -> Callable[[Params, torch.Tensor], torch.Tensor]:
    """f(params, x_i) -> (out,): the network on one example, flattened output."""
    return lambda p, xi: call(model, p, xi.unsqueeze(0)).reshape(-1)


def _batch(model: nn.Module, x: torch.Tensor) -> Callable[[Params], torch.Tensor]:
    """F(params) -> (n, out) on a fixed batch."""
    return lambda p: call(model, p, x).reshape(x.shape[0], -1)


def _out_dim(model: nn.Module, x: torch.Tensor) -> int:
    try:
        with torch.no_grad():
            return model(x[:1]).reshape(-1).numel()
    except RuntimeError as err:
        raise ValueError(f"model does not accept inputs with features of shape {tuple(x.shape[1:])}: {err}") from err


def _rows(n: int, chunk: int) -> list[slice]:
    """Row blocks of ``x1``; a progress bar appears when there are several and they take > 2 s."""
    from labkit.history import progress_bar

    blocks = [slice(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    return progress_bar(None, "empirical NTK", len(blocks) >= 2, iterable=blocks)


def _contract(j1: dict[str, torch.Tensor], j2: dict[str, torch.Tensor], full: bool, out: torch.Tensor) -> None:
    """Add the sum over parameters of J1 J2^T to ``out`` in place, for Jacobian dicts ``{name: (n, O, *shape)}``.

    Full output is kept in the layout ``(n1, O, n2, O)`` (a plain matmul result); :func:`empirical`
    permutes once at the end. ``addmm_`` writes into ``out`` with no block-sized temporary.
    """
    for name, a in j1.items():
        b = j2[name]
        n1, o = a.shape[:2]
        n2 = b.shape[0]
        if full:  # (n1 O, p) @ (p, n2 O) -> (n1, O, n2, O)
            out.view(n1 * o, n2 * o).addmm_(a.reshape(n1 * o, -1), b.reshape(n2 * o, -1).T)
        else:  # sum over outputs folds into the contraction: (n1, O p) @ (O p, n2)
            out.addmm_(a.reshape(n1, -1), b.reshape(n2, -1).T)


def _jacobian_method(model, params, x1, x2, o, full, chunk, out):
    jac = vmap(jacrev(_single(model)), in_dims=(None, 0))  # per-sample Jacobians {name: (n, O, *shape)}
    j2 = jac(params, x1 if x2 is None else x2)
    for s in _rows(x1.shape[0], chunk):
        j1 = {k: v[s] for k, v in j2.items()} if x2 is None else jac(params, x1[s])
        _contract(j1, j2, full, out[s])


def _ntk_vp_method(model, params, x1, x2, o, full, chunk, out):
    x2 = x1 if x2 is None else x2
    f2 = _batch(model, x2)
    push = vmap(lambda t: jvp(f2, (params,), (t,))[1])  # Theta(., x2) v = J(x2) v for v = J(x1)^T e
    for s in _rows(x1.shape[0], chunk):
        rows = vmap(jacrev(_single(model)), in_dims=(None, 0))(params, x1[s])  # {name: (r, O, *shape)}
        r, o = next(iter(rows.values())).shape[:2]
        k = push({n: v.reshape(r * o, *v.shape[2:]) for n, v in rows.items()})  # (r O, n2, O)
        k = k.reshape(r, o, -1, o)  # (r, O, n2, O)
        out[s] = k if full else k.diagonal(dim1=1, dim2=3).sum(-1)


def _split(model: nn.Module, params: Params) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Parameters of supported linear layers (structured) and the rest (generic fallback)."""
    fast = set()
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, (Dense, nn.Linear, nn.Conv2d)) and structure.supported(m) and f"{prefix}weight" in params:
            fast.update(f"{prefix}{n}" for n, _ in m.named_parameters(recurse=False) if f"{prefix}{n}" in params)
    return ({k: v for k, v in params.items() if k in fast}, {k: v for k, v in params.items() if k not in fast})


def _traces(model, params, x, o):
    cot = torch.eye(o, dtype=x.dtype, device=x.device)

    def one_hot(out: torch.Tensor) -> torch.Tensor:  # (O, n, *out_shape): e_a for every example
        return cot.unsqueeze(1).expand(o, out.shape[0], o).reshape(o, *out.shape)

    return structure.backprop_layers(model, params, x, one_hot)


def _layer_block(t1: structure.LayerTrace, t2: structure.LayerTrace, s: slice, full: bool, out: torch.Tensor) -> None:
    """Add one layer's kernel block for rows ``s`` to ``out`` (that block of the result) in place."""
    g1, g2 = t1.grads[:, s], t2.grads  # (O, r, [P,] out), (O, n2, [P,] out)
    o, r, n2 = g1.shape[0], g1.shape[1], g2.shape[1]
    if t1.positions:  # convolution / extra dims: explicit per-example gradients, then a Gram matrix
        sub = structure.LayerTrace(t1.name, t1.inputs[s], g1, t1.weight_mult, t1.bias_mult, t1.has_bias,
                                   t1.weight_shape)
        a, b = structure.layer_gradients(sub), structure.layer_gradients(t2)
        _contract({k: v.transpose(0, 1) for k, v in a.items()}, {k: v.transpose(0, 1) for k, v in b.items()},
                  full, out)
        return
    xx = t1.weight_mult**2 * (t1.inputs[s] @ t2.inputs.T)  # (r, n2)
    if t1.has_bias:
        xx = xx + t1.bias_mult**2
    if full:
        gg = g1.transpose(0, 1).reshape(r * o, -1) @ g2.transpose(0, 1).reshape(n2 * o, -1).T
        out.add_(gg.reshape(r, o, n2, o).mul_(xx[:, None, :, None]))
    else:
        out.addcmul_(xx, g1.transpose(0, 1).reshape(r, -1) @ g2.transpose(0, 1).reshape(n2, -1).T)


def _structured_method(model, params, x1, x2, o, full, chunk, out):
    fast, rest = _split(model, params)
    if rest:
        _jacobian_method(model, rest, x1, x2, o, full, chunk, out)
    if not fast:
        return
    tr1 = _traces(model, fast, x1, o)
    tr2 = tr1 if x2 is None else _traces(model, fast, x2, o)
    for s in _rows(x1.shape[0], chunk):
        for a, b in zip(tr1, tr2):
            _layer_block(a, b, s, full, out[s])


_IMPL = {"jacobian": _jacobian_method, "ntk_vp": _ntk_vp_method, "structured": _structured_method}


def _forward_cost(model: nn.Module, x: torch.Tensor) -> tuple[float, int]:
    """Forward flops and activation entries of the network on one example."""
    acts = [0]

    def count(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor) and not list(module.children()):
            acts[0] += out.numel()

    handle = nn.modules.module.register_module_forward_hook(count)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x[:1])
    finally:
        handle.remove()
    return float(max(fc.get_total_flops(), 1)), max(acts[0], 1)


class _Problem:
    """A cost-estimate request, hashed by its value (architecture and sizes), never by object identity."""

    __slots__ = ("args", "key")

    def __init__(self, model: nn.Module, params: Params, n1: int, n2: int, o: int, full: bool, x: torch.Tensor):
        shapes = tuple((k, tuple(v.shape)) for k, v in params.items())
        self.key = (repr(model), shapes, tuple(x.shape[1:]), x.dtype, n1, n2, o, full)
        self.args: tuple | None = (model, params, n1, n2, o, full, x[:1])

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Problem) and self.key == other.key


@functools.lru_cache(maxsize=128)
def _cached_estimate(problem: _Problem) -> dict:
    args, problem.args = problem.args, None  # keep only the key and the answer, not the user's model
    return _estimate(*args)


def _costs(model: nn.Module, params: Params, n1: int, n2: int, o: int, full: bool, x: torch.Tensor) -> dict:
    """:func:`_estimate`, remembered per architecture (the module's repr) and problem size; thread-safe."""
    return dict(_cached_estimate(_Problem(model, params, n1, n2, o, full, x)))


#: Forming explicit per-example gradients of layers with positions (convolutions) runs ~1.6x slower per flop
#: than the Jacobian path's batched products (bench_ntk.py, CNN on 256 inputs: structured 0.11 s vs jacobian
#: 0.07 s traced, at a lower flop count); without this factor "auto" chose structured there.
POSITION_OVERHEAD = 1.6


def _estimate(model: nn.Module, params: Params, n1: int, n2: int, o: int, full: bool, x: torch.Tensor) -> dict:
    f, _ = _forward_cost(model, x)
    n_params = sum(v.numel() for v in params.values())
    oo = o * o if full else o
    jac = lambda p: 3.0 * o * f * (n1 + n2) + 2.0 * n1 * n2 * p * oo  # noqa: E731  form J, contract
    costs = {"jacobian": jac(n_params), "ntk_vp": 3.0 * o * f * n1 * (1 + 2 * n2)}
    fast, rest = _split(model, params)
    if fast:
        traces = _traces(model, fast, x[:1], o)
        c = (n1 + n2) * (1 + 2 * o) * f + (jac(sum(v.numel() for v in rest.values())) if rest else 0.0)
        for t in traces:
            d_in, d_out = t.inputs.shape[-1], t.grads.shape[-1]
            if t.positions:
                c += 2.0 * (n1 + n2) * o * t.inputs.shape[1] * d_in * d_out + 2.0 * n1 * n2 * d_in * d_out * oo
            else:
                c += 2.0 * n1 * n2 * (d_in + d_out * oo)
        costs["structured"] = c * (POSITION_OVERHEAD if any(t.positions for t in traces) else 1.0)
    return costs


def _memory(model: nn.Module, params: Params, n1: int, n2: int, o: int, full: bool, x: torch.Tensor,
            method: str, same: bool) -> tuple[int, int]:
    """Working entries of ``method`` beyond the result: ``(fixed, per_row)``, a block of ``r`` rows using
    ``fixed + r * per_row``. ``fixed`` holds what every block reads (the Jacobians or layer traces of ``x2``),
    ``per_row`` a block's own Jacobians and products; ``A`` (activations per example) bounds the autograd
    intermediates. ``same``: ``x2`` is ``x1`` (its Jacobians are reused, not recomputed)."""
    _, acts = _forward_cost(model, x)
    oo = o * o if full else 1

    def jac(p: int) -> tuple[int, int]:  # J(x2) resident (with its backward), J(x1 block), matmul into the result
        return n2 * o * (p + acts), 0 if same else o * (p + acts)

    if method == "jacobian":
        return jac(sum(v.numel() for v in params.values()))
    p = sum(v.numel() for v in params.values())
    if method == "ntk_vp":  # J(block) rows pushed through jvp on x2: tangent activations (about 1.5 entries per
        # activation, measured with the profiler on an MLP) and outputs per row
        return n2 * acts, o * (p + acts) + o * n2 * (3 * acts // 2 + o) + n2 * oo
    fast, rest = _split(model, params)
    fixed, per_row = jac(sum(v.numel() for v in rest.values())) if rest else (0, 0)
    if not fast:
        return fixed, per_row
    traces = _traces(model, fast, x[:1], o)
    per_example = sum(t.inputs.numel() + t.grads.numel() for t in traces) + o * acts
    fixed += (n1 if same else n1 + n2) * per_example
    layer_fixed, layer_row = 0, 0
    for t in traces:
        d_in, d_out = t.inputs.shape[-1], t.grads.shape[-1]
        if t.positions:  # explicit per-example gradients of the block and of x2, then their Gram matrix
            pl = d_in * d_out + d_out
            layer_fixed, layer_row = max(layer_fixed, 2 * n2 * o * pl), max(layer_row, 2 * o * pl + n2 * oo)
        else:  # x-Gram, g-Gram (and their product), transposed copies of the cotangents
            layer_fixed = max(layer_fixed, n2 * o * d_out)
            layer_row = max(layer_row, 2 * n2 + o * d_out + 2 * n2 * oo)
    return fixed + layer_fixed, max(per_row, layer_row)


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"


def _plan(model: nn.Module, params: Params, n1: int, n2: int, o: int, full: bool, x: torch.Tensor, method: str,
          same: bool, chunk_size: int | None, max_memory: int | None) -> dict:
    """Method, chunk size and memory estimate (bytes) of a kernel request; refuses one over ``max_memory``.

    ``"auto"`` takes the cheapest method (flops) whose estimate fits. ``chunk_size=None``: the largest block
    that fits ``max_memory`` and keeps intermediates near ``BUDGET`` entries."""
    item = x.element_size()
    result = n1 * n2 * (o * o if full else 1) * item
    if method == "auto":
        costs = _costs(model, params, n1, n2, o, full, x)
        candidates = sorted(costs, key=costs.get)
    else:
        candidates = [method]
    plans = []
    for m in candidates:
        fixed, per_row = (item * e for e in _memory(model, params, n1, n2, o, full, x, m, same))
        if chunk_size is not None:
            chunk = chunk_size
        else:
            chunk = max(1, min(n1, BUDGET * item // max(per_row, 1)))
            if max_memory is not None:
                chunk = max(1, min(chunk, (max_memory - result - fixed) // max(per_row, 1)))
        plan = {"method": m, "chunk_size": int(chunk), "result": result, "fixed": fixed, "per_row": per_row,
                "total": result + fixed + chunk * per_row}
        if max_memory is None or plan["total"] <= max_memory:
            return plan
        plans.append(plan)
    best = min(plans, key=lambda q: q["total"])
    shape = f"({n1}, {n2}, {o}, {o})" if full else f"({n1}, {n2})"
    how = "use fewer inputs" + (f", output='trace' (a {o * o} times smaller result)" if full else "")
    if chunk_size is not None and best["fixed"] + best["result"] + best["per_row"] <= max_memory:
        how = f"lower chunk_size (it was {chunk_size}; 1 row needs {_gib(best['per_row'])})"
    raise ValueError(
        f"this NTK needs about {_gib(best['total'])} ({_gib(result)} for the {shape} result in {x.dtype}, "
        f"{_gib(best['fixed'] + best['chunk_size'] * best['per_row'])} of intermediates for method="
        f"{best['method']!r} with chunk_size={best['chunk_size']}), more than max_memory={_gib(max_memory)}; "
        f"{how}, or raise max_memory (bytes)"
    )


def estimate_memory(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                    method: Method = "auto", output: Literal["trace", "full"] = "trace",
                    chunk_size: int | None = None, max_memory: int | None = MAX_MEMORY) -> dict:
    """What :func:`empirical` would do and need, in bytes, allocating nothing large (one forward pass on one input).

    ``{"method", "chunk_size", "result", "fixed", "per_row", "total"}``: ``result`` is exactly the returned
    tensor's ``nbytes``; ``total = result + fixed + chunk_size * per_row``. Raises the same ``ValueError`` as
    :func:`empirical` when ``total`` exceeds ``max_memory`` (``None``: no limit, the plan for ``"auto"``'s
    fastest method).
    """
    _checks.choice("method", method, METHODS)
    _checks.choice("output", output, OUTPUTS)
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
    if max_memory is not None:
        _checks.positive("max_memory", max_memory, integer=True)
    fn = Function(model)
    x1, x2 = _prepare(fn, x1, x2)
    o = _out_dim(model, x1)
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    return _plan(model, fn.params, n1, n2, o, output == "full", x1, method, x2 is None, chunk_size, max_memory)


def choose_method(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  output: str = "trace") -> str:
    """The method ``"auto"`` uses: the lowest estimated flop count (see :func:`empirical`)."""
    _checks.choice("output", output, OUTPUTS)
    fn = Function(model)
    x1, x2 = _prepare(fn, x1, x2)
    o = _out_dim(model, x1)
    costs = _costs(model, fn.params, x1.shape[0], (x1 if x2 is None else x2).shape[0], o, output == "full", x1)
    return min(costs, key=costs.get)


@threads.hot  # its set-up (checks, dry runs) too: a busy neighbour holds a core
def empirical(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    method: Method = "auto",
    output: Literal["trace", "full"] = "trace",
    chunk_size: int | None = None,
    max_memory: int = MAX_MEMORY,
) -> torch.Tensor:
    """Empirical NTK ``J(x1) J(x2)^T`` of ``model`` at its current parameters (``x2=None``: ``x1``).

    Returns ``(n1, n2)`` summed over outputs (``"trace"``) or ``(n1, n2, out, out)`` (``"full"``),
    in the model's dtype. ``chunk_size`` is the number of ``x1`` rows per block (``None``:
    sized so that no intermediate exceeds about 2^24 entries and everything fits ``max_memory``).
    ``max_memory`` (bytes, default 1 GiB) bounds the result plus the largest intermediates: a request
    whose estimate (:func:`estimate_memory`) exceeds it is refused before anything large is allocated;
    ``"auto"`` skips methods that would not fit. For a linear model ``f(x) = x W^T`` the kernel is
    ``x1 x2^T`` per output::

        >>> import torch
        >>> lin = torch.nn.Linear(3, 2, bias=False).double()
        >>> x = torch.eye(3, dtype=torch.float64)
        >>> empirical(lin, x, output="trace")  # 2 outputs, each contributes x x^T = I
        tensor([[2., 0., 0.],
                [0., 2., 0.],
                [0., 0., 2.]], dtype=torch.float64)
    """
    _checks.choice("method", method, METHODS)
    _checks.choice("output", output, OUTPUTS)
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
    _checks.positive("max_memory", max_memory, integer=True)
    fn = Function(model)
    x1, x2 = _prepare(fn, x1, x2)
    params = fn.params
    o = _out_dim(model, x1)
    full = output == "full"
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    plan = _plan(model, params, n1, n2, o, full, x1, method, x2 is None, chunk_size, max_memory)
    out = torch.zeros((n1, o, n2, o) if full else (n1, n2), dtype=x1.dtype, device=x1.device)
    with threads.for_work(threads.layer_flops(model, max(n1, n2))):
        _IMPL[plan["method"]](model, params, x1, x2, o, full, plan["chunk_size"], out)
    return out.permute(0, 2, 1, 3) if full else out


class NTKOperator(LinearOperator):
    """The NTK Gram matrix on ``x`` as a matrix-free operator (``labkit.linalg``).

    ``output="full"``: the ``(n out) x (n out)`` matrix ``J J^T`` (rows ordered example-major,
    matching ``empirical(..., output="full").permute(0, 2, 1, 3).reshape(n*out, n*out)``);
    ``"trace"``: the ``n x n`` matrix summed over outputs. A product ``Theta V`` costs one
    vjp and one jvp per column (per column and output for ``"trace"``), never a Jacobian. With
    the MSE loss ``mean_i sum_o (f - y)^2``, ``(2/n) Theta`` has the nonzero eigenvalues of the
    Gauss-Newton matrix ``(2/n) J^T J``. Like every operator it is evaluated at the parameters it
    was built with (:mod:`labkit.risk`): training the model afterwards does not change it.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, *, output: Literal["trace", "full"] = "full",
                 max_memory: int = MAX_MEMORY):
        _checks.choice("output", output, OUTPUTS)
        _checks.positive("max_memory", max_memory, integer=True)
        fn = Function(model)
        x, _ = _prepare(fn, x, None)
        self.model, self.x, self.output = model, x, output
        self.params = fn.params
        self.n, self.out_dim = x.shape[0], _out_dim(model, x)
        size = self.n * self.out_dim if output == "full" else self.n
        super().__init__(size, x.dtype, x.device)
        # one column: J^T u (parameters), then J v on every input (tangent activations and outputs); per output
        # for "trace". matmat processes as many columns at once as fit max_memory.
        p = sum(v.numel() for v in self.params.values())
        acts = _forward_cost(model, x)[1]
        per_col = (self.out_dim if output == "trace" else 1) * (p + self.n * (acts + self.out_dim))
        self.column_bytes, self.max_memory = per_col * x.element_size(), max_memory
        if self.column_bytes > max_memory:
            raise ValueError(
                f"one product with this NTK operator needs about {_gib(self.column_bytes)} ({self.n} inputs, "
                f"{p} parameters), more than max_memory={_gib(max_memory)}; use fewer inputs or raise max_memory "
                "(bytes)"
            )
        self.columns = max(1, max_memory // self.column_bytes)  # columns per vmap call in matmat
        f = lambda p: fn.forward(p, x).reshape(x.shape[0], -1)  # noqa: E731  F(params) -> (n, out)
        _, self._vjp = vjp(f, self.params)  # J^T u, reusing one forward pass
        self._jvp = lambda t: jvp(f, (self.params,), (t,))[1]  # J v

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        V = V.to(self.device, self.dtype)
        if V.shape[1] > self.columns:  # a block of columns at a time keeps the products under max_memory
            return torch.cat([self._matmat(V[:, i : i + self.columns]) for i in range(0, V.shape[1], self.columns)], 1)
        return self._matmat(V)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        n, o, k = self.n, self.out_dim, V.shape[1]
        if self.output == "full":
            cot = V.T.reshape(k, n, o)  # column j as an output-space vector
        else:  # column j placed on output a: (k, O, n, O) -> (k O, n, O)
            eye = torch.eye(o, dtype=V.dtype, device=V.device)
            cot = (V.T[:, None, :, None] * eye[None, :, None, :]).reshape(k * o, n, o)
        tangents = vmap(self._vjp)(cot)[0]  # J^T u: {name: (cols, *shape)}
        out = vmap(self._jvp)(tangents)  # J J^T u: (cols, n, O)
        if self.output == "full":
            return out.reshape(k, n * o).T
        return out.reshape(k, o, n, o).diagonal(dim1=1, dim2=3).sum(-1).T
