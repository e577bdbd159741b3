"""Hessian-vector products: forward-over-reverse (the old default) vs double backward vs the per-model choice.

    python benchmarks/bench_hvp.py [--n 512] [--repeats 10] [--threads 1]

All rows are measured in the same run, interleaved, best of ``--repeats``, on the models of
``bench_hessian.py`` (MLP 64-128-128-10 on 512 Gaussian inputs, a small CNN on 8x8 digits), float64. The
cost unit is one full-data gradient (``risk.gradient()``) timed the same way. Target (issue 19): the
chosen HVP costs <= 2.5 gradients.
"""

from __future__ import annotations

import argparse
import time

import torch

import labkit
from labkit import hvp
from labkit.curvature import CurvatureOperator, HessianOperator


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--block", type=int, default=10, help="also time H V for a block of this many vectors")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (args.n,), generator=g)
    digits = labkit.data.load("digits")
    xd, yd = digits.inputs[: args.n].double().reshape(-1, 1, 8, 8), digits.targets[: args.n]
    cases = [("MLP 64-128-128-10", labkit.models.mlp(64, [128, 128], 10, seed=0).double(), (x, y)),
             ("CNN 8x8 digits", labkit.models.cnn(8, 1, 10, width=16, seed=0).double(), (xd, yd))]
    print(f"\nHessian-vector products, float64, {args.n} examples, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); best of {args.repeats}, interleaved\n")
    print(f"| {'model':<18} | {'method':<34} | {'ms / vector':>11} | {'x gradient':>10} |")
    print(f"|{'-' * 20}|{'-' * 36}|{'-' * 13}|{'-' * 12}|")
    for name, model, data in cases:
        case(name, model, data, args, g)


def case(name, model, data, args, g) -> None:
    H = HessianOperator(model, "cross_entropy", data)
    v = torch.randn(H.size, 1, generator=g, dtype=torch.float64)
    V = torch.randn(H.size, args.block, generator=g, dtype=torch.float64)
    fwd = lambda W: CurvatureOperator.matmat(H, W)  # noqa: E731  (the current HessianOperator product)
    chosen = hvp.matmat(H, v, fwd)  # measures both once, caches the winner on H
    torch.testing.assert_close(chosen, hvp.double_backward(H.risk, v), rtol=1e-9, atol=1e-12)
    fns = {
        "gradient": lambda: H.risk.gradient(),
        "forward-over-reverse (old)": lambda: fwd(v),
        "double backward, graph rebuilt": lambda: hvp.double_backward(H.risk, v),
        f"chosen: {H._hvp_method.replace('_', ' ')} (new)": lambda: hvp.matmat(H, v, fwd),
        f"forward-over-reverse, block of {args.block}": lambda: fwd(V),
        f"double backward, block of {args.block}": lambda: hvp.double_backward(H.risk, V),
    }
    times = {k: float("inf") for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            times[k] = min(times[k], _best(fn, 1))
    t_grad = times.pop("gradient")
    print(f"| {name:<18} | {'gradient (the unit)':<34} | {t_grad * 1e3:>11.2f} | {1.0:>9.2f}x |")
    for k, t in times.items():
        per = t / (args.block if "block" in k else 1)
        print(f"| {name:<18} | {k:<34} | {per * 1e3:>11.2f} | {per / t_grad:>9.2f}x |")


if __name__ == "__main__":
    main()
