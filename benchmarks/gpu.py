"""labkit on an accelerator: correctness against the CPU, then one speed table.

    python benchmarks/gpu.py                      # on a GPU machine: correctness, then the full speed table
    python benchmarks/gpu.py --device cpu --tiny  # CI: every code path at test size on the CPU (< 60 s)

Part 1 (correctness) runs every probe and trainer on ``--device`` and on the CPU with the same seeds and
compares them within stated tolerances (float64 unless a row says otherwise): fit and fit_many losses, Hessian
top-k and trace, Gauss-Newton top-k, the three NTK methods, per-example gradient norms, the noise scale, and a
fractal scan's converged map and scores. A failed row makes the script exit 1.

Part 2 (speed) times each workload on ``--device`` beside that device's own dense-matmul rate in the same dtype,
measured in the same run, and prints the fraction reached. The paper's final fractal image (4096^2 cells x 1000
steps) is measured on a horizontal strip of it and extrapolated; the row says so. ``--tiny`` shrinks every size
so the table's code runs in seconds (its numbers then mean nothing).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from labkit import batchsize, data, fractal, hessian, linalg, models, ntk, train
from labkit.machine import matmul_rate, timed

# ---------------------------------------------------------------- part 1: correctness


@dataclass
class Check:
    name: str
    error: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.error <= self.tol


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max relative error of ``a`` against ``b`` (both moved to the CPU in float64)."""
    a, b = torch.as_tensor(a).detach().cpu().double(), torch.as_tensor(b).detach().cpu().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def correctness(device: torch.device, tiny: bool) -> list[Check]:
    cpu = torch.device("cpu")
    n = 64 if tiny else 256
    ds = data.gaussian_mixture(n=n, dim=4, classes=3, separation=2.0, seed=0).to(dtype=torch.float64)

    def net(seed: int = 0) -> torch.nn.Module:
        return models.mlp(4, [16, 16], 3, activation="tanh", seed=seed).double()

    checks: list[Check] = []
    steps = 20 if tiny else 100

    runs = {d: train.fit(net().to(d), ds, lr=0.2, steps=steps, seed=0, device=d, progress=False) for d in (cpu, device)}
    checks.append(Check("fit losses", rel(torch.tensor(runs[device].loss), torch.tensor(runs[cpu].loss)), 1e-9))

    grid = train.grid(lr=[0.05, 0.2, 1.0, 5.0])
    for engine in ("batched", "vmap"):
        many = {d: train.fit_many(net, ds, hparams=grid, steps=steps, device=d, progress=False, engine=engine)
                for d in (cpu, device)}
        finite = [i for i, h in enumerate(many[cpu]) if not h.diverged]
        a = torch.tensor([many[device][i].loss for i in finite])
        b = torch.tensor([many[cpu][i].loss for i in finite])
        checks.append(Check(f"fit_many ({engine}) losses (converged members)", rel(a, b), 1e-9))
        same = all(many[cpu][i].diverged == many[device][i].diverged for i in range(len(many[cpu])))
        checks.append(Check(f"fit_many ({engine}) divergence flags", 0.0 if same else 1.0, 0.0))

    model_c, model_d = net(), net().to(device)
    ds_d = ds.to(device)
    for name, op in (("Hessian", hessian.HessianOperator), ("Gauss-Newton", hessian.GaussNewtonOperator)):
        top_c = linalg.top_eigenvalues(op(model_c, "cross_entropy", ds), k=3, tol=1e-10).values
        top_d = linalg.top_eigenvalues(op(model_d, "cross_entropy", ds_d), k=3, tol=1e-10).values
        checks.append(Check(f"{name} top-3 eigenvalues", rel(top_d, top_c), 1e-7))
    tr_c = linalg.trace(hessian.HessianOperator(model_c, "cross_entropy", ds), n_matvec=30, seed=0).value
    tr_d = linalg.trace(hessian.HessianOperator(model_d, "cross_entropy", ds_d), n_matvec=30, seed=0).value
    trace_err = abs(float(tr_d) - float(tr_c)) / abs(float(tr_c))
    checks.append(Check("Hessian trace (Hutch++, same probes)", trace_err, 1e-8))

    x = ds.inputs[:32]
    ref = ntk.empirical(model_c, x, method="jacobian")
    for method in ("jacobian", "ntk_vp", "structured"):
        k = ntk.empirical(model_d, x.to(device), method=method)
        checks.append(Check(f"NTK {method} vs CPU jacobian", rel(k, ref), 1e-9))

    sq_c = batchsize.per_example_sq_norms(model_c, "cross_entropy", ds)
    sq_d = batchsize.per_example_sq_norms(model_d, "cross_entropy", ds_d)
    checks.append(Check("per-example squared gradient norms", rel(sq_d, sq_c), 1e-9))
    b_c = batchsize.noise_scale(model_c, "cross_entropy", ds).b_simple
    b_d = batchsize.noise_scale(model_d, "cross_entropy", ds_d).b_simple
    checks.append(Check("noise scale B_simple", abs(float(b_d) - float(b_c)) / abs(float(b_c)), 1e-9))

    exp = fractal.Experiment.preset("quick")
    res = 12 if tiny else 32
    scans = {d: fractal.scan(exp, (0.1, 10.0), (0.1, 10.0), resolution=res, device=d, progress=False)
             for d in (cpu, device)}
    flips = float((scans[cpu].converged != scans[device].converged).mean())
    # Cells at the boundary are chaotic (a 2-ulp change of the learning rate can flip them): allow 1% of cells.
    checks.append(Check("fractal converged map (fraction of cells that differ)", flips, 0.01))
    both = scans[cpu].converged & scans[device].converged
    if both.any():
        err = rel(torch.tensor(scans[device].score[both]), torch.tensor(scans[cpu].score[both]))
        checks.append(Check("fractal scores on cells converged on both", err, 1e-6))
    return checks


