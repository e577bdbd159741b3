"""Batch-size benchmarks: per-example gradient norms, and a steps-to-target sweep vectorised vs sequential.

Run: ``python benchmarks/bench_batchsize.py`` (``--quick`` for a smoke run). Prints one table; every
speed-up is against a baseline measured in the same run. BackPACK (``pip install --no-deps
backpack-for-pytorch einops unfoldNd``; its torchvision dependency is not needed for BatchL2Grad)
is used when it imports, otherwise its row says "not available".

1. Squared norms |g_i|^2 of the 512 per-example gradients of an MLP 64-128-128-10 (~26k parameters,
   float32, the 8x8 digits): ``per_example_sq_norms`` (layer structure) vs ``per_example_grads``
   (torch.func vmap) vs a per-sample autograd loop vs BackPACK's ``BatchL2Grad``. Targets: >= 30x the
   loop, within 2x of BackPACK.
2. ``steps_to_target`` over 6 batch sizes x 8 learning rates x 2 seeds (one ``fit_many`` per batch
   size, all stop once every trial reached the target) vs the same 96 trials with ``fit`` one after
   another (each stops when it reaches the target). Target >= 5x. Both must give the same table.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn

import labkit
from labkit.batchsize import first_reached, per_example_grads, per_example_sq_norms, steps_to_target
from labkit.train import fit


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best (minimum) wall time of ``repeats`` calls after one untimed warm-up call (first-call set-up excluded).

    The minimum is the least disturbed by other processes on a shared machine."""
    fn()
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def norms_rows(repeats: int) -> list[tuple[str, float, float]]:
    torch.manual_seed(0)
    ds = labkit.data.digits(flat=True)
    x, y = ds.inputs[:512].float(), ds.targets[:512]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    n_params = sum(p.numel() for p in model.parameters())
    loss = labkit.losses.resolve("cross_entropy")

    def loop() -> torch.Tensor:
        out = []
        for i in range(len(x)):
            g = torch.autograd.grad(loss(model(x[i : i + 1]), y[i : i + 1]), list(model.parameters()))
            out.append(sum(t.square().sum() for t in g))
        return torch.stack(out)

    t_loop, ref = timed(loop, min(repeats, 3))
    rows = [("per-sample autograd loop", t_loop, 0.0)]
    for name, fn in (("per_example_sq_norms (layer structure)", lambda: per_example_sq_norms(model, loss, (x, y))),
                     ("per_example_grads (torch.func vmap)",
                      lambda: per_example_grads(model, loss, (x, y)).square().sum(1))):
        t, out = timed(fn, repeats)
        rows.append((name, t, float(((out - ref).abs() / ref).max())))
    try:
        from backpack import backpack, extend
        from backpack.extensions import BatchL2Grad

        bp_model = extend(nn.Sequential(*[m for m in model]))
        bp_loss = extend(nn.CrossEntropyLoss())

        def bp() -> torch.Tensor:
            bp_model.zero_grad()
            with backpack(BatchL2Grad()):
                bp_loss(bp_model(x), y).backward()
            # BackPACK reports norms of the gradients of l_i / n (mean reduction): rescale by n^2
            return sum(p.batch_l2 for p in bp_model.parameters()) * len(x) ** 2

        t, out = timed(bp, repeats)
        rows.append(("BackPACK BatchL2Grad", t, float(((out - ref).abs() / ref).max())))
    except Exception as err:  # any import or runtime failure means "not available"
        rows.append((f"BackPACK BatchL2Grad: not available ({type(err).__name__})", float("nan"), float("nan")))
    print(f"\n1. Per-example squared gradient norms: MLP 64-128-128-10 ({n_params} parameters), 512 examples, float32")
    return rows


def sweep_rows(quick: bool) -> list[tuple[str, float, float]]:
    data = labkit.data.teacher_student(n=512, dim=8, teacher_width=16, noise=0.1, seed=0)

    def make_model(seed: int) -> nn.Module:
        return labkit.models.mlp(8, [32], 1, activation="tanh", seed=seed)

    steps_to_target(make_model, data, batch_sizes=[4], lrs=[0.1], max_steps=2, target=0.03, progress=False)  # warm-up

    batch_sizes = [2, 4, 8, 16, 32, 64] if not quick else [4, 16]
    lrs = list(np.geomspace(0.02, 1.5, 8 if not quick else 2))
    seeds = [0, 1]
    kw = dict(target=0.03, max_steps=200 if not quick else 40, eval_every=5)
    def vectorised(stop: bool) -> tuple[float, list]:
        t = time.perf_counter()
        sweep = steps_to_target(make_model, data, batch_sizes=batch_sizes, lrs=lrs, seeds=seeds, stop_early=stop,
                                progress=False, **kw)
        return time.perf_counter() - t, [r["steps"] for r in sweep.rows]

    def sequential(stop: bool) -> tuple[float, list]:
        t = time.perf_counter()
        out = []
        for b in batch_sizes:
            for lr in lrs:
                for s in seeds:
                    cb = [lambda info: info.metrics.get("loss", np.inf) <= kw["target"]] if stop else []
                    h = fit(make_model(s), data, lr=lr, batch_size=b, seed=s, steps=kw["max_steps"],
                            eval_every=kw["eval_every"], progress=False, callbacks=cb)
                    out.append(first_reached(h, kw["target"]))
        return time.perf_counter() - t, out

    (t_seq, ref), (t_vec, got), (t_seq_full, ref_full), (t_vec_full, got_full) = (
        sequential(True), vectorised(True), sequential(False), vectorised(False))
    same = ref == got == ref_full == got_full
    n, reached = len(ref), sum(s is not None for s in ref)
    print(f"\n2. Steps to target: {len(batch_sizes)} batch sizes x {len(lrs)} lrs x {len(seeds)} seeds = {n} trials "
          f"({reached} reached), max {kw['max_steps']} steps, eval every {kw['eval_every']}; "
          f"identical steps tables: {same}")
    print("   (each sequential trial stops at its own first hit; a vectorised group runs until its slowest trial is"
          " done,\n    so the like-for-like ratio is the one without early stopping)")
    return [("sequential fit, each trial stops at the target", t_seq, 0.0),
            ("steps_to_target (fit_many per batch size, stop_early)", t_vec, 0.0),
            ("sequential fit, all max_steps", t_seq_full, 0.0),
            ("steps_to_target, stop_early=False", t_vec_full, 0.0)]


def print_table(rows: list[tuple[str, float, float]], baseline: float, err_label: str) -> None:
    print(f"{'method':58s} {'time (s)':>10s} {'speed-up':>9s} {err_label:>14s}")
    for name, t, err in rows:
        sp = baseline / t if t == t else float("nan")
        print(f"{name:58s} {t:10.4f} {sp:8.1f}x {err:14.1e}")


def main() -> None:
    warnings.filterwarnings("ignore", message="Full backward hook")  # BackPACK's hooks on input-free graphs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: tiny ops on an oversubscribed machine stall with more)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = norms_rows(1 if args.quick else args.repeats)
    print_table(rows, rows[0][1], "max rel. err")
    rows = sweep_rows(args.quick)
    print_table(rows[:2], rows[0][1], "")
    print_table(rows[2:], rows[2][1], "")
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s); best of {args.repeats} after a warm-up "
          "(norms), single runs after a warm-up (sweep)")


if __name__ == "__main__":
    main()
