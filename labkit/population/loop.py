"""The population loop: what every engine of :func:`labkit.train.fit_many` (and :func:`labkit.grokking.run`) shares.

An *engine* trains one group of members (equal batch size) and is a module with two functions
(:class:`Engine`): ``unsupported(models, ds, loss_fn, optimizer)`` says why it cannot train them (None when it
can), and ``train_group(models, ds, members, batch_size, loss_fn, optimizer, steps, mult, eval_ds, eval_every,
callbacks, progress)`` trains them, building a :class:`Run` and handing its one ``step(t)`` to :meth:`Run.drive`.
Engines: :mod:`labkit.population.vmap` (any module) and :mod:`labkit.population.batched` (``models.mlp``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from labkit.data import Dataset, batch_indices
from labkit.history import History, progress_bar
from labkit.losses import Loss

__all__ = ["Engine", "Run", "member_histories"]


class Engine(Protocol):
    """The interface of a population engine (a module): see the module docstring."""

    def unsupported(self, models: Sequence[nn.Module], ds: Dataset, loss_fn: Loss, optimizer: Any) -> str | None:
        ...

    def train_group(self, models: Sequence[nn.Module], ds: Dataset, members: list[dict[str, Any]],
                    batch_size: int | None, loss_fn: Loss, optimizer: str, steps: int, mult: Callable[[int], float],
                    eval_ds: Dataset, eval_every: int, callbacks: list[Any], progress: bool) -> list[History]:
        ...


class Run:
    """The loop every population engine shares: each member's mini-batch stream, the stacked losses, who is alive
    and the step each member diverged at (recorded on the device, no host sync per step), the evaluations, the
    progress bar, early stopping, the all-diverged stop, Ctrl-C (:meth:`drive`) and the Histories at the end.
    An engine only computes forward, backward and update, in the ``step(t)`` it hands to :meth:`drive`."""

    def __init__(self, members: list[dict[str, Any]], ds: Dataset, batch_size: int | None, steps: int):
        m, dev, dtype = len(members), ds.inputs.device, ds.inputs.dtype
        seeds = [mem["seed"] for mem in members]
        self.members, self.ds, self.steps = members, ds, steps
        self.shared_batches = batch_size is None or len(set(seeds)) == 1  # every member sees the same batches
        self.index = None
        if batch_size is not None:
            streams = seeds[:1] if self.shared_batches else seeds
            idx = [batch_indices(len(ds), batch_size, steps, seed=s) for s in streams]
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
        bar = progress_bar(self.steps, label, progress)
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
        return member_histories(self.members, optimizer, self.losses, died, taken, stopped, mult, self.evals,
                                 time.perf_counter() - self.start)


def member_histories(members: list[dict[str, Any]], optimizer: str, losses: torch.Tensor, died: torch.Tensor,
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
