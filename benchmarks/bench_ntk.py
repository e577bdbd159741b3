"""Empirical NTK timings: a per-sample autograd loop vs each labkit method vs "auto", in one table.

Workloads (issue #5): an MLP 64-128-128-10 (~26k parameters, 10 outputs) and a small CNN
(``labkit.models.cnn``: 8x8 inputs, widths 16/32, 10 outputs) on 256 inputs, float32, full
``(n, n, 10, 10)`` and traced ``(n, n)`` kernels; plus the MLP in float64. Every labkit method is
checked against the per-sample loop before it is timed. neural-tangents (JAX, archived) does
not install beside labkit (jax 0.4.23, numpy < 2, tensorflow), so its figures are quoted from
the issue, measured on the same 2-core CPU (MLP, 256 inputs, float32 unless noted).

    python benchmarks/bench_ntk.py            # ~2-4 minutes on an idle 2-core CPU
    python benchmarks/bench_ntk.py --quick    # 64 inputs, for a smoke run
    python benchmarks/bench_ntk.py --cpu-time # 1 thread, CPU seconds: comparable on a loaded machine

Targets: "auto" within 20% of the fastest labkit method; on the MLP "auto" (structured)
>= 50x the per-sample loop and within 2x of neural-tangents' structured derivatives.
The CNN's "ntk_vp" column runs on a quarter of the inputs and is scaled by 16 (its cost is
quadratic in n) unless ``--all`` is given: a vmap of convolution jvps is slow in torch.func.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

import torch

from labkit import ntk
from labkit.models import cnn, mlp

# neural-tangents 0.6.5 (JAX CPU, jit), quoted in issue #5: seconds, MLP 64-128-128-10, 256 inputs
NEURAL_TANGENTS = {
    ("mlp", "float32", "trace"): {"structured": 0.021, "jacobian": 1.0, "ntk_vp": 2.1},
    ("mlp", "float32", "full"): {"structured": 0.19, "jacobian": 4.2, "ntk_vp": 2.0},
    ("mlp", "float64", "trace"): {"structured": 0.025},
    ("mlp", "float64", "full"): {"structured": 0.71},
}
METHODS = ("jacobian", "ntk_vp", "structured", "auto")


def per_sample_loop(model: torch.nn.Module, x: torch.Tensor, full: bool) -> torch.Tensor:
    """The baseline: one autograd.grad call per example and output, then J J^T."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for xi in x:
        out = model(xi.unsqueeze(0)).reshape(-1)
        rows.append(torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[a], params,
                                                                                        retain_graph=True)])
                                 for a in range(out.numel())]))
    j = torch.stack(rows)  # (n, O, P)
    return torch.einsum("iap,jbp->ijab", j, j) if full else torch.einsum("iap,jap->ij", j, j)


CLOCK = time.perf_counter


def timed(fn, repeats: int = 3, budget: float = 20.0) -> tuple[float, torch.Tensor]:
    """Median time of up to ``repeats`` runs (fewer when one run exceeds ``budget`` / repeats)."""
    times, out = [], None
    for _ in range(repeats):
        start = CLOCK()
        out = fn()
        times.append(CLOCK() - start)
        if sum(times) > budget:
            break
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 inputs instead of 256")
    parser.add_argument("--all", action="store_true", help="time the CNN's ntk_vp on all inputs")
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread, process CPU time instead of wall time (stable on a shared, loaded machine)")
    args = parser.parse_args()
    global CLOCK
    if args.cpu_time:
        torch.set_num_threads(1)
        CLOCK = time.process_time
    n = 64 if args.quick else 256
    g = torch.Generator().manual_seed(0)
    workloads = [
        ("mlp", "float32", mlp(64, [128, 128], 10, seed=0), torch.randn(n, 64, generator=g)),
        ("cnn", "float32", cnn(8, 1, 10, 16, seed=0), torch.randn(n, 64, generator=g)),
        ("mlp", "float64", mlp(64, [128, 128], 10, seed=0).double(), torch.randn(n, 64, generator=g).double()),
    ]
    print(f"empirical NTK, {n} inputs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} ({'CPU' if args.cpu_time else 'wall'} seconds, "
          "median of up to 3 runs)")
    head = (f"{'model':<5} {'dtype':<8} {'output':<6} {'params':>6} {'loop':>7} "
            + " ".join(f"{m:>10}" for m in METHODS)
            + f" {'auto->':>10} {'loop/auto':>9} {'auto/best':>9} {'NT struct':>9} {'auto/NT':>7}")
    print(head)
    print("-" * len(head))
    for name, dtype, model, x in workloads:
        n_params = sum(p.numel() for p in model.parameters())
        for output in ("trace", "full"):
            full = output == "full"
            t_loop, ref = timed(partial(per_sample_loop, model, x, full), repeats=1)
            row = {}
            for method in METHODS:
                if name == "cnn" and method == "ntk_vp" and not args.all:
                    quarter = x[: n // 4]
                    t, k = timed(partial(ntk.empirical, model, quarter, method="ntk_vp", output=output), repeats=1)
                    check = per_sample_loop(model, quarter, full)
                    row[method] = (16 * t, "~")
                else:
                    t, k = timed(partial(ntk.empirical, model, x, method=method, output=output))
                    check = ref
                    row[method] = (t, "")
                tol = 1e-3 if dtype == "float32" else 1e-9
                err = float((k - check).abs().max() / check.abs().max())
                assert err < tol, f"{name} {output} {method}: relative error {err:.2e}"
            chosen = ntk.choose_method(model, x, output=output)
            best = min(row[m][0] for m in METHODS if m != "auto" and not row[m][1])
            auto = row["auto"][0]
            nt = NEURAL_TANGENTS.get((name, dtype, output), {}).get("structured")
            cells = " ".join(f"{row[m][1] + format(row[m][0], '.3f'):>10}" for m in METHODS)
            print(f"{name:<5} {dtype:<8} {output:<6} {n_params:>6} {t_loop:>7.2f} {cells} {chosen:>10} "
                  f"{t_loop / auto:>8.0f}x {auto / best:>9.2f} {nt if nt else '-':>9} "
                  f"{(format(auto / nt, '.2f') if nt else '-'):>7}")
    print("\n'~': measured on n/4 inputs and scaled by 16 (quadratic cost). neural-tangents figures: issue #5 "
          "(JAX CPU, jit, same machine); its Jacobian / NTK-vp: trace 1.0 / 2.1 s, full 4.2 / 2.0 s (float32).")


if __name__ == "__main__":
    main()