# ---------------------------------------------------------------- part 2: speed


@dataclass
class Row:
    workload: str
    seconds: float
    rate: str
    ceiling_frac: float | None = None
    note: str = ""


def fractal_rows(device: torch.device, tiny: bool, ceiling64: float) -> list[Row]:
    rows = []
    paper = fractal.Experiment.preset("paper")
    per_step = 4 * paper.points * paper.input_dim * paper.width + 4 * paper.points * paper.width
    for res, steps, strip in ((1024, 500, None), (4096, 1000, 256)):
        if tiny:
            res, steps, strip = (32, 20, None) if strip is None else (64, 20, 8)
        exp = paper.replace(steps=steps)
        rows_done = strip or res
        y_hi = 10 ** (-1 + 2 * rows_done / res)  # the strip is the lowest rows of the (0.1, 10) window
        window = dict(x_range=(0.1, 10.0), y_range=(0.1, y_hi), resolution=(res, rows_done))
        t = timed(lambda e=exp, w=window: fractal.scan(e, **w, device=device, progress=False), device)
        cells = res * rows_done
        flops = cells * steps * per_step
        total = t * (res / rows_done)
        note = f"measured on {rows_done} of {res} rows, extrapolated" if strip else ""
        rows.append(Row(f"fractal paper float64 {res}^2 x {steps}", total, f"{cells * steps / t:,.0f} net-steps/s",
                        flops / t / ceiling64, note))
    quick = fractal.Experiment.preset("quick")
    exp32 = quick.replace(dtype="float32")
    res = 32 if tiny else 1024
    t = timed(lambda: fractal.scan(exp32, (0.1, 10.0), (0.1, 10.0), resolution=res, device=device,
                                   progress=False), device)
    rate = f"{res * res * exp32.steps / t:,.0f} net-steps/s"
    rows.append(Row(f"fractal quick float32 {res}^2 x {exp32.steps}", t, rate))
    return rows


def fit_many_rows(device: torch.device, tiny: bool) -> list[Row]:
    rows = []
    ds = data.gaussian_mixture(n=256, dim=4, classes=3, seed=0)
    steps = 10 if tiny else 200

    def net(seed: int) -> torch.nn.Module:
        return models.mlp(4, [32], 3, seed=seed)

    one = timed(lambda: train.fit(net(0), ds, lr=0.1, steps=steps, device=device, progress=False), device)
    for members in ((8, 16) if tiny else (1024, 4096)):
        for engine in ("batched", "vmap"):
            t = timed(lambda m=members, e=engine: train.fit_many(net, ds, hparams={"seed": list(range(m))},
                                                                 steps=steps, device=device, progress=False,
                                                                 engine=e), device)
            rows.append(Row(f"fit_many {members} members x {steps} steps ({engine})", t,
                            f"{members * one / t:,.0f}x sequential fits", note=f"one fit {one * 1e3:.1f} ms"))
    return rows


