"""How close to the machine can a step get? The parts of one training step timed alone, beside the whole step.

    python benchmarks/bench_limits.py [--threads N] [--no-compile]

Issue 19 set two CPU targets: ``fit_many`` >= 25x sequential fits (256 ReLU MLPs 2-32-32-1, 256 points) and
the fractal scan's paper preset (float64) at >= 40% of the dense-matmul ceiling. This script measures, in one
run on one machine, what each step costs today and what its unavoidable parts cost on their own:

* the **matmuls** of the step, batched exactly as the engine batches them (a step cannot be cheaper than them);
* the **elementwise passes** over the activations that any unfused code makes (one pass timed, times the count);
* the whole step **compiled** with ``torch.compile`` (inductor: fused C++ loops around the same BLAS calls), when
  a C++ compiler is available (``--no-compile`` skips it; compiling takes seconds);

and prints the speed-up (or ceiling fraction) each would give at best. Numbers are per member-step
(per cell-step for the scan) in microseconds, every row from this run.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from labkit import data, models, train
from labkit.fractal import Experiment, scan, scanner
from labkit.machine import matmul_rate
from labkit.population import batched


def per_call(fn, reps: int = 50) -> float:
    """Best-of-3 mean seconds per call of ``fn`` over ``reps`` calls, after a warm-up."""
    for _ in range(3):
        fn()
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def compiled_or_none(step, args, enabled: bool) -> float | None:
    """Seconds per call of ``torch.compile(step)(*args)``, or None where compiling is off or fails."""
    if not enabled:
        return None
    try:
        fn = torch.compile(step, dynamic=False)
        t0 = time.perf_counter()
        fn(*args)
        print(f"  (torch.compile: {time.perf_counter() - t0:.1f} s to compile the step)")
        return per_call(lambda: fn(*args), reps=20)
    except Exception as e:  # no C++ compiler, an unsupported platform: the row says so
        print(f"  (torch.compile not available here: {type(e).__name__}: {str(e).splitlines()[0][:80]})")
        return None


def mlp_limits(compile_on: bool) -> list[tuple[str, float, str]]:
    """fit_many's case: 2-32-32-1 ReLU MLPs, 256 points, full-batch SGD, float32, in the engine's chunks."""
    n, d, w = 256, 2, 32
    m = batched._chunk_members(256, n, w, 4, torch.device("cpu"))  # members per chunk, as the engine picks
    ds = data.teacher_student(n=n, dim=d, teacher_width=16, noise=0.05, seed=0)
    make = lambda s: models.mlp(d, [w, w], 1, activation="relu", seed=s)  # noqa: E731
    members, steps = 256, 100
    hp = {"lr": torch.logspace(-2, -0.5, members).tolist(), "seed": list(range(members))}
    train.fit(make(0), ds, lr=0.01, steps=5, progress=False)
    seq = min(per_call(lambda: train.fit(make(0), ds, lr=0.01, steps=steps, progress=False,
                                         eval_every=steps), reps=3) for _ in range(2)) / steps
    many = per_call(lambda: train.fit_many(make, ds, hparams=hp, steps=steps, progress=False, eval_every=steps,
                                           engine="batched"), reps=1) / steps / members

    g = torch.Generator().manual_seed(0)
    x, y = ds.inputs, ds.targets.view(1, n, 1)
    w1, w2, w3 = (torch.randn(m, a, b, generator=g) / math.sqrt(b) for a, b in ((w, d), (w, w), (1, w)))
    b1, b2, b3 = (torch.zeros(m, a) for a in (w, w, 1))
    h, gz, out = torch.randn(m, n, w, generator=g), torch.randn(m, n, w, generator=g), torch.empty(m, n, w)
    gw = torch.empty(m, w, w)

    def gemms():  # forward h W2^T, weight gradient G^T H, input gradient G W2: the 32x32 layer's three products
        torch.bmm(h, w2.transpose(1, 2), out=out)
        torch.bmm(gz.transpose(1, 2), h, out=gw)
        torch.bmm(gz, w2, out=out)

    t_gemm = per_call(gemms) / m
    t_pass = per_call(lambda: torch.ops.aten.threshold_backward.grad_input(gz, h, 0, grad_input=out)) / m
    passes = 8  # bias + ReLU per hidden layer (forward), ReLU derivative per hidden layer, two bias sums, readout

    def step(w1, b1, w2, b2, w3, b3):  # the same SGD step, written for the compiler
        h1 = torch.relu(torch.baddbmm(b1.unsqueeze(1), x.expand(m, n, d), w1.transpose(1, 2)))
        h2 = torch.relu(torch.baddbmm(b2.unsqueeze(1), h1, w2.transpose(1, 2)))
        r = torch.baddbmm(b3.unsqueeze(1), h2, w3.transpose(1, 2)) - y
        go = r * (2.0 / n)
        g2 = torch.bmm(go, w3) * (h2 > 0)
        g1 = torch.bmm(g2, w2) * (h1 > 0)
        lr = 0.01
        return (w1 - lr * torch.bmm(g1.transpose(1, 2), x.expand(m, n, d)), b1 - lr * g1.sum(1),
                w2 - lr * torch.bmm(g2.transpose(1, 2), h1), b2 - lr * g2.sum(1),
                w3 - lr * torch.bmm(go.transpose(1, 2), h2), b3 - lr * go.sum(1), (r * r).mean((1, 2)))

    t_comp = compiled_or_none(step, (w1, b1, w2, b2, w3, b3), compile_on)
    rows = [("fit, one network (the baseline)", seq, "1.0x"),
            ("fit_many engine='batched', per member", many, f"{seq / many:.1f}x"),
            ("its three 32x32 matmuls alone", t_gemm, f"<= {seq / t_gemm:.0f}x"),
            (f"+ {passes} elementwise passes (one: {t_pass * 1e6:.2f} us)", t_gemm + passes * t_pass,
             f"<= {seq / (t_gemm + passes * t_pass):.0f}x")]
    if t_comp is not None:
        rows.append(("the whole step, torch.compile", t_comp / m, f"{seq / (t_comp / m):.1f}x"))
    return rows


def fractal_limits(compile_on: bool) -> list[tuple[str, float, str]]:
    """The scan's case: paper preset (width 16, 272 points, tanh), float64, in the scanner's chunks."""
    exp = Experiment.preset("paper", steps=100)
    flops = 4 * exp.points * exp.input_dim * exp.width + 4 * exp.points * exp.width
    ceiling = matmul_rate(torch.float64, "cpu", n=2048)
    res = 32
    scan(exp, (1e-3, 1e6), (1e-3, 1e6), 8, progress=False)
    t_scan = min(scan(exp, (1e-3, 1e6), (1e-3, 1e6), res, progress=False).wall_time for _ in range(2))
    t_scan /= res * res * exp.steps

    h, d, n = exp.width, exp.input_dim, exp.points
    c = max(8, scanner._CPU_CHUNK_BYTES // (h * n * 8))  # cells per chunk, as the scanner picks on a CPU
    g = torch.Generator().manual_seed(0)
    v0 = torch.randn(c * h, d, generator=g, dtype=torch.float64) * 0.3
    xT = torch.randn(d, n, generator=g, dtype=torch.float64)
    a, q = torch.empty(c * h, n, dtype=torch.float64), torch.randn(c * h, n, generator=g, dtype=torch.float64)

    def gemms():  # A = V0 x^T and G = (x^T Q^T)^T, as the scanner calls them
        torch.mm(v0, xT, out=a)
        torch.mm(xT, q.T)

    t_gemm = per_call(gemms) / c
    t_sig = per_call(lambda: torch.sigmoid(q, out=a)) / c

    u1 = torch.randn(c, h, generator=g, dtype=torch.float64) / h
    yT = torch.randn(1, n, generator=g, dtype=torch.float64)
    x = xT.T.contiguous()
    l0, acc = torch.ones(c, dtype=torch.float64), torch.zeros(2, c, dtype=torch.float64)

    def step(v0, u1, acc):  # one full step of the scan, its score bookkeeping included, for the compiler
        s = torch.sigmoid((v0 @ xT).view(c, h, n))  # tanh via sigmoid, as the scanner does
        r = torch.einsum("ch,chn->cn", 2 * u1, s) - u1.sum(1, keepdim=True) - yT
        nl = torch.nan_to_num(r.square().mean(1) / l0, nan=1e6, posinf=1e6).clamp(1e-300, 1e6)
        g1 = 2 * torch.einsum("chn,cn->ch", s, r) - r.sum(1, keepdim=True)
        q = (r * 1e-3).unsqueeze(1) * s * (1 - s)
        v0 = v0 - (u1.unsqueeze(2) * (q.reshape(c * h, n) @ x).view(c, h, d)).view(c * h, d)
        return v0, u1 - 1e-3 * g1, acc + torch.stack([nl, nl.reciprocal()])

    t_comp = compiled_or_none(step, (v0, u1, acc), compile_on)

    def frac(t: float) -> str:
        return f"{flops / t / ceiling:.0%} of ceiling"

    rows = [("fractal.scan, per cell", t_scan, frac(t_scan)),
            ("its two matmuls alone", t_gemm, frac(t_gemm)),
            ("+ the float64 sigmoid alone", t_gemm + t_sig, frac(t_gemm + t_sig))]
    if t_comp is not None:
        rows.append(("the whole step, torch.compile", t_comp / c, frac(t_comp / c)))
    print(f"float64 matmul ceiling (2048^2): {ceiling / 1e9:.0f} GFLOP/s; one cell-step = {flops / 1e3:.0f} kFLOP")
    return rows


def table(title: str, rows: list[tuple[str, float, str]], unit: str) -> None:
    print(f"\n{title}\n")
    print(f"| {'what is timed':<52} | {unit:>12} | {'at best':>18} |")
    print(f"|{'-' * 54}|{'-' * 14}|{'-' * 20}|")
    for name, t, note in rows:
        print(f"| {name:<52} | {t * 1e6:>12.2f} | {note:>18} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    table("fit_many: 256 ReLU MLPs 2-32-32-1, 256 points, float32 (target >= 25x)",
          mlp_limits(not args.no_compile), "us/member-step")
    table("fractal scan: paper preset, float64 (target >= 40% of the matmul ceiling)",
          fractal_limits(not args.no_compile), "us/cell-step")


if __name__ == "__main__":
    main()
