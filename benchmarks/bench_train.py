"""fit_many vs one fit after another: populations of MLPs 2-32-32-1, 256 points, 200 full-batch SGD steps.

Both populations of issue 19 (256 ReLU members, 64 tanh members), each timed three ways in the same run
on the same machine: sequential ``train.fit`` calls (the baseline), ``fit_many(engine="vmap")`` (the general
engine, and the only one before issue 19) and ``fit_many(engine="batched")`` (``labkit.population.batched``, what
``engine="auto"`` picks for these networks). Target: batched >= 25x sequential.

Every path is warmed up before it is timed (a first call pays one-off costs that no sweep pays twice). The
fit_many rows are best of ``--repeats``; the sequential loop fits ``--sequential`` members spread evenly over
the sweep (all its learning rates, not only the smallest) and is extrapolated to the population. Threads
default to torch's default (both cores of the CI machine); on a shared machine ``--threads 1`` keeps other
users' load from stalling OpenMP barriers.

    python benchmarks/bench_train.py [--steps 200] [--dtype float32] [--sequential 16] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from labkit import data, models, train
from labkit.machine import matmul_rate, timed


def case(members: int, activation: str, args: argparse.Namespace, dtype: torch.dtype) -> None:
    ds = data.teacher_student(n=256, dim=2, teacher_width=16, noise=0.05, seed=0).to(dtype=dtype)
    lrs = torch.logspace(-2, -0.5, members).tolist()  # a learning-rate sweep below the edge of stability

    def make(seed: int) -> torch.nn.Module:
        return models.mlp(2, [32, 32], 1, activation=activation, seed=seed).to(dtype)

    kw = dict(steps=args.steps, progress=False, eval_every=args.steps)
    hp = {"lr": lrs, "seed": list(range(members))}
    warm = {"lr": lrs[:4], "seed": [0, 1, 2, 3]}
    for engine in ("vmap", "batched"):
        train.fit_many(make, ds, hparams=warm, steps=5, progress=False, engine=engine)
    train.fit(make(0), ds, lr=lrs[0], steps=5, progress=False)

    t_vmap = timed(lambda: train.fit_many(make, ds, hparams=hp, engine="vmap", **kw), "cpu", args.repeats)
    t_batched = timed(lambda: train.fit_many(make, ds, hparams=hp, engine="batched", **kw), "cpu", args.repeats)
    n_seq = min(args.sequential or members, members)
    picked = sorted({round(i * (members - 1) / max(1, n_seq - 1)) for i in range(n_seq)})
    t0 = time.perf_counter()
    for i in picked:
        train.fit(make(i), ds, lr=lrs[i], seed=i, **kw)
    t_seq = (time.perf_counter() - t0) * members / len(picked)

    steps_total = members * args.steps
    flops = 3 * 2 * len(ds) * (2 * 32 + 32 * 32 + 32)  # forward 2 n (2*32 + 32*32 + 32), backward twice that
    rows = [
        ("fit, one after another" + (" (extrapolated)" if n_seq < members else ""), t_seq),
        ("fit_many engine='vmap' (before issue 19)", t_vmap),
        ("fit_many engine='batched' (the default here)", t_batched),
    ]
    print(f"\n{members} MLPs 2-32-32-1 ({activation}), 256 points, {args.steps} full-batch SGD steps, {args.dtype}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    print(f"| {'method':<46} | {'time (s)':>9} | {'network-steps/s':>15} | {'speed-up':>8} | {'GFLOP/s':>7} |")
    print(f"|{'-' * 48}|{'-' * 11}|{'-' * 17}|{'-' * 10}|{'-' * 9}|")
    for name, t in rows:
        gflops = steps_total * flops / t / 1e9
        print(f"| {name:<46} | {t:>9.2f} | {steps_total / t:>15,.0f} | {t_seq / t:>7.1f}x | {gflops:>7.1f} |")
    print(f"\nbatched / vmap: {t_vmap / t_batched:.1f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sequential", type=int, default=16, help="time this many sequential fits and extrapolate")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs for the fit_many rows")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--cases", default="256:relu,64:tanh", help="members:activation pairs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    for spec in args.cases.split(","):
        members, activation = spec.split(":")
        case(int(members), activation, args, dtype)
    ceiling = matmul_rate(dtype, "cpu")
    print(f"\ndense-matmul ceiling here ({args.dtype}, 1024^2): {ceiling / 1e9:.0f} GFLOP/s; diverged members are "
          "charged in fit_many (they stay in the batch) but stop early in the sequential loop")
    print("sequential rows extrapolate from members spread evenly over the sweep, every path warmed up first")


if __name__ == "__main__":
    main()