def probe_rows(device: torch.device, tiny: bool) -> list[Row]:
    rows = []
    n = 64 if tiny else 4096
    ds = data.gaussian_mixture(n=n, dim=16, classes=10, seed=0).to(device)
    model = models.mlp(16, [256, 256], 10, seed=0).to(device)
    for method in ("structured", "auto"):
        t = timed(lambda m=method: ntk.empirical(model, ds.inputs, method=m), device)
        rows.append(Row(f"empirical NTK {n} inputs ({method}), trace", t, f"{n * n / t:,.0f} entries/s"))
    m = 128 if tiny else 8192
    big = data.gaussian_mixture(n=m, dim=16, classes=10, seed=1).to(device)
    t = timed(lambda: batchsize.per_example_sq_norms(model, "cross_entropy", big), device)
    rows.append(Row(f"per-example gradient norms, {m} examples", t, f"{m / t:,.0f} examples/s"))
    width = 4 if tiny else 210  # about 1.0M parameters at width 210 on 28x28 images
    size = 8 if tiny else 28
    cnn = models.cnn(image_size=size, width=width, seed=0).to(device)
    params = sum(p.numel() for p in cnn.parameters())
    images = torch.randn(64 if tiny else 512, 1, size, size, device=device)
    labels = torch.randint(0, 10, (images.shape[0],), device=device)
    op = hessian.HessianOperator(cnn, "cross_entropy", (images, labels))
    k = 2 if tiny else 10
    t = timed(lambda: linalg.top_eigenvalues(op, k=k, tol=1e-4), device)
    rows.append(Row(f"Hessian top-{k}, CNN with {params:,} parameters", t, "", note=f"{images.shape[0]} images"))
    rows += population_rows(device, tiny)
    return rows


def population_rows(device: torch.device, tiny: bool) -> list[Row]:
    """The top Hessian eigenvalue of every member of a population by one lockstep Lanczos (float64)."""
    from labkit.population import probes

    members = 8 if tiny else 4096
    ds = data.gaussian_mixture(n=64, dim=4, classes=3, separation=2.0, seed=0).to(device, torch.float64)
    nets = [models.mlp(4, [32, 32], 3, activation="tanh", seed=s).double().to(device) for s in range(members)]
    pop = probes.Members.of(nets, "cross_entropy", ds)
    res = None

    def run() -> None:
        nonlocal res
        res = probes.top_eigenvalues(pop, tol=1e-4)

    t = timed(run, device)
    return [Row(f"population Lanczos: top Hessian eigenvalue of {members:,} MLPs 4-32-32-3, tol 1e-4", t,
                f"{members / t:,.0f} members/s", note=f"{float(res.n_matvec.float().mean()):.1f} products/member, "
                f"{int(res.converged.sum())} converged")]


def speed(device: torch.device, tiny: bool) -> list[Row]:
    n = 256 if tiny else 4096
    ceiling64 = matmul_rate(torch.float64, device, n)
    ceiling32 = matmul_rate(torch.float32, device, n)
    rows = [Row(f"dense matmul float64 {n}^2", 0.0, f"{ceiling64 / 1e9:,.1f} GFLOP/s"),
            Row(f"dense matmul float32 {n}^2", 0.0, f"{ceiling32 / 1e9:,.1f} GFLOP/s")]
    rows += fractal_rows(device, tiny, ceiling64)
    rows += fit_many_rows(device, tiny)
    rows += probe_rows(device, tiny)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="test sizes: every code path in seconds (CI)")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        # float32 results are compared with the CPU: TF32 would change them at the 1e-3 level.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    size = ", tiny sizes" if args.tiny else ""
    print(f"labkit GPU script: torch {torch.__version__}, device {device} ({name}){size}")

    checks = correctness(device, args.tiny)
    width = max(len(c.name) for c in checks)
    print(f"\n{'check':<{width}}  {'error':>9}  {'tolerance':>9}  ok")
    for c in checks:
        print(f"{c.name:<{width}}  {c.error:9.1e}  {c.tol:9.0e}  {'yes' if c.ok else 'NO'}")
    failed = [c.name for c in checks if not c.ok]

    if not args.skip_speed:
        rows = speed(device, args.tiny)
        print("\n| workload | seconds | rate | of matmul ceiling | note |\n|---|---|---|---|---|")
        for r in rows:
            frac = f"{r.ceiling_frac:.0%}" if r.ceiling_frac is not None else ""
            secs = f"{r.seconds:.3f}" if r.seconds else ""
            print(f"| {r.workload} | {secs} | {r.rate} | {frac} | {r.note} |")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("\nall correctness checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
