"""Speed of the trainability-fractal scan against a per-network loop and the dense-matmul ceiling.

    python benchmarks/bench_fractal.py [--threads 1] [--full] [--baseline fab24f5]

Prints, for the paper preset (width 16, 272 points) and "quick" (width 16, 16 points),
network-steps per second of (a) a plain per-network torch loop with autograd (what one
would write first), (b) ``labkit.fractal.scan``, and (c) the matmul FLOP rate of the scan
as a fraction of this machine's dense-matmul rate in the same dtype, all measured in the
same run. One network-step costs ``4 n d h + 4 n h`` matmul FLOPs (forward and backward).
``--baseline REV`` also times the scanner of git revision REV in the same run, interleaved
(default fab24f5: before issue 19's fused kernel), so old and new figures sit side by side.
``--full`` adds the issue's target run: paper preset, 64^2 cells x 100 steps, float64.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import time
import types

import torch

from labkit.fractal import Experiment, scan
from labkit.machine import matmul_rate


def scanner_at(rev: str) -> types.ModuleType | None:
    """``labkit/fractal/scanner.py`` as it was at git revision ``rev`` (None outside a git checkout)."""
    try:
        src = subprocess.run(["git", "show", f"{rev}:labkit/fractal/scanner.py"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType(f"scanner_{rev}")
    exec(compile(src, f"{rev}:labkit/fractal/scanner.py", "exec"), mod.__dict__)
    return mod


def flops_per_step(exp: Experiment) -> float:
    n, d, h = exp.points, exp.input_dim, exp.width
    return 4 * n * d * h + 4 * n * h


def loop_rate(exp: Experiment, networks: int, steps: int) -> float:
    """Network-steps/s of training networks one at a time with autograd (full batch)."""
    dt = exp.torch_dtype
    x, y = (t.to(dt) for t in exp.data())
    d, h = exp.input_dim, exp.width
    lrs = torch.logspace(-1, 1, networks).tolist()
    t0 = time.perf_counter()
    for lr in lrs:
        w0, w1 = (t.to(dt).requires_grad_(True) for t in exp.init_weights())
        for _ in range(steps):
            loss = ((torch.tanh(math.sqrt(2) * (x @ w0) / math.sqrt(d)) @ w1 / h - y) ** 2).mean()
            g0, g1 = torch.autograd.grad(loss, [w0, w1])
            with torch.no_grad():
                w0 -= lr * g0
                w1 -= lr * g1
    return networks * steps / (time.perf_counter() - t0)


def scan_rate(exp: Experiment, resolution: int, scan_fn=scan) -> tuple[float, float]:
    res = scan_fn(exp, (1e-3, 1e6), (1e-3, 1e6), resolution, progress=False)
    return resolution**2 * exp.steps / res.wall_time, res.wall_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--full", action="store_true", help="also run paper 64^2 x 100 steps float64 (target < 15 s)")
    parser.add_argument("--baseline", default="fab24f5", help="git revision whose scanner is timed alongside")
    args = parser.parse_args()
    old = scanner_at(args.baseline) if args.baseline else None
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    rows = []
    for name, dtype in (("paper", "float64"), ("paper", "float32"), ("quick", "float64")):
        exp = Experiment.preset(name, steps=100, dtype=dtype)
        ceiling = matmul_rate(exp.torch_dtype, "cpu", n=2048)
        loop = max(loop_rate(exp, networks=8, steps=50) for _ in range(2))  # best of 2: the machine may be shared
        rate, base = 0.0, 0.0
        for _ in range(3):  # interleaved, best of 3: the machine may be shared
            rate = max(rate, scan_rate(exp, 32)[0])
            base = max(base, scan_rate(exp, 32, old.scan)[0]) if old else math.nan
        ceiling = max(ceiling, matmul_rate(exp.torch_dtype, "cpu", n=2048))  # best of before and after
        gflops, base_gflops = rate * flops_per_step(exp) / 1e9, base * flops_per_step(exp) / 1e9
        rows.append((f"{name} {dtype}", loop, base, rate, rate / loop, gflops, ceiling / 1e9,
                     base_gflops / (ceiling / 1e9), gflops / (ceiling / 1e9)))
    header = ("setup (32^2 x 100)", "loop net-steps/s", f"scan {args.baseline} net-steps/s", "scan net-steps/s",
              "speed-up vs loop", "scan GFLOP/s", "matmul GFLOP/s", f"of ceiling ({args.baseline})", "of ceiling")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:,.0f} | {r[2]:,.0f} | {r[3]:,.0f} | {r[4]:.0f}x | {r[5]:.2f} | {r[6]:.1f} | "
              f"{r[7]:.0%} | {r[8]:.0%} |")
    if args.full:
        exp = Experiment.preset("paper", steps=100)
        rate, wall = scan_rate(exp, 64)
        print(f"\npaper preset 64^2 x 100 steps float64: {wall:.1f} s ({rate:,.0f} network-steps/s; target < 15 s)")


if __name__ == "__main__":
    main()
