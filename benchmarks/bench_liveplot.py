"""Overhead of ``LivePlot.append`` in a tight loop of 10,000 appends, against recording the numbers yourself.

Run: ``python benchmarks/bench_liveplot.py``. The baseline (two ``list.append`` per step) is measured in
the same run. A training step of a tiny MLP (last row) shows the scale the overhead is paid against.
"""

from __future__ import annotations

import time

import torch

from labkit import data, models
from labkit.train import fit
from labkit.viz import LivePlot

N = 10_000


def bare() -> int:
    xs, ys = [], []
    for t in range(N):
        xs.append(t)
        ys.append(1.0 / (t + 1))
    return 0


def liveplot(backend: str, series: int, smoothed: bool = False) -> int:
    live = LivePlot(backend=backend, fps=4, smoothed=["loss"] if smoothed else None)
    names = ["loss", "eval loss", "accuracy"][:series]
    for t in range(N):
        live.append(t, **{n: 1.0 / (t + 1) for n in names})
    live.flush()
    return live.redraws


def tensor_values() -> int:
    live = LivePlot(backend="output", fps=4)
    v = torch.tensor(0.5)
    for t in range(N):
        live.append(t, loss=v)
    live.flush()
    return live.redraws


def timed(fn, *args, repeat: int = 3) -> tuple[float, int]:
    best, out = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    LivePlot(backend="output").append(0, loss=1.0)  # warm up imports (plotly subplots) outside the timing
    base, _ = timed(bare)
    rows = [("bare loop (2 list.append)", base, 0)]
    for backend, series in [("static", 1), ("output", 1), ("output", 3)]:
        t, redraws = timed(liveplot, backend, series)
        rows.append((f"LivePlot {backend}, {series} series", t, redraws))
    t, redraws = timed(liveplot, "output", 1, True)
    rows.append(("LivePlot output, 1 smoothed series", t, redraws))
    t, redraws = timed(tensor_values)
    rows.append(("LivePlot output, 0-d tensor value", t, redraws))

    torch.set_num_threads(1)
    ds = data.gaussian_mixture(256, seed=0)
    steps = 200
    hist = fit(models.mlp(2, [32, 32], 3, seed=0), ds, steps=steps, eval_every=10**6, progress=False)
    step_us = hist.wall_time / steps * 1e6

    print(f"{N:,} appends per loop (best of 3)")
    print(f"{'loop':38s} {'total ms':>9s} {'us/append':>10s} {'x bare':>7s} {'redraws':>8s}")
    for name, t, redraws in rows:
        print(f"{name:38s} {t * 1e3:9.1f} {t / N * 1e6:10.2f} {t / base:7.1f} {redraws:8d}")
    print(f"{'reference: one fit step, MLP 2-32-32-3':38s} {'':9s} {step_us:10.1f}")


if __name__ == "__main__":
    main()
