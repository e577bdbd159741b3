"""The one door to population training: :func:`fit_many` (re-exported as :func:`labkit.train.fit_many`).

It zips the hyperparameters into members, refuses a sweep that would not fit in ``max_memory`` before training,
splits the members into groups of equal batch size (and, given ``executor=``/``groups=``, into vectorised groups
on workers), checks each group, and hands it to an engine (:mod:`labkit.population.vmap` for any module,
:mod:`labkit.population.batched` for ``models.mlp`` networks) that drives the shared
:class:`~labkit.population.loop.Run`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from labkit import _checks, parallel, threads
from labkit.data import as_dataset
from labkit.history import Callback, History, as_callbacks
from labkit.losses import Loss
from labkit.machine import MAX_MEMORY
from labkit.optim import schedule
from labkit.population import batched, vmap
from labkit.prepare import DataLike, check_model_fits, check_settings, prepare
from labkit.risk import resolve_loss

__all__ = ["ENGINES", "fit_group", "fit_many", "grid", "members", "memory_estimate"]

#: The implementations behind :func:`fit_many` (``engine=``).
ENGINES = ("auto", "batched", "vmap")

_VECTOR_HPARAMS = ("lr", "weight_decay", "seed", "batch_size")


def grid(**axes: Sequence[Any]) -> dict[str, list[Any]]:
    """Cartesian product of hyperparameter axes, in the zipped form ``fit_many`` takes.

    >>> grid(lr=[0.1, 1], seed=[0, 1])
    {'lr': [0.1, 0.1, 1, 1], 'seed': [0, 1, 0, 1]}
    """
    import itertools

    names = list(axes)
    rows = list(itertools.product(*(list(axes[n]) for n in names)))
    return {n: [r[i] for r in rows] for i, n in enumerate(names)}


def members(hparams: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    unknown = set(hparams) - set(_VECTOR_HPARAMS)
    if unknown:
        raise ValueError(f"hparams has unknown keys {sorted(unknown)}; fit_many varies {list(_VECTOR_HPARAMS)}")
    lengths = {k: len(v) for k, v in hparams.items() if not isinstance(v, (int, float, type(None)))}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"hparams sequences must have equal lengths, got {lengths}")
    n = next(iter(lengths.values()), 1)
    if n < 1:
        raise ValueError("hparams sequences are empty: nothing to train")
    cols = {k: (list(v) if k in lengths else [v] * n) for k, v in hparams.items()}
    return [{**defaults, **{k: cols[k][i] for k in cols}} for i in range(n)]


_OPTIMISER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}  # state tensors per parameter


def memory_estimate(model: nn.Module, x: torch.Tensor, n: int, members: list[dict[str, Any]],
                     optimizer: str) -> dict[str, int]:
    """Bytes :func:`fit_many` holds at once, from one member's ``model`` run on one example ``x``.

    Groups of equal batch size run one after another, so the estimate is the largest group's
    ``members x (parameters x (value, gradient, optimiser slots) + batch x (input + 2 x activations))``
    (activations are counted by forward hooks on leaf modules; the backward pass holds as many again).
    Returns ``{"bytes", "members", "batch_size", "per_member"}`` for that group.
    """
    acts = [0]

    def count(module: nn.Module, args: tuple, out: Any) -> None:
        if isinstance(out, torch.Tensor) and not list(module.children()):
            acts[0] += out.numel()

    handle = nn.modules.module.register_module_forward_hook(count)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    item = x.element_size()
    state = sum(q.numel() for q in model.parameters()) * (2 + _OPTIMISER_SLOTS.get(optimizer, 2))
    sizes: dict[int, int] = {}
    for m in members:
        bs = min(m["batch_size"] or n, n)
        sizes[bs] = sizes.get(bs, 0) + 1
    plans = [{"members": k, "batch_size": bs, "per_member": item * (state + bs * (x.numel() + 2 * acts[0]))}
             for bs, k in sizes.items()]
    for q in plans:
        q["bytes"] = q["members"] * q["per_member"]
    return max(plans, key=lambda q: q["bytes"])


def check_memory(make_model: Callable[[int], nn.Module], data: DataLike, members: list[dict[str, Any]],
                           optimizer: Any, max_memory: int) -> None:
    """Refuse a sweep whose estimated state (:func:`memory_estimate`) exceeds ``max_memory``, before training.

    Builds one member's model (global RNG state restored) and runs it on one example; nothing sweep-sized is
    allocated. Inputs that fail here are left to the usual, clearer checks of :func:`fit_group`.
    """
    _checks.positive("max_memory", max_memory, integer=True)
    try:
        with torch.random.fork_rng(devices=[]):  # a make_model that draws from the global RNG sees it unchanged
            model = make_model(members[0]["seed"])
        ds = as_dataset(data)
        dtype = next(model.parameters()).dtype
        need = memory_estimate(model, ds.inputs[:1].to(dtype), len(ds), members,
                                optimizer if isinstance(optimizer, str) else "adam")
    except Exception:  # a bad model or data is refused with its own, clearer message by fit_group
        return
    if need["bytes"] > max_memory:
        gib = 2**30
        raise ValueError(
            f"fit_many would hold about {need['bytes'] / gib:.3g} GiB ({need['members']} members x "
            f"{need['per_member'] / gib:.3g} GiB of parameters, gradients, optimiser state and activations of a "
            f"batch of {need['batch_size']}), more than max_memory={max_memory / gib:.3g} GiB; use fewer members "
            f"(about {max_memory // need['per_member']} fit), a smaller batch_size, or split the sweep with "
            "fit_many(groups=...), or raise max_memory (bytes)"
        )


@threads.hot  # its set-up (checks, dry runs) too: a busy neighbour holds a core
def fit_many(
    make_model: Callable[[int], nn.Module],
    data: DataLike,
    *,
    hparams: Mapping[str, Sequence[Any] | Any],
    loss: str | Loss | Callable = "auto",
    optimizer: str = "sgd",
    lr: float = 0.1,
    batch_size: int | None = None,
    steps: int = 100,
    lr_schedule: str | Callable[[int], float] | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    eval_data: DataLike | None = None,
    eval_every: int | None = None,
    callbacks: Iterable[Callback | Callable] = (),
    progress: bool = True,
    max_memory: int = MAX_MEMORY,
    engine: str = "auto",
    executor: Any = None,
    groups: int | None = None,
) -> list[History]:
    """Train many networks at once, one vectorised computation per batch size.

    Member ``i`` is ``make_model(seed_i)`` trained exactly as
    ``fit(make_model(seed_i), data, lr=lr_i, weight_decay=wd_i, batch_size=bs_i, seed=seed_i, ...)``
    would train it; ``hparams`` maps any of ``lr``, ``weight_decay``, ``seed`` and
    ``batch_size`` to a sequence (one entry per member) or a scalar (shared); the
    other settings are shared. Diverged members are masked (frozen at zero, their NaNs never reach the
    others). Returns one :class:`History` per member, in order. ``max_memory`` (bytes, default 1 GiB)
    bounds the stacked training state (:func:`memory_estimate`): a larger sweep is refused before training.

    ``engine`` picks one of two implementations of the same training, each tested against separate fits:
    ``"vmap"`` stacks the parameters with ``torch.func.stack_module_state``, runs the forward pass of all
    members as one ``vmap`` call and backpropagates once through it (any module); ``"batched"`` is
    :mod:`labkit.population.batched`'s hand-batched trainer for ``labkit.models.mlp`` networks (every layer one batched
    matmul, the backward pass written out; about 2x faster on a CPU, ``benchmarks/bench_train.py``);
    ``"auto"`` (the default) takes ``"batched"`` wherever it applies and ``"vmap"`` elsewhere.

    ``executor`` (see :mod:`labkit.parallel`: None, ``"local"``, a scheduler address or a ``distributed.Client``)
    and ``groups`` split the members into ``groups`` vectorised groups (default: one per worker), each one
    ``fit_many`` call on one worker (progress bars off, ``max_memory`` per group); the Histories come back in
    member order and equal those of one in-process call. Callbacks then run on the workers.
    """
    if not callable(make_model):
        raise TypeError(f"make_model must be a function seed -> nn.Module, got {type(make_model).__name__}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if eval_every is not None:
        _checks.positive("eval_every", eval_every, integer=True)
    defaults = {"lr": lr, "weight_decay": weight_decay, "seed": seed, "batch_size": batch_size}
    members_ = members(hparams, defaults)
    if executor is not None or groups is not None:
        return _split(make_model, data, hparams, members_, executor, groups,
                      dict(loss=loss, optimizer=optimizer, lr=lr, batch_size=batch_size, steps=steps,
                           lr_schedule=lr_schedule, weight_decay=weight_decay, seed=seed, device=device,
                           eval_data=eval_data, eval_every=eval_every, callbacks=callbacks, max_memory=max_memory,
                           engine=engine))
    check_memory(make_model, data, members_, optimizer, max_memory)
    by_size: dict[Any, list[int]] = {}
    for i, m in enumerate(members_):
        by_size.setdefault(m["batch_size"], []).append(i)
    histories: list[History | None] = [None] * len(members_)
    for bs, idx in by_size.items():
        group = [members_[i] for i in idx]
        for i, h in zip(idx, fit_group(make_model, data, group, bs, loss, optimizer, steps, lr_schedule,
                                         device, eval_data, eval_every, callbacks, progress, engine)):
            histories[i] = h
    return histories  # type: ignore[return-value]


def fit_group(
    make_model: Callable[[int], nn.Module],
    data: DataLike,
    members: list[dict[str, Any]],
    batch_size: int | None,
    loss: Any,
    optimizer: str,
    steps: int,
    lr_schedule: Any,
    device: Any,
    eval_data: Any,
    eval_every: int | None,
    callbacks: Iterable[Any],
    progress: bool,
    engine: str = "auto",
) -> list[History]:
    """Check one batch-size group, build its members and hand them to the engine that applies."""
    models = [make_model(m["seed"]) for m in members]
    if not all(isinstance(m, nn.Module) for m in models):
        raise TypeError("make_model(seed) must return an nn.Module")
    ds = prepare(data, models[0], device)
    for m in models[1:]:
        m.to(ds.inputs.device)
    loss_fn = resolve_loss(loss, ds)
    check_settings(ds, loss_fn, optimizer, steps, batch_size, [m["lr"] for m in members],
                   [m["weight_decay"] for m in members])
    if callable(optimizer):
        raise TypeError("fit_many takes optimizer names only (a callable builds one torch optimiser per model)")
    check_model_fits(models[0], ds, loss_fn)
    eval_ds = ds if eval_data is None else as_dataset(eval_data).to(ds.inputs.device, ds.inputs.dtype)
    eval_every = max(1, steps // 50) if eval_every is None else eval_every
    cbs = as_callbacks(callbacks)
    why = None if engine == "vmap" else batched.unsupported(models, ds, loss_fn, optimizer)
    if engine == "batched" and why is not None:
        raise ValueError(f"engine='batched' cannot train these members: {why}. It takes labkit.models.mlp networks "
                         "on (examples, features) inputs with loss 'mse' or 'cross_entropy' and a named optimiser; "
                         "use engine='auto' or 'vmap' for other models")
    chosen = batched if engine != "vmap" and why is None else vmap
    mult = schedule(lr_schedule, steps)
    # one thread when a step's ops are too small to amortise a barrier on this (possibly shared) machine
    with threads.for_work(threads.layer_flops(models[0], batch_size or len(ds), len(members))):
        return chosen.train_group(models, ds, members, batch_size, loss_fn, optimizer, steps, mult, eval_ds,
                                  eval_every, cbs, progress)


def _group_task(make_model: Callable, data: Any, hparams: dict, kwargs: dict) -> list:
    return fit_many(make_model, data, hparams=hparams, progress=False, **kwargs)


def _split(make_model: Callable, data: Any, hparams: Mapping[str, Any], members_: list[dict[str, Any]],
           executor: Any, groups: int | None, kwargs: dict[str, Any]) -> list[History]:
    """``fit_many`` with its members split into ``groups`` vectorised groups on ``executor`` (in member order)."""
    if groups is None:
        groups = parallel.n_workers(executor)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    groups = min(groups, len(members_))
    bounds = [round(i * len(members_) / groups) for i in range(groups + 1)]
    c = parallel.client(executor)
    shared = data if c is None else c.scatter(data, broadcast=True)  # the data travels once
    args = []
    for lo, hi in itertools.pairwise(bounds):
        sub = {k: [m[k] for m in members_[lo:hi]] for k in hparams}
        args.append((make_model, shared, sub, kwargs))
    keys = [parallel.task_key("fit_many", *a) for a in args] if c is not None else None
    out: list[list] = [[] for _ in args]
    for i, histories in parallel.submit(_group_task, args, name="fit_many", executor=executor, keys=keys):
        out[i] = histories
    return [h for group in out for h in group]
