"""Training primitives: ``fit`` one network, ``fit_many`` a population at once.

Divergence is an outcome, not an error: a non-finite loss ends that run,
``History.diverged`` becomes True and ``History.diverged_at`` records the step.
Callbacks (live plots, sharpness, noise-scale and kernel trackers) see every
step and can stop training::

    hist = fit(model, ds, lr=0.1, steps=200, callbacks=[live_plot])
    hists = fit_many(lambda seed: mlp(2, [32], 1, seed=seed), ds,
                     hparams={"lr": [0.01, 0.1, 1.0], "seed": [0, 0, 0]}, steps=200)
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from labkit import _checks, threads
from labkit.data import Dataset, as_dataset, batch_indices
from labkit.losses import Loss
from labkit.optim import OPTIMIZERS, Functional, schedule, torch_optimizer
from labkit.risk import resolve_loss

__all__ = ["ENGINES", "Callback", "History", "StepInfo", "evaluate", "fit", "fit_many", "grid"]

DataLike = Dataset | tuple[torch.Tensor, torch.Tensor]


@dataclass
class History:
    """What one training run did.

    ``loss[t]`` is the training (mini-batch) loss at step ``t``, measured before
    that step's update; a diverged run ends with its non-finite loss.
    ``eval[name][j]`` was measured at step ``eval_steps[j]`` (on ``eval_data``, or
    on the full training set when none was given); the last entry is taken after
    the final update. Step ``t`` means "after ``t`` updates"; a run that is stopped
    or interrupted keeps exactly the steps whose update was applied (the same in
    :func:`fit` and :func:`fit_many`). ``tracked[name]`` holds what trackers
    (:class:`labkit.tracking.Every`) measured: ``{"steps": [...], "values": [...]}``.
    """

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval: dict[str, list[float]] = field(default_factory=dict)
    wall_time: float = 0.0
    diverged: bool = False
    diverged_at: int | None = None
    stopped_early: bool = False
    hparams: dict[str, Any] = field(default_factory=dict)
    tracked: dict[str, dict[str, list]] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of steps taken (including a final diverged one)."""
        return len(self.loss)

    @property
    def final_loss(self) -> float:
        """The last recorded training loss (``inf`` or ``nan`` if the run diverged)."""
        return self.loss[-1] if self.loss else math.nan

    def record_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self.eval_steps.append(step)
        for k, v in metrics.items():
            self.eval.setdefault(k, []).append(float(v))

    def track(self, step: int, values: Mapping[str, float]) -> None:
        """Record tracked scalars measured at ``step``."""
        for k, v in values.items():
            entry = self.tracked.setdefault(k, {"steps": [], "values": []})
            entry["steps"].append(int(step))
            entry["values"].append(float(v))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of everything recorded; valid JSON (non-finite numbers become None, i.e. null)."""
        return {
            "loss": _finite(self.loss),
            "lr": _finite(self.lr),
            "eval_steps": self.eval_steps,
            "eval": {k: _finite(v) for k, v in self.eval.items()},
            "tracked": {k: {"steps": v["steps"], "values": _finite(v["values"])} for k, v in self.tracked.items()},
            "wall_time": self.wall_time,
            "diverged": self.diverged,
            "diverged_at": self.diverged_at,
            "stopped_early": self.stopped_early,
            "hparams": {k: (_finite([v])[0] if isinstance(v, float) else v if isinstance(v, (int, str, bool))
                            or v is None else repr(v)) for k, v in self.hparams.items()},
        }

    def figure(self, **kwargs: Any) -> Any:
        """Loss (and metric) curves as a plotly figure (:func:`labkit.viz.loss_curves`)."""
        from labkit import viz

        return viz.loss_curves(self, **kwargs)


def _finite(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


@dataclass
class StepInfo:
    """What a callback sees at step ``step``, before that step's update.

    For :func:`fit`, ``loss`` and ``lr`` are floats and ``model`` holds the current
    parameters. For :func:`fit_many`, ``loss`` and ``lr`` are tensors over the members
    (loss NaN for members that have diverged), ``model`` is None and ``params`` is
    the stacked parameter dict ``{name: (members, ...)}``.
    """

    step: int
    loss: Any
    lr: Any
    metrics: dict[str, float]
    model: nn.Module | None
    params: dict[str, torch.Tensor] | None
    loss_fn: Loss
    data: Dataset
    batch_size: int | None
    optimizer: str | Callable
    history: History | list[History] | None = None


class Callback:
    """Base class for training hooks; override what you need.

    ``on_step`` may return True to stop training after the current step.
    A plain function ``f(info)`` is used as ``on_step``.
    """

    def on_start(self, info: StepInfo) -> None:
        pass

    def on_step(self, info: StepInfo) -> bool | None:
        return None

    def on_end(self, history: History | list[History]) -> None:
        pass


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[StepInfo], bool | None]):
        self.fn = fn

    def on_step(self, info: StepInfo) -> bool | None:
        return self.fn(info)


def _callbacks(callbacks: Iterable[Callback | Callable]) -> list[Callback]:
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback) or all(hasattr(cb, a) for a in ("on_start", "on_step", "on_end")):
            out.append(cb)
        elif callable(cb):
            out.append(_FunctionCallback(cb))
        else:
            raise TypeError(f"callbacks must be labkit.train.Callback objects or functions, got {cb!r}")
    return out


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, delay=2.0, leave=False, mininterval=0.25)


# ---------------------------------------------------------------- checks


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(model.parameters(), None)
    if p is None:
        raise ValueError(f"model {type(model).__name__} has no parameters to train")
    return p.dtype, p.device


def _check_common(
    ds: Dataset,
    loss: Loss,
    optimizer: Any,
    steps: Any,
    batch_size: Any,
    lr_values: Sequence[Any],
    wd_values: Sequence[Any],
) -> None:
    _checks.positive("steps", steps, integer=True)
    if not callable(optimizer):
        _checks.choice("optimizer", optimizer, OPTIMIZERS)
    if len(ds) == 0:
        raise ValueError("data is empty")
    if batch_size is not None:
        _checks.in_range("batch_size", batch_size, 1, len(ds))
    for v in lr_values:
        _checks.positive("lr", v)
    for v in wd_values:
        _checks.positive("weight_decay", v, allow_zero=True)


def _check_model_fits(model: nn.Module, ds: Dataset, loss: Loss) -> None:
    """Dry-run two examples so shape mistakes fail before training, with a clear message."""
    x = ds.inputs[:2]
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as err:
        raise ValueError(
            f"model does not accept the data: inputs have shape {ds.in_shape} per example "
            f"({ds.name}); the model raised: {err}"
        ) from err
    if loss.name in ("mse", "cross_entropy"):
        need = ds.out_dim
        got = tuple(out.shape[1:])
        if got != (need,):
            what = f"{need} classes" if ds.task == "classification" else f"{need} target dimension(s)"
            raise ValueError(
                f"model output has shape {got} per example but {ds.name!r} has {what}; "
                f"build the model with out_dim={need}"
            )


def _prepare(data: DataLike, model: nn.Module, device: Any) -> Dataset:
    dtype, model_device = _model_dtype_device(model)
    device = torch.device(device) if device is not None else model_device
    model.to(device)
    return as_dataset(data).to(device, dtype)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataLike, loss: str | Loss | Callable = "auto") -> dict[str, float]:
    """Mean loss (and accuracy for classification) of ``model`` on ``data`` (moved to the model's device and dtype)."""
    dtype, device = _model_dtype_device(model)
    ds = as_dataset(data).to(device, dtype)
    loss_fn = resolve_loss(loss, ds)
    out = model(ds.inputs)
    metrics = {"loss": float(loss_fn(out, ds.targets))}
    if ds.task == "classification":
        metrics["accuracy"] = float((out.argmax(-1) == ds.targets).double().mean())
    return metrics


# ---------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    data: DataLike,
    *,
    loss: str | Loss | Callable = "auto",
    optimizer: str | Callable[..., torch.optim.Optimizer] = "sgd",
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
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    ``optimizer`` is ``"sgd"``, ``"momentum"`` (0.9), ``"adam"``, ``"adamw"`` or a
    callable ``f(params, lr=..., weight_decay=...)`` returning a torch optimiser.
    ``batch_size=None`` trains on the full batch; otherwise mini-batches come
    from ``data.batches(batch_size, seed)``. ``lr_schedule`` multiplies ``lr``
    (``"warmup"``, ``"cosine"`` or ``f(step) -> float``). ``device`` defaults to
    the model's device; the data is moved there and cast to the model's dtype.
    Ctrl-C (or a callback returning True) stops cleanly with ``stopped_early``.
    """
    ds = _prepare(data, model, device)
    loss_fn = resolve_loss(loss, ds)
    _check_common(ds, loss_fn, optimizer, steps, batch_size, [lr], [weight_decay])
    _check_model_fits(model, ds, loss_fn)
    eval_ds = ds if eval_data is None else as_dataset(eval_data).to(ds.inputs.device, ds.inputs.dtype)
    eval_every = max(1, steps // 50) if eval_every is None else eval_every
    _checks.positive("eval_every", eval_every, integer=True)
    cbs = _callbacks(callbacks)

    hist = History(hparams={"lr": lr, "weight_decay": weight_decay, "seed": seed, "batch_size": batch_size,
                            "optimizer": optimizer if isinstance(optimizer, str) else repr(optimizer)})
    opt = torch_optimizer(optimizer, model.parameters(), lr, weight_decay)
    mult = schedule(lr_schedule, steps)
    batches = ds.batches(batch_size, seed) if batch_size is not None else None
    metrics: dict[str, float] = {}

    def info(step: int, value: float, lr_t: float) -> StepInfo:
        return StepInfo(step, value, lr_t, metrics, model, None, loss_fn, ds, batch_size, optimizer, hist)

    for cb in cbs:
        cb.on_start(info(0, math.nan, lr * mult(0)))
    start = time.perf_counter()
    bar = _progress(steps, "fit", progress)
    taken = 0  # updates applied: the step label of the current parameters
    try:
        for t in range(steps):
            lr_t = lr * mult(t)
            for group in opt.param_groups:
                group["lr"] = lr_t
            x, y = next(batches) if batches is not None else (ds.inputs, ds.targets)
            opt.zero_grad(set_to_none=True)
            value_t = loss_fn(model(x), y)
            value = float(value_t.detach())
            hist.loss.append(value)
            hist.lr.append(lr_t)
            if not math.isfinite(value):
                hist.diverged, hist.diverged_at = True, t
                break
            if t % eval_every == 0:
                metrics = evaluate(model, eval_ds, loss_fn)
                hist.record_eval(t, metrics)
            value_t.backward()
            stop = [cb.on_step(info(t, value, lr_t)) for cb in cbs]
            opt.step()
            taken = t + 1
            bar.update(1)
            if any(stop):
                hist.stopped_early = True
                break
    except KeyboardInterrupt:
        warnings.warn(f"fit interrupted at step {taken}; returning the history so far", stacklevel=2)
        hist.stopped_early = True
    finally:
        bar.close()
        if not hist.diverged:  # keep only the steps whose update was applied (as fit_many does)
            del hist.loss[taken:], hist.lr[taken:]
    if not hist.diverged and (not hist.eval_steps or hist.eval_steps[-1] != taken):
        hist.record_eval(taken, evaluate(model, eval_ds, loss_fn))
    hist.wall_time = time.perf_counter() - start
    for cb in cbs:
        cb.on_end(hist)
    return hist


# ---------------------------------------------------------------- fit_many

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


def _members(hparams: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
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


def _fit_many_memory(model: nn.Module, x: torch.Tensor, n: int, members: list[dict[str, Any]],
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


def _check_fit_many_memory(make_model: Callable[[int], nn.Module], data: DataLike, members: list[dict[str, Any]],
                           optimizer: Any, max_memory: int) -> None:
    """Refuse a sweep whose estimated state (:func:`_fit_many_memory`) exceeds ``max_memory``, before training.

    Builds one member's model (global RNG state restored) and runs it on one example; nothing sweep-sized is
    allocated. Inputs that fail here are left to the usual, clearer checks of :func:`_fit_group`.
    """
    _checks.positive("max_memory", max_memory, integer=True)
    try:
        with torch.random.fork_rng(devices=[]):  # a make_model that draws from the global RNG sees it unchanged
            model = make_model(members[0]["seed"])
        ds = as_dataset(data)
        dtype = next(model.parameters()).dtype
        need = _fit_many_memory(model, ds.inputs[:1].to(dtype), len(ds), members,
                                optimizer if isinstance(optimizer, str) else "adam")
    except Exception:  # a bad model or data is refused with its own, clearer message by _fit_group
        return
    if need["bytes"] > max_memory:
        gib = 2**30
        raise ValueError(
            f"fit_many would hold about {need['bytes'] / gib:.3g} GiB ({need['members']} members x "
            f"{need['per_member'] / gib:.3g} GiB of parameters, gradients, optimiser state and activations of a "
            f"batch of {need['batch_size']}), more than max_memory={max_memory / gib:.3g} GiB; use fewer members "
            f"(about {max_memory // need['per_member']} fit), a smaller batch_size, or split the sweep with "
            "labkit.parallel.fit_many(groups=...), or raise max_memory (bytes)"
        )


#: The implementations behind :func:`fit_many` (``engine=``).
ENGINES = ("auto", "batched", "vmap")


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
    max_memory: int = 1 << 30,
    engine: str = "auto",
) -> list[History]:
    """Train many networks at once, one vectorised computation per batch size.

    Member ``i`` is ``make_model(seed_i)`` trained exactly as
    ``fit(make_model(seed_i), data, lr=lr_i, weight_decay=wd_i, batch_size=bs_i, seed=seed_i, ...)``
    would train it; ``hparams`` maps any of ``lr``, ``weight_decay``, ``seed`` and
    ``batch_size`` to a sequence (one entry per member) or a scalar (shared); the
    other settings are shared. Diverged members are masked (frozen at zero, their NaNs never reach the
    others). Returns one :class:`History` per member, in order. ``max_memory`` (bytes, default 1 GiB)
    bounds the stacked training state (:func:`_fit_many_memory`): a larger sweep is refused before training.

    ``engine`` picks one of two implementations of the same training, each tested against separate fits:
    ``"vmap"`` stacks the parameters with ``torch.func.stack_module_state``, runs the forward pass of all
    members as one ``vmap`` call and backpropagates once through it (any module); ``"batched"`` is
    :mod:`labkit.batched`'s hand-batched trainer for ``labkit.models.mlp`` networks (every layer one batched
    matmul, the backward pass written out; about 2x faster on a CPU, ``benchmarks/bench_train.py``);
    ``"auto"`` (the default) takes ``"batched"`` wherever it applies and ``"vmap"`` elsewhere.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    defaults = {"lr": lr, "weight_decay": weight_decay, "seed": seed, "batch_size": batch_size}
    members = _members(hparams, defaults)
    _check_fit_many_memory(make_model, data, members, optimizer, max_memory)
    groups: dict[Any, list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault(m["batch_size"], []).append(i)
    histories: list[History | None] = [None] * len(members)
    for bs, idx in groups.items():
        group = [members[i] for i in idx]
        for i, h in zip(idx, _fit_group(make_model, data, group, bs, loss, optimizer, steps, lr_schedule,
                                         device, eval_data, eval_every, callbacks, progress, engine)):
            histories[i] = h
    return histories  # type: ignore[return-value]


class _PopulationRun:
    """The bookkeeping both ``fit_many`` engines share: each member's mini-batch stream, the stacked losses, who
    is alive and the step each member diverged at (recorded on the device, no host sync per step), the
    evaluations, and the Histories at the end. The engines only compute forward, backward and update."""

    def __init__(self, members: list[dict[str, Any]], ds: Dataset, batch_size: int | None, steps: int):
        m, dev, dtype = len(members), ds.inputs.device, ds.inputs.dtype
        seeds = [mem["seed"] for mem in members]
        self.members, self.ds, self.steps = members, ds, steps
        self.shared_batches = batch_size is None or len(set(seeds)) == 1  # every member sees the same batches
        self.index = None
        if batch_size is not None:
            idx = [batch_indices(len(ds), batch_size, steps, s) for s in (seeds[:1] if self.shared_batches else seeds)]
            self.index = torch.stack(idx, 1).to(dev)  # (steps, M or 1, B)
        self.losses = torch.full((steps, m), math.nan, dtype=dtype, device=dev)
        self.alive = torch.ones(m, dtype=torch.bool, device=dev)
        self.died = torch.full((m,), -1, dtype=torch.long, device=dev)
        self.evals: list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]] = []
        self.start = time.perf_counter()

    def batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``t``'s inputs and targets: ``(B, ...)`` shared by all members, else ``(M, B, ...)``."""
        if self.index is None:
            return self.ds.inputs, self.ds.targets
        i = self.index[t, 0] if self.shared_batches else self.index[t]
        return self.ds.inputs[i], self.ds.targets[i]

    def record(self, t: int, value: torch.Tensor) -> None:
        """Step ``t``'s member losses ``(M,)``: a member whose loss is non-finite diverged at ``t``."""
        finite = torch.isfinite(value)
        self.died = torch.where(self.alive & ~finite, torch.full_like(self.died, t), self.died)
        self.losses[t] = torch.where(self.alive, value, torch.full_like(value, math.nan))
        self.alive = self.alive & finite

    def evaluated(self, step: int, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keep the evaluation ``metrics`` (each ``(M,)``) measured at ``step``, with who was alive then."""
        self.evals.append((step, self.alive.clone(), metrics))
        return metrics

    def all_diverged(self, t: int) -> bool:
        """Whether every member has diverged, checked every 32 steps (one host sync per 32 steps)."""
        return t % 32 == 31 and not bool(self.alive.any())

    def drive(self, step: Callable[[int], bool], label: str, progress: bool, optimizer: str,
              mult: Callable[[int], float], evaluate: Callable[[int], Any], callbacks: list[Any]) -> list[History]:
        """Run ``step(t)`` (forward, :meth:`record`, evaluation, callbacks, update; True to stop) for every step,
        with the progress bar, early stopping, the all-diverged stop and Ctrl-C; return the Histories."""
        bar = _progress(self.steps, label, progress)
        taken, done = self.steps, 0  # done: updates applied
        try:
            for t in range(self.steps):
                stop = step(t)
                done = t + 1
                bar.update(1)
                if stop or self.all_diverged(t):
                    taken = t + 1
                    break
        except KeyboardInterrupt:
            warnings.warn(f"fit_many interrupted at step {done}; returning the histories so far", stacklevel=4)
            taken = done
        finally:
            bar.close()
        out = self.histories(optimizer, taken, mult, evaluate)
        for cb in callbacks:
            cb.on_end(out)
        return out

    def histories(self, optimizer: str, taken: int, mult: Callable[[int], float],
                  evaluate: Callable[[int], Any]) -> list[History]:
        """One History per member after ``taken`` updates (evaluating at ``taken`` if that was not done)."""
        died = torch.where(self.died >= taken, torch.full_like(self.died, -1), self.died)  # update never applied
        stopped = taken < self.steps and bool(self.alive.any())
        if not self.evals or self.evals[-1][0] != taken:
            evaluate(taken)
        return _member_histories(self.members, optimizer, self.losses, died, taken, stopped, mult, self.evals,
                                 time.perf_counter() - self.start)


def _member_histories(members: list[dict[str, Any]], optimizer: str, losses: torch.Tensor, died: torch.Tensor,
                      taken: int, stopped: bool, mult: Callable[[int], float], evals: list,
                      wall: float) -> list[History]:
    """One History per member from a population's stacked records, in one transfer (vmap and batched paths).

    ``losses (steps, M)``; ``died (M,)`` the step a member's loss became non-finite (-1: never); ``evals``
    ``(step, alive (M,), {metric: (M,)})`` tuples; ``mult(t)`` the schedule's learning-rate factor.
    """
    losses_np = losses[:taken].cpu().double().numpy()
    died_l = died.tolist()
    lr_curve = [float(mult(t)) for t in range(taken)]
    eval_np = [(s, a.cpu().tolist(), {k: v.cpu().double().tolist() for k, v in m.items()}) for s, a, m in evals]
    out = []
    for i, m in enumerate(members):
        d = died_l[i]
        n_steps = d + 1 if d >= 0 else taken
        h = History(loss=[float(v) for v in losses_np[:n_steps, i]], lr=[m["lr"] * f for f in lr_curve[:n_steps]],
                    wall_time=wall, diverged=d >= 0, diverged_at=d if d >= 0 else None,
                    stopped_early=stopped and d < 0, hparams={**m, "optimizer": optimizer})
        for s, alive_at, metr in eval_np:
            if alive_at[i] and (s < n_steps or (d < 0 and s == taken)):
                h.record_eval(s, {k: v[i] for k, v in metr.items()})
        out.append(h)
    return out


def _fit_group(
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
    models = [make_model(m["seed"]) for m in members]
    if not all(isinstance(m, nn.Module) for m in models):
        raise TypeError("make_model(seed) must return an nn.Module")
    ds = _prepare(data, models[0], device)
    for m in models[1:]:
        m.to(ds.inputs.device)
    loss_fn = resolve_loss(loss, ds)
    _check_common(ds, loss_fn, optimizer, steps, batch_size, [m["lr"] for m in members],
                  [m["weight_decay"] for m in members])
    if callable(optimizer):
        raise TypeError("fit_many takes optimizer names only (a callable builds one torch optimiser per model)")
    _check_model_fits(models[0], ds, loss_fn)
    eval_ds = ds if eval_data is None else as_dataset(eval_data).to(ds.inputs.device, ds.inputs.dtype)
    eval_every = max(1, steps // 50) if eval_every is None else eval_every
    cbs = _callbacks(callbacks)
    from labkit import batched  # the hand-batched fast path for Dense MLPs; vmap below is the general one

    why = None if engine == "vmap" else batched.unsupported(models, ds, loss_fn, optimizer)
    if engine == "batched" and why is not None:
        raise ValueError(f"engine='batched' cannot train these members: {why}. It takes labkit.models.mlp networks "
                         "on (examples, features) inputs with loss 'mse' or 'cross_entropy' and a named optimiser; "
                         "use engine='auto' or 'vmap' for other models")
    fast = engine != "vmap" and why is None
    work = threads.for_work(threads.layer_flops(models[0], batch_size or len(ds), len(members)))
    if fast:
        with work:
            return batched.fit_group(models, ds, members, batch_size, loss_fn, optimizer, steps,
                                     schedule(lr_schedule, steps), eval_ds, eval_every, cbs, progress)

    M = len(members)
    dev, dtype = ds.inputs.device, ds.inputs.dtype
    params, _ = torch.func.stack_module_state(models)  # {name: (M, *shape)}
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")

    run = _PopulationRun(members, ds, batch_size, steps)
    data_dims = None if run.shared_batches else 0
    # Forward through vmap (batched kernels), backward by plain autograd on the stacked
    # parameters: members are independent, so d(sum of losses)/d(params_i) is member i's
    # gradient. This is ~2.5x faster on CPU than vmap(grad(...)), which vmaps the backward too.
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
    mult = schedule(lr_schedule, steps)
    hist_stub = [History() for _ in members]

    def evaluate_all(step: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out = vmap(lambda p: functional_call(base, p, (eval_ds.inputs,)))(params)  # (M, n, out)
            metrics = {"loss": vmap(loss_fn, in_dims=(0, None))(out, eval_ds.targets)}
            if eval_ds.task == "classification":
                metrics["accuracy"] = (out.argmax(-1) == eval_ds.targets).to(dtype).mean(1)
        return run.evaluated(step, metrics)

    for cb in cbs:
        cb.on_start(StepInfo(0, run.losses[0], lr * float(mult(0)), {}, None, params, loss_fn, ds, batch_size,
                             optimizer, hist_stub))
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
                                    batch_size, optimizer, hist_stub)) for cb in cbs]
        new = opt.step(params, grads, lr * lr_t, wd)
        params = {k: torch.where(keep.reshape((-1,) + (1,) * (p.ndim - 1)), p, torch.zeros_like(p))
                  for k, p in new.items()}
        return any(stop)

    with work:
        return run.drive(step, f"fit_many ({M} models)", progress, optimizer, mult, evaluate_all, cbs)
