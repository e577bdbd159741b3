"""The general population engine: any module, its members' forward pass as one ``vmap`` call.

The parameters are stacked with ``torch.func.stack_module_state``; the forward pass of all members is one
``vmap`` over a functional call, the backward pass one plain autograd call through it (members are independent,
so d(sum of losses)/d(params_i) is member i's gradient: ~2.5x faster on a CPU than ``vmap(grad(...))``), the
update :class:`labkit.optim.Functional`. Diverged members are masked (their gradients and parameters zeroed).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from labkit.data import Dataset
from labkit.history import History, StepInfo
from labkit.losses import Loss
from labkit.optim import Functional
from labkit.population.loop import Run

__all__ = ["train_group", "unsupported"]


def unsupported(models: Sequence[nn.Module], ds: Dataset, loss_fn: Loss, optimizer: Any) -> str | None:
    """None: the vmap engine trains any module with a named optimiser."""
    return None


def train_group(
    models: Sequence[nn.Module], ds: Dataset, members: list[dict[str, Any]], batch_size: int | None, loss_fn: Loss,
    optimizer: str, steps: int, mult: Callable[[int], float], eval_ds: Dataset, eval_every: int,
    callbacks: list[Any], progress: bool,
) -> list[History]:
    """Train one batch-size group (arguments as :func:`labkit.population.fit.fit_many` has them after its checks)."""
    M = len(members)
    dev, dtype = ds.inputs.device, ds.inputs.dtype
    params, _ = torch.func.stack_module_state(list(models))  # {name: (M, *shape)}
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")

    run = Run(members, ds, batch_size, steps)
    data_dims = None if run.shared_batches else 0
    forward = vmap(lambda p, x: functional_call(base, p, (x,)), in_dims=(0, data_dims))
    member_losses = vmap(loss_fn, in_dims=(0, data_dims))

    def step_fn(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        value = member_losses(forward(p, x), y)  # (M,)
        grads = torch.autograd.grad(value.sum(), list(p.values()))
        return dict(zip(p, grads)), value.detach()

    lr = torch.tensor([m["lr"] for m in members], dtype=dtype, device=dev)
    wd = torch.tensor([m["weight_decay"] for m in members], dtype=dtype, device=dev)
    opt = Functional(optimizer, params)
    hist_stub = [History() for _ in members]

    def evaluate_all(step: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out = vmap(lambda p: functional_call(base, p, (eval_ds.inputs,)))(params)  # (M, n, out)
            metrics = {"loss": vmap(loss_fn, in_dims=(0, None))(out, eval_ds.targets)}
            if eval_ds.task == "classification":
                metrics["accuracy"] = (out.argmax(-1) == eval_ds.targets).to(dtype).mean(1)
        return run.evaluated(step, metrics)

    for cb in callbacks:
        cb.on_start(StepInfo(0, run.losses[0], lr * float(mult(0)), {}, None, params, loss_fn, ds, batch_size,
                             optimizer, hist_stub, opt))

    def step(t: int) -> bool:
        nonlocal params
        grads, value = step_fn(params, *run.batch(t))
        run.record(t, value)
        metrics = evaluate_all(t) if t % eval_every == 0 else {}
        keep = run.alive
        grads = {k: torch.where(keep.reshape((-1,) + (1,) * (g.ndim - 1)), g, torch.zeros_like(g))
                 for k, g in grads.items()}
        lr_t = float(mult(t))
        stop = [cb.on_step(StepInfo(t, run.losses[t], lr * lr_t, dict(metrics), None, params, loss_fn, ds,
                                    batch_size, optimizer, hist_stub, opt)) for cb in callbacks]
        new = opt.step(params, grads, lr * lr_t, wd)
        params = {k: torch.where(keep.reshape((-1,) + (1,) * (p.ndim - 1)), p, torch.zeros_like(p))
                  for k, p in new.items()}
        return any(stop)

    return run.drive(step, f"fit_many ({M} models)", progress, optimizer, mult, evaluate_all, callbacks)
