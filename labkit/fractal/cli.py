"""``labkit fractal``: render a trainability-boundary scan headless and write ``.npz`` + ``.png``.

    labkit fractal --preset paper --resolution 1024 --steps 500 --device cuda --out paper1024

Heavy imports (torch) happen inside :func:`run`, so ``labkit --help`` stays fast.
"""

from __future__ import annotations

import argparse

PRESET_NAMES = ("paper", "relu", "identity", "minibatch", "single_point", "offset", "quick")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES, help="experiment preset (default: quick)")
    parser.add_argument("--resolution", type=int, default=256, help="pixels per axis (default: 256)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--x-range", type=float, nargs=2, metavar=("LO", "HI"), default=None)
    parser.add_argument("--y-range", type=float, nargs=2, metavar=("LO", "HI"), default=None)
    parser.add_argument("--axes", choices=("lr", "offset"), default=None,
                        help="lr: (lr_in, lr_out); offset: (offset, lr) (default: the preset's)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--chunk", type=int, default=None, help="networks per chunk (default: automatic)")
    parser.add_argument("--max-memory", type=float, default=1.0, help="GiB of working memory per chunk (default 1)")
    parser.add_argument("--scale", type=int, default=1, help="enlarge the PNG by this integer factor")
    parser.add_argument("--out", default="fractal", help="output path prefix: writes PREFIX.npz and PREFIX.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labkit.fractal.experiment import Experiment
    from labkit.fractal.scanner import scan

    changes = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.dtype is not None:
        changes["dtype"] = args.dtype
    if args.axes is not None:
        changes["axes"] = ("lr_in", "lr_out") if args.axes == "lr" else ("offset", "lr")
    try:
        exp = Experiment.preset(args.preset, **changes)
        if "axes" in changes and changes["axes"] != Experiment.preset(args.preset).axes:
            default = (-2.0, 2.0) if changes["axes"][0] == "offset" else (1e-3, 1e6)
            exp = exp.replace(x_range=default, y_range=(1e-2, 1e3) if changes["axes"][0] == "offset" else default)
        res = scan(exp, args.x_range, args.y_range, args.resolution, device=args.device, chunk=args.chunk,
                   max_memory=int(args.max_memory * 2**30), progress=not args.quiet)
    except (ValueError, TypeError) as err:
        print(f"labkit fractal: {err}")
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    npz = res.save(out.with_suffix(".npz"))
    png = res.to_png(out.with_suffix(".png"), scale=args.scale)
    cells = res.converged.size
    rate = cells * exp.steps / max(res.wall_time, 1e-9)
    print(f"{exp.name}: {res.resolution[0]}x{res.resolution[1]} x {exp.steps} steps on {res.device} in "
          f"{res.wall_time:.2f} s ({rate:,.0f} network-steps/s); converged {res.converged.mean():.1%}; "
          f"boundary dimension {res.dimension():.3f}")
    print(f"wrote {npz} and {png}")
    return 0 if res.complete else 130
