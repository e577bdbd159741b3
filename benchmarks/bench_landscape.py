"""labkit.landscape against the ``loss-landscapes`` package (PyPI 3.0.6), measured in one run.

1. Same MLP (digits 64-32-10), same data (64 or 500 digits), same directions, float64: ``loss_landscapes.
   planar_interpolation`` evaluates the grid point by point (moving the module's parameters in place and
   calling the model once per point); labkit evaluates the same points as one vectorised computation. The
   values must agree to 1e-10 (at the points the package actually evaluates: its even rows start one step along
   the second direction, see ``_their_points``), and labkit's 41x41 plane is timed against the package's.
2. A 201x201 filter-normalised plane of the digits MLP on all 1797 digits (float32), labkit alone.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_landscape.py`` (``pip install loss-landscapes`` first;
without it only part 2 runs). Prints the machine's load average next to the timings.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import labkit
from labkit import landscape
from labkit.machine import timed
from labkit.models import ParamSpec, param_dict


def _their_points(steps: int) -> np.ndarray:
    """The (i, j) step counts ``planar_interpolation`` evaluates, in its output's order: row i covers j = 1..steps
    when i is even and j = 0..steps-1 when i is odd (it walks the grid boustrophedon with in-place adds)."""
    return np.array([[(i, j + 1 if i % 2 == 0 else j) for j in range(steps)] for i in range(steps)], dtype=float)


def peer_comparison(steps: int = 41, examples: int = 500) -> dict:
    import copy

    import loss_landscapes
    from loss_landscapes.metrics import Loss

    ds = labkit.data.digits()
    x, y = ds.inputs[:examples].double(), ds.targets[:examples]
    model = labkit.models.mlp(64, [32], 10, seed=0).double()
    labkit.train.fit(model, (x, y), lr=0.1, steps=50, progress=False)
    spec = ParamSpec.of(model)
    theta = spec.flatten(param_dict(model))
    d = landscape.filter_normalize(landscape.random_directions(model, 2, seed=0), model)
    scale = 2.0 / (steps - 1)  # the grid spans [-1, 1] in each direction
    corner = theta - d[0] - d[1]

    def at(vec: torch.Tensor) -> torch.nn.Module:
        net = copy.deepcopy(model)
        with torch.no_grad():
            for name, value in spec.unflatten(vec).items():
                net.get_parameter(name).copy_(value)
        return net

    start, end_one, end_two = at(corner), at(corner + steps * scale * d[0]), at(corner + steps * scale * d[1])
    metric = Loss(torch.nn.functional.cross_entropy, x, y)
    def theirs_grid() -> np.ndarray:
        return np.asarray(loss_landscapes.planar_interpolation(copy.deepcopy(start), end_one, end_two, metric,
                                                               steps=steps))

    theirs = theirs_grid()
    t_theirs = timed(theirs_grid, reps=3)
    coords = _their_points(steps).reshape(-1, 2) * scale
    ours_same_points = landscape.evaluate(model, (x, y), corner, d, coords, progress=False).reshape(steps, steps)
    diff = float(np.abs(ours_same_points - theirs).max())
    t_ours = timed(lambda: landscape.plane(model, (x, y), d, resolution=steps, progress=False), reps=5)
    return dict(steps=steps, theirs=t_theirs, ours=t_ours, diff=diff, P=spec.numel, examples=examples)


def digits_plane(resolution: int = 201) -> dict:
    ds = labkit.data.digits()
    model = labkit.models.mlp(64, [32], 10, seed=0)
    labkit.train.fit(model, ds, lr=0.1, steps=100, progress=False)
    landscape.plane(model, ds, "filter", resolution=21, progress=False)  # warm-up (first-call set-up)
    start = time.perf_counter()
    plane = landscape.plane(model, ds, "filter", resolution=resolution, progress=False)
    t = time.perf_counter() - start
    need = landscape.estimate_memory(model, ds, resolution**2)
    return dict(resolution=resolution, seconds=t, examples=len(ds), mib=need["total"] / 2**20,
                finite=bool(np.isfinite(plane.values).all()))


def main() -> None:
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} thread(s), load average {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs)")
    try:
        import loss_landscapes  # noqa: F401
    except ImportError:
        print("loss-landscapes is not installed (pip install loss-landscapes): peer comparison skipped")
    else:
        print("\n| 41x41 plane, digits MLP 64-32-10, float64 | examples | loss-landscapes 3.0.6 (s) | labkit (s) | "
              "speed-up | largest difference |\n|---|---|---|---|---|---|")
        for examples in (64, 500):
            r = peer_comparison(examples=examples)
            print(f"| same directions, same points (P = {r['P']}) | {examples} | {r['theirs']:.3f} | {r['ours']:.3f} | "
                  f"{r['theirs'] / r['ours']:.1f}x | {r['diff']:.1e} |")
            assert r["diff"] < 1e-10, r["diff"]
    r = digits_plane()
    print(f"\n{r['resolution']}x{r['resolution']} filter-normalised plane of the digits MLP on {r['examples']} digits "
          f"(float32): {r['seconds']:.2f} s (needs at least {r['mib']:.1f} MiB; all values finite: {r['finite']}); "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
