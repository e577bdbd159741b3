"""Every notebook top to bottom in fast mode, in a fresh kernel: idle and beside one busy co-tenant process.

The notebooks' fast mode (``LABKIT_FAST=1``) is what CI, nbval and a classroom run; its targets are under 60 s
per notebook on an idle 2-core machine and under 150 s beside one busy process (``python -c "while True:
pass"``, started here and always killed: :class:`bench_shared.CoTenants`). Each notebook runs in a fresh
``python3`` kernel through ``nbclient`` exactly as a reader's "Restart and run all" would: kernel start-up,
imports and every cell are inside the time; nothing is written back to the notebook files. No thread
setting is passed down: the kernel gets labkit's own policy (:mod:`labkit.threads`), as a user's would.
Conditions alternate per round (idle first in odd rounds, the co-tenant first in even ones); each cell of the
table is the worst round.

    python benchmarks/bench_notebooks.py [--rounds 2] [--only 03,11] [--timeout 600]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shared import CoTenants  # benchmarks/ is not a package: imported from its folder

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"idle": 60.0, "1 co-tenant": 150.0}


def run_notebook(path: Path, timeout: float) -> tuple[float, str]:
    """Seconds to execute ``path`` in a fresh kernel in fast mode, and ``""`` or the first error's name."""
    import nbclient
    import nbformat

    nb = nbformat.read(str(path), as_version=4)  # in memory only: the tracked file is never written
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    env = {"LABKIT_FAST": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    saved = {k: os.environ.get(k) for k in (*env, "LABKIT_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(env)
    for k in ("LABKIT_THREADS", "OMP_NUM_THREADS"):  # the kernel decides its threads as a user's kernel would
        os.environ.pop(k, None)
    try:
        start = time.perf_counter()
        try:
            with client.setup_kernel():  # cell by cell, as "Restart and run all" does
                for index, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index)
        except nbclient.exceptions.CellTimeoutError:
            return float("inf"), "timeout"
        seconds = time.perf_counter() - start
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [o.get("ename", "error") for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return seconds, errors[0] if errors else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds of both conditions (alternating order)")
    ap.add_argument("--only", default="", help="comma-separated notebook number prefixes, e.g. 03,11")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per cell")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    books = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        wanted = {p.strip() for p in args.only.split(",")}
        books = [b for b in books if b.name[:2] in wanted]
        if not books:
            ap.error(f"--only {args.only!r} matches no notebook")
    times: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, set[str]] = {}
    loads = []
    for r in range(args.rounds):
        order = list(TARGETS) if r % 2 == 0 else list(TARGETS)[::-1]
        for cond in order:
            loads.append(f"round {r + 1}, {cond}: load average before "
                         f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
            with CoTenants(1 if cond != "idle" else 0):
                for book in books:
                    seconds, err = run_notebook(book, args.timeout)
                    times.setdefault((book.name, cond), []).append(seconds)
                    if err:
                        errors.setdefault(book.name, set()).add(err)
                    print(f"  round {r + 1} {cond:12s} {book.name:34s} {seconds:7.1f} s {err}", file=sys.stderr,
                          flush=True)
    import torch

    print(f"\nnotebooks in fast mode, fresh kernel each: torch {torch.__version__}, {os.cpu_count()} cores, "
          f"worst of {args.rounds} round(s); targets: idle < {TARGETS['idle']:.0f} s, beside one busy "
          f"co-tenant < {TARGETS['1 co-tenant']:.0f} s\n")
    print("| notebook | idle (worst) | beside 1 co-tenant (worst) | ratio | targets met |")
    print("|---|---|---|---|---|")
    for book in books:
        idle, busy = max(times[(book.name, "idle")]), max(times[(book.name, "1 co-tenant")])
        met = idle < TARGETS["idle"] and busy < TARGETS["1 co-tenant"] and book.name not in errors
        note = "" if book.name not in errors else f" (errors: {', '.join(sorted(errors[book.name]))})"
        print(f"| {book.name} | {idle:.1f} s | {busy:.1f} s | {busy / idle:.2f}x | {'yes' if met else 'NO'}{note} |")
    total_idle = sum(max(times[(b.name, "idle")]) for b in books)
    total_busy = sum(max(times[(b.name, "1 co-tenant")]) for b in books)
    print(f"| all {len(books)} | {total_idle:.0f} s | {total_busy:.0f} s | {total_busy / total_idle:.2f}x | |")
    print()
    print("\n".join(loads))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
