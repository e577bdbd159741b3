"""A hand-batched trainer for populations of Dense MLPs: every member's layer is one batched matmul.

:func:`labkit.train.fit_many` vectorises any module with ``vmap``; for the networks most
experiments use (``labkit.models.mlp``: :class:`~labkit.models.Dense` layers and named
activations) this module does the same training with the layout that makes the fractal
scan fast: the members' weights of layer ``l`` are one ``(members, out, in)`` tensor, the
forward pass is one ``bmm`` per layer, the backward pass is written out (the same
aten backward kernels autograd would call, in place), all parameters, gradients and optimiser
state live in one flat ``(members, P)`` buffer each, so an optimiser step is a few in-place
operations however many layers there are, and members go through in chunks whose activations
stay in cache (reusing the same scratch arrays every step). No per-member Python anywhere.

It is exactly ``fit_many``'s semantics (the same mini-batch streams and loop, :class:`~labkit.population.loop.Run`;
the same update rule, :func:`labkit.optim.update_`; diverged members frozen at zero, the same :class:`History`);
``tests/test_batched.py`` compares it with separate :func:`labkit.train.fit` runs and with the vmap
engine. Users reach it through :func:`labkit.train.fit_many` (``engine="auto"`` or ``"batched"``), which calls
:func:`train_group` wherever :func:`supports` holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from labkit.data import Dataset
from labkit.history import History, StepInfo
from labkit.losses import LOSSES, Loss
from labkit.models import Activation, Dense
from labkit.optim import OPTIMIZERS, update_
from labkit.population.loop import Run

__all__ = ["supports", "train_group", "unsupported"]

aten = torch.ops.aten
# d act / d z applied to an output cotangent g, from the saved tensor named in the second field:
# the kernels autograd itself calls, so gradients agree with the module path to rounding.
_BACKWARD: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], Any], str]] = {
    "relu": (lambda g, h: aten.threshold_backward.grad_input(g, h, 0, grad_input=g), "h"),
    "tanh": (lambda g, h: aten.tanh_backward.grad_input(g, h, grad_input=g), "h"),
    "sigmoid": (lambda g, h: aten.sigmoid_backward.grad_input(g, h, grad_input=g), "h"),
    "gelu": (lambda g, z: aten.gelu_backward.grad_input(g, z, grad_input=g), "z"),
    "softplus": (lambda g, z: aten.softplus_backward.grad_input(g, z, 1.0, 20.0, grad_input=g), "z"),
    "erf": (lambda g, z: g.mul_(torch.exp(-z * z).mul_(2.0 / math.sqrt(math.pi))), "z"),
    "identity": (lambda g, h: g, "h"),
}
# members x rows x width x itemsize of one activation array per chunk, per CPU thread: a few such arrays
# stay in L2. Measured on the 2-core CI machine (2-32-32-1 MLPs, 256 rows, float32, us per member-step):
# 1 thread: 60.6 / 41.7 / 35.5 / 36.4 / 37.8 at 64 / 128 / 256 / 512 / 1024 KiB (relu), tanh best at 512;
# 2 threads: 70.9 / 46.9 / 28.8 / 23.9 / 22.4 at 64 / 128 / 256 / 512 / 1024 KiB: larger chunks split
# across threads. So 512 KiB per thread. On a GPU the whole population is one chunk (fit_many has already
# checked it fits in ``max_memory``).
_CHUNK_BYTES_PER_THREAD = 1 << 19


def _chunk_members(members: int, rows: int, width: int, itemsize: int, device: torch.device) -> int:
    """Members per chunk: cache-sized on CPUs (scaled with torch's thread count), everyone elsewhere."""
    if device.type != "cpu":
        return members
    per_member = max(1, rows * width * itemsize)
    return max(1, min(members, _CHUNK_BYTES_PER_THREAD * torch.get_num_threads() // per_member))


@dataclass(frozen=True)
class _Layer:
    names: tuple[str, str | None]  # parameter names of weight and bias in the module
    out_features: int
    in_features: int
    weight_mult: float
    bias_mult: float
    activation: str | None  # applied after this layer (None for the readout)


def _layers(model: nn.Module) -> list[_Layer] | str:
    """The Dense/Activation structure of ``model``, or why it is something else (a sentence)."""
    if type(model) is not nn.Sequential or len(model) == 0:
        return f"the model is a {type(model).__name__}, not an nn.Sequential of Dense layers (labkit.models.mlp)"
    layers: list[_Layer] = []
    mods = list(model.named_children())
    i = 0
    while i < len(mods):
        name, m = mods[i]
        if type(m) is not Dense:
            return f"layer {name!r} is a {type(m).__name__}, not a labkit.models.Dense"
        if not m.weight.requires_grad or (m.bias is not None and not m.bias.requires_grad):
            return f"layer {name!r} has frozen parameters"
        act = None
        if i + 1 < len(mods) and type(mods[i + 1][1]) is Activation:
            act = mods[i + 1][1].name
            i += 1
        if act is not None and act not in _BACKWARD:
            return f"activation {act!r} has no written-out backward (known: {sorted(_BACKWARD)})"
        if layers and layers[-1].out_features != m.in_features:
            return f"layer {name!r} takes {m.in_features} inputs after a layer of {layers[-1].out_features} outputs"
        layers.append(_Layer((f"{name}.weight", f"{name}.bias" if m.bias is not None else None), m.out_features,
                             m.in_features, m.weight_mult, m.bias_mult, act))
        i += 1
    if layers[-1].activation is not None:  # only readouts without an activation (the mlp layout)
        return "the readout is followed by an activation"
    return layers


def unsupported(models: Sequence[nn.Module], ds: Dataset, loss_fn: Loss, optimizer: Any) -> str | None:
    """None when :func:`fit_group` applies (every model the same ``labkit.models.mlp`` on flat inputs, loss
    ``mse`` or ``cross_entropy``, a named optimiser), else why not, as a sentence for an error message."""
    if not models:
        return "there are no models"
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        return f"the optimizer is {optimizer!r}, not one of the names {sorted(OPTIMIZERS)}"
    if ds.inputs.ndim != 2:
        return f"the inputs have shape {tuple(ds.inputs.shape)}, not (examples, features)"
    if loss_fn is not LOSSES["mse"] and loss_fn is not LOSSES["cross_entropy"]:
        return f"the loss is {getattr(loss_fn, 'name', loss_fn)!r}, not labkit's 'mse' or 'cross_entropy'"
    first = _layers(models[0])
    if isinstance(first, str):
        return first
    p0 = next(models[0].parameters())
    for i, m in enumerate(models[1:], 1):
        if _layers(m) != first:
            return f"member {i} has a different architecture from member 0"
        if any(p.dtype != p0.dtype or p.device != p0.device for p in m.parameters()):
            return f"member {i} has parameters of another dtype or device than member 0"
    if sum(1 for _ in models[0].parameters()) != sum(2 if la.names[1] else 1 for la in first):
        return "the model has parameters outside its Dense layers"
    return None


def supports(models: Sequence[nn.Module], ds: Dataset, loss_fn: Loss, optimizer: Any) -> bool:
    """True when :func:`fit_group` applies (see :func:`unsupported` for why not)."""
    return unsupported(models, ds, loss_fn, optimizer) is None


class _Population:
    """The members' parameters as one flat ``(M, P)`` buffer, layer views, and the batched passes."""

    def __init__(self, models: Sequence[nn.Module], layers: list[_Layer]):
        self.layers = layers
        self.names: list[str] = []
        self.slices: list[tuple[int, int, tuple[int, ...]]] = []  # (start, stop, per-member shape)
        offset = 0
        for la in layers:
            for name, shape in ((la.names[0], (la.out_features, la.in_features)), (la.names[1], (la.out_features,))):
                if name is None:
                    continue
                size = math.prod(shape)
                self.names.append(name)
                self.slices.append((offset, offset + size, shape))
                offset += size
        self.numel = offset
        self.flat = torch.stack([torch.cat([dict(m.named_parameters())[n].detach().reshape(-1) for n in self.names])
                                 for m in models])  # (M, P)
        self.grad = torch.zeros_like(self.flat)
        self._cache: dict[tuple[int, int, int], list] = {}  # keyed by id of self.flat / self.grad, which live as long

    def views(self, buf: torch.Tensor, lo: int = 0, hi: int | None = None) -> list[torch.Tensor]:
        """Per-parameter views ``(hi - lo, *shape)`` of a flat buffer, in :attr:`names` order."""
        rows = buf[lo:hi]
        return [rows[:, a:b].view(rows.shape[0], *s) for a, b, s in self.slices]

    def params(self) -> dict[str, torch.Tensor]:
        """The stacked parameter dict ``{name: (M, ...)}`` (views of the flat buffer)."""
        return dict(zip(self.names, self.views(self.flat)))

    def _chunk(self, buf: torch.Tensor, lo: int, hi: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per-layer (weight, bias) views of members ``lo:hi``; cached, as the buffers are only updated in place."""
        key = (id(buf), lo, hi)
        if key not in self._cache:
            it = iter(self.views(buf, lo, hi))
            self._cache[key] = [(next(it), next(it) if la.names[1] else None) for la in self.layers]
        return self._cache[key]

    def _workspace(self, m: int, rows: int, dtype: torch.dtype) -> list[dict[str, torch.Tensor]]:
        """Per-layer scratch arrays, allocated once per shape and reused by every chunk and step: the same
        few arrays stay in cache and no step pays for fresh (page-faulting) allocations."""
        key = ("ws", m, rows, dtype)
        if key not in self._cache:
            dev = self.flat.device
            self._cache[key] = [{"z": torch.empty(m, rows, la.out_features, dtype=dtype, device=dev),
                                 "g": torch.empty(m, rows, la.in_features, dtype=dtype, device=dev),
                                 "w": torch.empty(m, la.out_features, la.in_features, dtype=dtype, device=dev),
                                 "wT": torch.empty(m, la.in_features, la.out_features, dtype=dtype, device=dev)}
                                for la in self.layers]
        return self._cache[key]

    def forward(self, lo: int, hi: int, x: torch.Tensor):
        """Outputs ``(m, n, out)`` of members ``lo:hi`` on ``x`` (``(n, d)`` shared or ``(m, n, d)``) and the
        per-layer ``(input, saved)`` pairs :meth:`backward` needs (views of the workspace: use before the next call)."""
        m, rows = hi - lo, x.shape[-2]
        ws = self._workspace(m, rows, x.dtype)
        h = x if x.ndim == 3 else x.expand(m, *x.shape)
        saved = []
        for la, (w, b), buf in zip(self.layers, self._chunk(self.flat, lo, hi), ws):
            if la.out_features == 1:  # a readout: w h^T as (m, 1, n) is faster than h w^T as (m, n, 1)
                z = torch.bmm(w, h.transpose(1, 2), out=buf["z"].view(m, 1, rows)).view(m, rows, 1)
            else:
                z = torch.bmm(h, w.transpose(1, 2), out=buf["z"])  # (m, n, out): h W^T, then the bias in place
            if la.weight_mult != 1.0:
                z.mul_(la.weight_mult)
            if b is not None:
                z.add_(b.unsqueeze(1), alpha=la.bias_mult)
            inp, act = h, la.activation
            if act is None or act == "identity":
                h = z
            elif _BACKWARD[act][1] == "h":  # relu, tanh, sigmoid: activate in place, backward reads the output
                h = _ACTIVATE_[act](z)
            else:  # gelu, softplus, erf: backward needs the pre-activation z
                h = _ACTIVATE[act](z)
            saved.append((inp, h if act is None or _BACKWARD[act][1] == "h" else z))
        return h, saved

    def backward(self, lo: int, hi: int, g: torch.Tensor, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Write d(sum of member losses)/d(params) of members ``lo:hi`` into :attr:`grad`; ``g = dL/d out``."""
        grads, weights = self._chunk(self.grad, lo, hi), self._chunk(self.flat, lo, hi)
        ws = self._workspace(hi - lo, g.shape[1], g.dtype)
        for li in range(len(self.layers) - 1, -1, -1):
            la, inp, (gw, gb) = self.layers[li], saved[li][0], grads[li]
            # dW = wm sum_i g_i h_i^T, db = bm sum_i g_i (per member), into the flat gradient buffer
            if la.in_features < la.out_features:  # the wide orientation is the fast one (the first layer)
                gw.copy_(torch.bmm(inp.transpose(1, 2), g, out=ws[li]["wT"]).transpose(1, 2))
            else:
                gw.copy_(torch.bmm(g.transpose(1, 2), inp, out=ws[li]["w"]))
            if la.weight_mult != 1.0:
                gw.mul_(la.weight_mult)
            if gb is not None:
                torch.sum(g, 1, out=gb) if gb.is_contiguous() else gb.copy_(g.sum(1))
                if la.bias_mult != 1.0:
                    gb.mul_(la.bias_mult)
            if li == 0:
                break
            w = weights[li][0]
            if la.out_features == 1:  # an outer product: the broadcast multiply is faster than a K=1 bmm
                g = torch.mul(g, w, out=ws[li]["g"])
            else:
                g = torch.bmm(g, w, out=ws[li]["g"])  # (m, n, in): d loss / d(previous layer's output)
            if la.weight_mult != 1.0:
                g.mul_(la.weight_mult)
            act = self.layers[li - 1].activation
            if act != "identity":
                _BACKWARD[act][0](g, saved[li - 1][1])  # in place: g <- g * act'(z)


_ACTIVATE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": nn.functional.gelu,
    "softplus": nn.functional.softplus,
    "erf": torch.erf,
}
_ACTIVATE_: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {  # in place
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_,
}


def _loss_and_cotangent(name: str, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean loss ``(m,)`` and its gradient with respect to ``out`` ``(m, n, k)``."""
    n = out.shape[1]
    if name == "mse":
        r = out - y.reshape(out.shape[-2:]) if y.ndim < 3 else out - y.reshape(out.shape)
        value = (r * r).sum(-1).mean(-1)  # pow(2) is x*x too, but pays a scalar-to-tensor conversion
        return value, r.mul_(2.0 / n)
    logp = torch.log_softmax(out, -1)
    idx = (y if y.ndim == 2 else y.expand(out.shape[0], n)).unsqueeze(-1)
    value = -logp.gather(-1, idx).squeeze(-1).mean(-1)
    g = logp.exp_()
    g.scatter_add_(-1, idx, torch.full_like(idx, -1, dtype=g.dtype))
    return value, g.div_(n)


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(-1) == y).to(out.dtype).mean(-1)


class _Optimizer:
    """The optimiser's state on the flat ``(M, P)`` buffers; :func:`labkit.optim.update_` is the rule."""

    def __init__(self, name: str, flat: torch.Tensor):
        self.name, self.t = name, 0
        self.m = torch.zeros_like(flat) if name != "sgd" else None
        self.v = torch.zeros_like(flat) if name in ("adam", "adamw") else None

    def step(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, wd: torch.Tensor, decay: bool) -> None:
        self.t += 1
        update_(self.name, p, g, self.m, self.v, self.t, lr, wd, decay=decay)


def train_group(
    models: Sequence[nn.Module],
    ds: Dataset,
    members: list[dict[str, Any]],
    batch_size: int | None,
    loss_fn: Loss,
    optimizer: str,
    steps: int,
    mult: Callable[[int], float],
    eval_ds: Dataset,
    eval_every: int,
    callbacks: list[Any],
    progress: bool,
) -> list[History]:
    """Train one batch-size group of :func:`labkit.train.fit_many` (arguments as it has them after its checks;
    ``mult`` is the lr multiplier, ``callbacks`` are Callback objects) and return the Histories."""
    layers = _layers(models[0])
    assert not isinstance(layers, str), "call batched.supports first"
    pop = _Population(models, layers)
    M = len(members)
    dev, dtype = ds.inputs.device, ds.inputs.dtype
    run = Run(members, ds, batch_size, steps)
    rows = len(ds) if batch_size is None else batch_size
    width = max(max(la.out_features, la.in_features) for la in layers)
    chunk = _chunk_members(M, rows, width, ds.inputs.element_size(), ds.inputs.device)

    lr = torch.tensor([m["lr"] for m in members], dtype=dtype, device=dev).unsqueeze(1)
    wd = torch.tensor([m["weight_decay"] for m in members], dtype=dtype, device=dev).unsqueeze(1)
    decay = any(m["weight_decay"] != 0 for m in members)
    opt = _Optimizer(optimizer, pop.flat)
    name = loss_fn.name
    classify = eval_ds.task == "classification"
    reuse_eval = eval_ds is ds and batch_size is None  # the step's own forward pass is the evaluation
    value = torch.empty(M, dtype=dtype, device=dev)
    acc = torch.empty(M, dtype=dtype, device=dev)
    stub = [None] * M

    @torch.no_grad()
    def evaluate_all(step: int) -> dict[str, torch.Tensor]:
        loss_e = torch.empty(M, dtype=dtype, device=dev)
        acc_e = torch.empty(M, dtype=dtype, device=dev)
        for lo in range(0, M, chunk):
            hi = min(M, lo + chunk)
            out, _ = pop.forward(lo, hi, eval_ds.inputs)
            loss_e[lo:hi] = _loss_and_cotangent(name, out, eval_ds.targets)[0]
            if classify:
                acc_e[lo:hi] = _accuracy(out, eval_ds.targets)
        return run.evaluated(step, {"loss": loss_e, **({"accuracy": acc_e} if classify else {})})

    def info(t: int, loss_t: torch.Tensor, lr_t: torch.Tensor, metrics: dict) -> Any:
        params = {k: v.clone() for k, v in pop.params().items()}
        return StepInfo(t, loss_t, lr_t, metrics, None, params, loss_fn, ds, batch_size, optimizer, stub, opt)

    for cb in callbacks:
        cb.on_start(info(0, run.losses[0], lr.squeeze(1) * float(mult(0)), {}))

    def step(t: int) -> bool:
        x, y = run.batch(t)
        with torch.no_grad():
            for lo in range(0, M, chunk):
                hi = min(M, lo + chunk)
                xc, yc = (x, y) if x.ndim == ds.inputs.ndim else (x[lo:hi], y[lo:hi])
                out, saved = pop.forward(lo, hi, xc)
                if reuse_eval and classify and t % eval_every == 0:
                    acc[lo:hi] = _accuracy(out, yc)
                value[lo:hi], g = _loss_and_cotangent(name, out, yc)
                pop.backward(lo, hi, g, saved)
        run.record(t, value)
        metrics: dict[str, torch.Tensor] = {}
        if t % eval_every == 0:
            if reuse_eval:
                metrics = run.evaluated(t, {"loss": value.clone(), **({"accuracy": acc.clone()} if classify else {})})
            else:
                metrics = evaluate_all(t)
        lr_t = float(mult(t))
        stop = [cb.on_step(info(t, run.losses[t], lr.squeeze(1) * lr_t, dict(metrics))) for cb in callbacks]
        dead = ~run.alive.unsqueeze(1)
        pop.grad.masked_fill_(dead, 0.0)
        opt.step(pop.flat, pop.grad, lr * lr_t, wd, decay)
        pop.flat.masked_fill_(dead, 0.0)
        return any(stop)

    return run.drive(step, f"fit_many ({M} models, batched)", progress, optimizer, mult, evaluate_all, callbacks)


def dense_layers(model: nn.Module) -> list[_Layer] | str:
    """The Dense/Activation layers of a ``labkit.models.mlp`` (weight and bias names, sizes, multipliers,
    activations), or why ``model`` is something else: the structure other batched passes over MLPs share."""
    return _layers(model)


def chunk_members(members: int, rows: int, width: int, itemsize: int, device: torch.device) -> int:
    """Members per chunk of a batched pass over MLPs: cache-sized on CPUs, everyone elsewhere."""
    return _chunk_members(members, rows, width, itemsize, device)
