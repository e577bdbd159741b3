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
    python benchmarks/bench_ntk.py --predictive-only  # only the predictive-distribution rows (below)

Predictive distributions (issue #32), after the empirical table: the infinite-width kernels of a ReLU MLP
(2 hidden layers, NTK parameterisation) on n training and m test inputs, the NNGP posterior and the NTK-GD
ensemble's mean and covariance at 4 times, float64, by labkit and, when it is installed
(``pip install neural-tangents "jax[cpu]"``), by neural-tangents' ``stax`` kernel_fn, ``predict.gp_inference``
and ``predict.gradient_descent_mse_ensemble`` on the same inputs and times, checked equal to 1e-6 first.
Without JAX the labkit rows still run.

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
    parser.add_argument("--predictive-only", action="store_true", help="only the predictive-distribution rows")
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


def _neural_tangents():
    """(nt, stax, jnp) with float64 enabled, or None when neural-tangents / JAX are not installed."""
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import neural_tangents as nt
        from neural_tangents import stax
    except Exception as err:  # ImportError, or a JAX too new for neural-tangents 0.6.5
        print(f"neural-tangents not available ({type(err).__name__}: {err}); labkit rows only")
        return None
    return nt, stax, jnp


def _activation_kernels(x: torch.Tensor, stax, jnp) -> None:
    """labkit's quadrature kernels against neural-tangents' GELU closed form and its numerical tanh rule."""
    import warnings

    import numpy as np

    def nt_kernel(act):
        dense = [stax.Dense(512, W_std=1.0, b_std=0.1, parameterization="ntk") for _ in range(2)]
        _, _, fn = stax.serial(dense[0], act, dense[1], act, stax.Dense(1, W_std=1.0, b_std=0.1,
                                                                         parameterization="ntk"))
        kk = fn(jnp.asarray(x.numpy()), None, ("nngp", "ntk"))
        return np.asarray(kk.nngp), np.asarray(kk.ntk)

    warnings.filterwarnings("ignore", module="neural_tangents")  # its "numerical activation used" notices

    cases = [("gelu", stax.Gelu(), "stax.Gelu (closed form)")]
    cases += [("tanh", stax.ElementwiseNumerical(jnp.tanh, deg=deg), f"ElementwiseNumerical(tanh, deg={deg})")
              for deg in (25, 200)]
    for act, layer, label in cases:
        k, th = ntk.analytic(x, depth=2, activation=act, weight_std=1.0, bias_std=0.1, method="quadrature")
        nk, nth = nt_kernel(layer)
        errs = [float(np.abs(a.numpy() - b).max() / np.abs(b).max()) for a, b in ((k, nk), (th, nth))]
        print(f"  {act} quadrature vs {label:<36} nngp {errs[0]:.1e}, ntk {errs[1]:.1e}")


def predictive(n: int, m: int, repeats: int = 3) -> None:
    """labkit vs neural-tangents: kernels, NNGP posterior and NTK-GD ensemble (mean + covariance at 4 times)."""
    import math

    import numpy as np

    g = torch.Generator().manual_seed(0)
    d, depth, sw, sb, lr, noise = 8, 2, math.sqrt(2.0), 0.1, 0.5, 1e-3
    x, xt = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    times = [1.0, 10.0, 100.0, math.inf]
    xx = torch.cat([x, xt])

    def kernels():
        return ntk.analytic(xx, depth=depth, activation="relu", weight_std=sw, bias_std=sb)

    t_kern, (k, th) = timed(kernels, repeats)
    t_gp, bayes = timed(lambda: ntk.nngp_posterior(k, y, noise=noise), repeats)
    t_gd, gd = timed(lambda: ntk.gd_ensemble(k, th, y, t=times, lr=lr), repeats)
    print(f"\npredictive distributions: ReLU MLP depth {depth}, {n} train / {m} test inputs, float64, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = {"kernels (nngp, ntk)": [t_kern], "NNGP posterior": [t_gp], "NTK-GD ensemble, 4 times": [t_gd]}
    peer = _neural_tangents()
    if peer is not None:
        nt, stax, jnp = peer
        layers = []
        for _ in range(depth):
            layers += [stax.Dense(512, W_std=sw, b_std=sb, parameterization="ntk"), stax.Relu()]
        _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=sw, b_std=sb, parameterization="ntk"))
        import jax

        kernel_fn = jax.jit(kernel_fn, static_argnames="get")  # as neural-tangents' examples run it
        jx, jxt, jy = jnp.asarray(x.numpy()), jnp.asarray(xt.numpy()), jnp.asarray(y.numpy())

        def nt_kernels():
            kk = kernel_fn(jnp.concatenate([jx, jxt]), None, ("nngp", "ntk"))
            return np.asarray(kk.nngp), np.asarray(kk.ntk)

        def nt_gp():
            ktt = kernel_fn(jx, None, "nngp")
            ktd = kernel_fn(jxt, jx, "nngp")
            kss = kernel_fn(jxt, None, "nngp")
            out = nt.predict.gp_inference(ktt, jy, diag_reg=noise, diag_reg_absolute_scale=True)(
                get="nngp", k_test_train=ktd, k_test_test=kss)
            return np.asarray(out.mean), np.asarray(out.covariance)

        # nt's loss is 0.5 |f - y|^2 / (n O): its time is 2 lr t O / learning_rate in labkit's units (O = 1)
        nt_times = jnp.asarray([2 * lr * t for t in times[:-1]])

        def nt_gd():
            fn = nt.predict.gradient_descent_mse_ensemble(kernel_fn, jx, jy, learning_rate=1.0)
            fin = fn(t=nt_times, x_test=jxt, get="ntk", compute_cov=True)
            inf = fn(t=None, x_test=jxt, get="ntk", compute_cov=True)
            return (np.concatenate([np.asarray(fin.mean), np.asarray(inf.mean)[None]]),
                    np.concatenate([np.asarray(fin.covariance), np.asarray(inf.covariance)[None]]))

        for name, fn in (("kernels (nngp, ntk)", nt_kernels), ("NNGP posterior", nt_gp),
                         ("NTK-GD ensemble, 4 times", nt_gd)):
            fn()  # compile once; the timed runs reuse it
            rows[name].append(timed(fn, repeats)[0])
        nk, nth = nt_kernels()
        gm, gc = nt_gp()
        dm, dc = nt_gd()
        checks = {"nngp kernel": (k, nk), "ntk kernel": (th, nth), "NNGP posterior mean": (bayes.mean, gm),
                  "NNGP posterior covariance": (bayes.covariance, gc), "NTK-GD mean": (gd.mean, dm),
                  "NTK-GD covariance": (gd.covariance, dc)}
        for name, (ours, theirs) in checks.items():
            ours = ours.numpy()
            err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300))
            print(f"  {name:<27} max relative difference labkit vs neural-tangents {err:.1e}")
            assert err < 1e-6, name
        _activation_kernels(x[:48], stax, jnp)
    head = f"{'':<26} {'labkit (s)':>11} {'neural-tangents (s)':>20} {'nt/labkit':>10}"
    print(head)
    print("-" * len(head))
    for name, ts in rows.items():
        other = f"{ts[1]:>20.4f} {ts[1] / ts[0]:>9.2f}x" if len(ts) > 1 else f"{'-':>20} {'-':>10}"
        print(f"{name:<26} {ts[0]:>11.4f} {other}")


if __name__ == "__main__":
    import sys

    if "--predictive-only" in sys.argv:
        sizes = (64, 32) if "--quick" in sys.argv else (512, 256)
        predictive(*sizes)
    else:
        main()
        predictive(*((64, 32) if "--quick" in sys.argv else (512, 256)))
