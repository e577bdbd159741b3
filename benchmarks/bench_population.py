"""Population probes: lockstep Lanczos over many networks vs a loop of single-model Lanczos, and the curvature map.

    python benchmarks/bench_population.py            # 1,024 MLPs 4-32-32-3 tanh; a 256x256 curvature map
    python benchmarks/bench_population.py --quick    # 64 MLPs; a 64x64 map (seconds)

Rows 1-2: the top Hessian eigenvalue (tol 1e-4, float64) of every member of the two workloads in :data:`ARCHS`, by
``population.probes.top_eigenvalues`` (one lockstep Lanczos, one vmapped product per step) and by a loop of
``linalg.top_eigenvalues(HessianOperator(model_i, ...))`` over the same members, measured in the same run; the
largest per-member difference is printed beside the speed-up. Row 2: the curvature map of the quick preset
(``fractal.sharpness_map``) beside the scan of the same window, both timed here. Prints ``uptime`` (the load).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import warnings

import torch

from labkit import data, fractal, linalg, models
from labkit.curvature import HessianOperator
from labkit.population import probes


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


#: The two workloads the issue names: a 4-32-32-3 tanh MLP (cross-entropy on 64 points) and the fractal paper
#: preset's network shape (16 inputs, 16 tanh units, one output; squared loss on the preset's 272 points).
ARCHS = {
    "4-32-32-3 tanh": lambda: (data.gaussian_mixture(n=64, dim=4, classes=3, separation=2.0, seed=0),
                               (4, [32, 32], 3), "cross_entropy"),
    "16-16-1 tanh (fractal paper preset)": lambda: (data.as_dataset(fractal.Experiment.preset("paper").data()),
                                                    (16, [16], 1), "mse"),
}


def lanczos_row(members: int, tol: float = 1e-4, arch: str = "4-32-32-3 tanh") -> dict:
    ds, (d, hidden, out), loss = ARCHS[arch]()
    ds = ds.to(dtype=torch.float64)
    nets = [models.mlp(d, hidden, out, activation="tanh", seed=s).double() for s in range(members)]
    pop = probes.Members.of(nets, loss, ds)
    probes.top_eigenvalues(probes.Members.of(nets[:2], loss, ds), tol=tol)  # warm-up (torch.func)
    t = time.perf_counter()
    res = probes.top_eigenvalues(pop, tol=tol)
    lock = time.perf_counter() - t
    ref = torch.empty(members, dtype=torch.float64)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, net in enumerate(nets):
            ref[i] = linalg.top_eigenvalues(HessianOperator(net, loss, ds), tol=tol, dense=False).values[0]
    loop = time.perf_counter() - t
    diff = float(((res.top - ref).abs() / ref.abs()).max())
    return {"arch": arch, "members": members, "params": pop.numel, "lockstep_s": lock, "loop_s": loop,
            "speedup": loop / lock, "max_rel_diff": diff, "products": float(res.n_matvec.float().mean()),
            "converged": int(res.converged.sum())}


def map_row(resolution: int) -> dict:
    window = ((1e-3, 1e6), (1e-3, 1e6))
    fractal.sharpness_map("quick", *window, 8, progress=False)  # warm-up
    t = time.perf_counter()
    fractal.scan("quick", *window, resolution, progress=False)
    scan_s = time.perf_counter() - t
    t = time.perf_counter()
    fractal.sharpness_map("quick", *window, resolution, progress=False)
    return {"resolution": resolution, "scan_s": scan_s, "map_s": time.perf_counter() - t}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 members and a 64x64 map")
    args = parser.parse_args(argv)
    members, res = (64, 64) if args.quick else (1024, 256)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {_load()}")
    rows = [lanczos_row(members, arch=arch) for arch in ARCHS]
    m = map_row(res)
    print("\n| workload | labkit | baseline (same run) | ratio | agreement |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| top Hessian eigenvalue, {r['members']:,} MLPs {r['arch']} ({r['params']:,} params), tol 1e-4 | "
              f"lockstep {r['lockstep_s']:.2f} s ({r['products']:.1f} products/member, {r['converged']} converged) | "
              f"loop of top_eigenvalues {r['loop_s']:.2f} s | {r['speedup']:.1f}x | "
              f"max relative difference {r['max_rel_diff']:.1e} |")
    print(f"| curvature map, quick preset, {m['resolution']}^2 cells | {m['map_s']:.1f} s | scan of the same window "
          f"{m['scan_s']:.1f} s | map / scan {m['map_s'] / m['scan_s']:.1f} | per cell = dense eigvalsh "
          "(tests/test_fractal_curvature.py) |")
    print(f"\n{_load()}")


if __name__ == "__main__":
    main()
