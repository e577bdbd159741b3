"""A fractal scan in-process against Dask LocalClusters of 1 and 2 single-threaded workers, in one run.

    python benchmarks/bench_parallel.py [--resolution 256] [--steps 100] [--quick]

Prints, for the paper preset (float64): wall time and network-steps/s of each engine, the speed-up of 2 workers
over 1 (target >= 1.7x on a 2-core machine), the overhead per tile (the cluster's time beyond its workers'
compute, per tile; target < 5% at tiles of >= 1 s) and the time until the first tile is on screen for a
512^2 scan (target < 2 s). Needs ``pip install "labkit-dynamics[distributed]"``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from labkit import fractal, parallel


def run(exp, resolution: int, executor, tile: int | None = None, first_only: bool = False) -> tuple:
    """(wall seconds, seconds to the first tile, tiles) of one scan (``first_only``: cancel after the first)."""
    times: list[float] = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a cancelled scan warns that it is partial: here that is the point
        res = fractal.scan(exp, (0.1, 10.0), (0.1, 10.0), resolution, progress=False, executor=executor, tile_size=tile,
                           on_chunk=lambda r: times.append(time.perf_counter() - start),
                           cancel=(lambda: bool(times)) if first_only else None)
    assert res.complete or first_only
    return time.perf_counter() - start, times[0], len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="64^2 x 50 steps: checks the script, not the machine")
    args = parser.parse_args()
    res, steps = (64, 50) if args.quick else (args.resolution, args.steps)
    exp = fractal.Experiment.preset("paper", steps=steps)
    distributed = __import__("distributed")
    torch.set_num_threads(2)
    netsteps = res * res * steps
    print(f"paper preset float64, {res}^2 cells x {steps} steps, torch {torch.__version__}")
    print(f"{'engine':<26}{'wall s':>9}{'net-steps/s':>14}{'tiles':>7}{'first tile s':>14}")
    t_in, first_in, tiles_in = run(exp, res, None)
    print(f"{'in-process (2 threads)':<26}{t_in:9.2f}{netsteps / t_in:14,.0f}{tiles_in:7d}{first_in:14.2f}")
    walls = {}
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as lc, distributed.Client(lc) as client:
            run(exp.replace(steps=20), 16, client)  # warm the workers (imports) before timing
            wall, first, tiles = run(exp, res, client)
            walls[workers] = (wall, tiles)
            name = f"LocalCluster {workers} worker(s)"
            print(f"{name:<26}{wall:9.2f}{netsteps / wall:14,.0f}{tiles:7d}{first:14.2f}")
    one_wall, one_tiles = walls[1]
    two_wall, _ = walls[2]
    # One worker does the in-process work on one thread: its time beyond one-thread compute is the overhead.
    torch.set_num_threads(1)
    compute, _, _ = run(exp, res, None)
    torch.set_num_threads(2)
    overhead = max(0.0, one_wall - compute) / one_tiles
    print(f"\n2 workers vs 1: {one_wall / two_wall:.2f}x (target >= 1.7x)")
    print(f"overhead per tile: {overhead * 1e3:.0f} ms on tiles of {compute / one_tiles:.2f} s "
          f"({overhead / (compute / one_tiles):.1%}; target < 5% at tiles >= 1 s)")
    big = 128 if args.quick else 512
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            distributed.Client(lc) as client:
        run(exp.replace(steps=20), 16, client)
        cells_per_tile = 512  # about 1 s of work at 100 steps: the first tile lands quickly, overhead stays small
        _, first, _ = run(exp, big, client, tile=cells_per_tile, first_only=True)
    print(f"first tile of a {big}^2 scan on screen after {first:.2f} s (target < 2 s)")
    parallel.close_local()


if __name__ == "__main__":
    main()
