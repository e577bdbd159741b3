"""``labkit fractal``: render a trainability-boundary scan headless and write ``.npz`` + ``.png``.

    labkit fractal --preset paper --resolution 1024 --steps 500 --device cuda --out paper1024 --figure

writes ``paper1024.npz`` (the data, :meth:`ScanResult.load`), ``paper1024.png`` (the image, one pixel per
cell) and, with ``--figure``, ``paper1024-figure.png``: the figure with axes, colour bar and title. The
static figure needs plotly's renderer ``kaleido`` (``pip install kaleido``); without it the fallback is
``paper1024-figure.png.html``, a self-contained HTML figure that opens offline in any browser.

``--out`` is a path prefix; the suffixes are appended (``--out run.v1`` writes ``run.v1.npz``, never
``run.npz``); a trailing ``.npz`` or ``.png`` is taken as the prefix's end. Every file is written
atomically. Ctrl-C stops the scan, writes the finished rows (the file says it is partial) and exits 130.
Heavy imports (torch) happen inside :func:`run`, so ``labkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

PRESET_NAMES = ("paper", "relu", "identity", "minibatch", "single_point", "offset", "quick")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES, help="experiment preset (default: quick)")
    parser.add_argument("--resolution", type=int, default=256, help="pixels per axis (default: 256)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--x-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                        help="window on the x axis (input-layer lr, or the offset with --axes offset; log-spaced for "
                             "learning rates): e.g. --x-range 0.1 10 (default: the preset's)")
    parser.add_argument("--y-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                        help="window on the y axis (output-layer lr, or the lr with --axes offset): e.g. "
                             "--y-range 0.1 10 (default: the preset's)")
    parser.add_argument("--axes", choices=("lr", "offset"), default=None,
                        help="lr: (lr_in, lr_out); offset: (offset, lr) (default: the preset's)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--chunk", type=int, default=None, help="networks per chunk (default: automatic)")
    parser.add_argument("--max-memory", type=float, default=1.0,
                        help="GiB for the result (9 bytes per cell) plus working memory (default 1)")
    parser.add_argument("--scale", type=int, default=1, help="enlarge the PNG by this integer factor")
    parser.add_argument("--out", default="fractal", help="output path prefix: writes PREFIX.npz and PREFIX.png")
    parser.add_argument("--figure", action="store_true",
                        help="also write PREFIX-figure.png with axes, colour bar and title (needs kaleido: pip "
                             "install kaleido; without it a self-contained PREFIX-figure.png.html of about 5 MB)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS|local",
                        help="run the tiles on a Dask cluster: a scheduler address, or 'local' for a LocalCluster "
                             'on this machine (needs pip install "labkit-dynamics[distributed]")')
    parser.add_argument("--workers", type=int, default=None,
                        help="with --scheduler local: number of worker processes (default: one per core)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _prefix(out: str):
    from pathlib import Path

    prefix = Path(out)
    if prefix.is_dir():
        raise IsADirectoryError(f"--out {out!r} is a folder; give a path prefix such as {str(prefix / 'fractal')!r}")
    if prefix.suffix.lower() in (".npz", ".png"):
        prefix = prefix.with_suffix("")
    return prefix


def _executor(args: argparse.Namespace):
    """The Dask client behind ``--scheduler``/``--workers`` (None: in-process)."""
    if args.workers is not None and args.scheduler != "local":
        raise ValueError("--workers goes with --scheduler local (a remote cluster has its own workers)")
    if args.scheduler is None:
        return None
    from labkit import parallel

    if args.scheduler == "local" and args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        return parallel.local_client(args.workers)
    return parallel.client(args.scheduler)


def run(args: argparse.Namespace) -> int:
    import warnings

    from labkit._io import ensure_folder, with_suffix
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
        prefix = _prefix(args.out)
        ensure_folder(prefix.parent)
        exp = Experiment.preset(args.preset, **changes)
        if "axes" in changes and changes["axes"] != Experiment.preset(args.preset).axes:
            default = (-2.0, 2.0) if changes["axes"][0] == "offset" else (1e-3, 1e6)
            exp = exp.replace(x_range=default, y_range=(1e-2, 1e3) if changes["axes"][0] == "offset" else default)
        if not args.max_memory > 0:
            raise ValueError(f"--max-memory must be > 0 GiB, got {args.max_memory}")
        if args.figure and importlib.util.find_spec("kaleido") is None:  # say it before the scan, not after
            print("labkit fractal: --figure: kaleido is not installed (pip install kaleido), so the figure will be "
                  "a self-contained HTML file of about 5 MB (plotly.js inlined, opens offline) instead of a PNG",
                  file=sys.stderr)
        executor = _executor(args)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="scan interrupted")  # the summary below says it
            res = scan(exp, args.x_range, args.y_range, args.resolution, device=args.device, chunk_size=args.chunk,
                       max_memory=int(args.max_memory * 2**30), progress=not args.quiet, executor=executor)
    except (ValueError, TypeError, ImportError) as err:
        print(f"labkit fractal: error: {err}", file=sys.stderr)
        return 2
    written = [res.save(with_suffix(prefix, ".npz")), res.to_png(with_suffix(prefix, ".png"), scale=args.scale)]
    notes = []
    if args.figure:
        path, note = res.write_figure(prefix.with_name(prefix.name + "-figure.png"))
        written.append(path)
        notes.append(f"{note}; {path.stat().st_size / 2**20:.1f} MB")
    done = res.cells_done
    rate = done * exp.steps / max(res.wall_time, 1e-9)
    print(f"{res.summary()}; on {res.device} in {res.wall_time:.2f} s ({rate:,.0f} network-steps/s)")
    print("wrote " + ", ".join(str(p) for p in written) + "".join(f"\n  ({n})" for n in notes))
    if not res.complete:
        print(f"interrupted: {res.resolution[0] * res.resolution[1] - done:,} cells were not scanned; the files hold "
              "a partial result (complete=False)", file=sys.stderr)
    return 0 if res.complete else 130
