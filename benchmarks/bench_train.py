"""fit_many vs one fit after another: 256 MLPs 2-32-32-1, 256 points, 200 full-batch steps.

Both columns are measured in the same run on the same machine. Target: fit_many >= 20x.

    python benchmarks/bench_train.py [--models 256] [--steps 200] [--dtype float32]
"""

from __future__ import annotations

import argparse
import time

import torch

from labkit import data, models, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sequential", type=int, default=None, help="time this many sequential fits and extrapolate")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--activation", default="relu", help="labkit.models.ACTIVATIONS name (relu: the mlp default)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    ds = data.teacher_student(n=256, dim=2, teacher_width=16, noise=0.05, seed=0).to(dtype=dtype)
    lrs = torch.logspace(-2, -0.5, args.models).tolist()  # a learning-rate sweep below the edge of stability

    def make(seed: int) -> torch.nn.Module:
        return models.mlp(2, [32, 32], 1, activation=args.activation, seed=seed).to(dtype)

    kw = dict(steps=args.steps, progress=False, eval_every=args.steps)
    train.fit_many(make, ds, hparams={"lr": lrs[:4], "seed": [0, 1, 2, 3]}, steps=5, progress=False)  # warm-up

    t0 = time.perf_counter()
    many = train.fit_many(make, ds, hparams={"lr": lrs, "seed": list(range(args.models))}, **kw)
    t_many = time.perf_counter() - t0

    n_seq = args.sequential or args.models
    t0 = time.perf_counter()
    for i in range(n_seq):
        train.fit(make(i), ds, lr=lrs[i], seed=i, **kw)
    t_seq = (time.perf_counter() - t0) * args.models / n_seq

    diverged = sum(h.diverged for h in many)
    steps_total = args.models * args.steps
    # matmul FLOPs of one network-step: forward 2 n (2*32 + 32*32 + 32), backward twice that
    flops = 3 * 2 * len(ds) * (2 * 32 + 32 * 32 + 32)
    a = torch.randn(1024, 1024, dtype=dtype)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    ceiling = 10 * 2 * 1024**3 / (time.perf_counter() - t0)
    rows = [
        ("fit, one after another" + (" (extrapolated)" if n_seq < args.models else ""), t_seq, 1.0),
        ("fit_many (vmap forward + autograd)", t_many, t_seq / t_many),
    ]
    print(f"\n{args.models} MLPs 2-32-32-1 ({args.activation}), 256 points, {args.steps} full-batch SGD steps, "
          f"{args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads; {diverged} members diverged\n")
    print(f"| {'method':<46} | {'time (s)':>9} | {'network-steps/s':>15} | {'speed-up':>8} | {'GFLOP/s':>7} |")
    print(f"|{'-' * 48}|{'-' * 11}|{'-' * 17}|{'-' * 10}|{'-' * 9}|")
    for name, t, s in rows:
        gflops = steps_total * flops / t / 1e9
        print(f"| {name:<46} | {t:>9.2f} | {steps_total / t:>15,.0f} | {s:>7.1f}x | {gflops:>7.1f} |")
    print(f"\ndense-matmul ceiling here ({args.dtype}, 1024^2): {ceiling / 1e9:.0f} GFLOP/s; "
          "diverged members are charged in fit_many (they stay in the batch) but stop early in the sequential loop")


if __name__ == "__main__":
    main()
