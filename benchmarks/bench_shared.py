"""labkit's hot paths on a shared machine: idle, beside busy co-tenant processes, and under a CPU quota.

Each hot path (``fit_many`` with both engines, the fractal scan, the Hessian's top eigenvalue by Lanczos on
Hessian-vector products, the empirical NTK, per-example gradient norms, ``grokking.run``) is timed in fresh
processes under two thread policies, in the same run, alternating:

* **torch's default**: torch's own thread count (the cores it sees), fixed (``LABKIT_THREADS=<cores>``);
* **labkit**: :mod:`labkit.threads`' policy (the affinity mask and cgroup quota, and ``for_work``'s choice of
  one thread for work too small to amortise a barrier at the cost measured now).

Conditions: **idle**; beside **one** and **two** busy co-tenants (``python -c "while True: pass"``, started
here with ``subprocess.Popen`` and always killed, also on Ctrl-C, errors and SIGTERM); and a **simulated
quota**: torch's default as a pod limited to 2 CPUs on an 8-core node would have it (8 threads on 2 cores)
against labkit reading that quota from a cgroup ``cpu.max`` file. Every cell is the **worst** of
``--rounds x --repeats`` timings (after a warm-up call); the ratios divide by torch's default idle time, today's
speed. The machine's load (``os.getloadavg``) is printed with each round: on a machine shared with other
people the absolute numbers are noisy, the ratios from the same run less so.

    python benchmarks/bench_shared.py [--rounds 3] [--repeats 2] [--paths fit_many_batched,fractal] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COTENANT = [sys.executable, "-c", "while True: pass"]
PATHS = ("norms", "ntk", "hessian_top", "fit_many_batched", "fractal", "grokking", "fit_many_vmap")
CONDITIONS = ("idle", "1 co-tenant", "2 co-tenants", "quota")


# ------------------------------------------------------------------------------------------- the child side
def _workloads(quick: bool) -> dict:
    import torch

    from labkit import data, grokking, hessian, models, ntk, train
    from labkit.batchsize import per_example_sq_norms
    from labkit.fractal import scan

    steps = 20 if quick else 200
    ds = data.gaussian_mixture(n=256, dim=8, classes=3, seed=0)
    hp = {"lr": [0.1] * 64, "seed": list(range(64))}

    def make(seed: int) -> torch.nn.Module:
        return models.mlp(8, [32, 32], 3, activation="tanh", seed=seed)

    g = torch.Generator().manual_seed(0)
    n = 128 if quick else 512
    x64, y64 = torch.randn(n, 64, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)
    mlp64 = models.mlp(64, [128, 128], 10, seed=0).double()
    xk = torch.randn(64 if quick else 256, 64, generator=g)
    mlp32 = models.mlp(64, [128, 128], 10, seed=0)
    digits = data.load("digits")
    xd, yd = digits.inputs[:n].float().reshape(n, -1), digits.targets[:n]
    relu = models.mlp(64, [128, 128], 10, activation="relu", seed=0)
    fit = dict(hparams=hp, steps=steps, progress=False, eval_every=steps)
    return {
        "fit_many_batched": lambda: train.fit_many(make, ds, engine="batched", **fit),
        "fit_many_vmap": lambda: train.fit_many(make, ds, engine="vmap", **fit),
        "fractal": lambda: scan("paper", resolution=4 if quick else 16, progress=False),
        "hessian_top": lambda: hessian.top_eigenvalues(mlp64, "cross_entropy", (x64, y64), k=1, tol=1e-6),
        "ntk": lambda: ntk.empirical(mlp32, xk, output="full"),
        "norms": lambda: per_example_sq_norms(relu, "cross_entropy", xd, yd),
        "grokking": lambda: grokking.run(steps=30 if quick else 300, records=10),
    }


def child(args: argparse.Namespace) -> None:
    """Time the paths in this process (the thread settings came in through the environment)."""
    import labkit  # before torch: the policy is applied when torch is imported

    if args.cgroup_root:
        labkit.threads.configure(args.cgroup_root)
    import torch

    work = _workloads(args.quick)
    for name in args.paths.split(","):
        fn = work[name]
        fn()  # warm-up: one-off costs no repeated call pays
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        print(json.dumps({name: times, "_threads": torch.get_num_threads()}), flush=True)  # one line per path


# ------------------------------------------------------------------------------------------ the parent side
class CoTenants:
    """``n`` busy processes for the duration of a ``with`` block; killed on exit, whatever happened."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> CoTenants:
        self.procs = [subprocess.Popen(COTENANT) for _ in range(self.n)]
        time.sleep(0.2 if self.n else 0.0)  # let them get going
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def _run_child(args: argparse.Namespace, env: dict[str, str], cgroup_root: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--paths", args.paths, "--repeats", str(args.repeats)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--cgroup-root", cgroup_root] if cgroup_root else []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:  # the paths not done are recorded as "> timeout", not fatal
            proc.kill()
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.kill()
            raise
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"benchmark child failed:\n{stderr[-2000:]}")
    got: dict = {name: [float("inf")] for name in args.paths.split(",")}
    for line in stdout.splitlines():
        got.update(json.loads(line))
    return got


def _env(threads: int | None) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("LABKIT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env["LABKIT_THREADS"] = str(threads)  # a fixed count: labkit neither caps it nor drops threads
    return env


def measure(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """{(condition, arm): {path: [seconds...]}} and one load line per round."""
    cores = os.cpu_count() or 1
    times: dict[tuple[str, str], dict[str, list[float]]] = {}
    loads = []
    with tempfile.TemporaryDirectory() as quota_root:
        Path(quota_root, "cpu.max").write_text(f"{2 * 100000} 100000\n")  # a pod limited to 2 CPUs
        for r in range(args.rounds):
            for cond in args.conditions:
                loads.append(f"round {r + 1}, {cond}: load average before "
                             f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min) on {cores} cores")
                with CoTenants({"1 co-tenant": 1, "2 co-tenants": 2}.get(cond, 0)):
                    arms = [("torch default", _env(8 if cond == "quota" else cores), None),
                            ("labkit", _env(None), quota_root if cond == "quota" else None)]
                    for arm, env, root in arms if r % 2 == 0 else arms[::-1]:
                        got = _run_child(args, env, root)
                        cell = times.setdefault((cond, arm), {})
                        for name, ts in got.items():
                            if not name.startswith("_"):
                                cell.setdefault(name, []).extend(ts)
                        cell.setdefault("_threads", []).append(got.get("_threads", -1))
                print(f"  {loads[-1]}: done", file=sys.stderr, flush=True)
    return times, loads


def _cell(t: float, base: float) -> str:
    if t == float("inf"):
        return "> timeout"
    return f"{t:.3f} s" + ("" if base == float("inf") else f" ({t / base:.2f}x)")


def table(times: dict, paths: list[str], conditions: list[str]) -> str:
    head = ["path", "idle torch (today)", "idle labkit"]
    for cond in conditions[1:]:
        head += [f"{cond} torch", f"{cond} labkit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in paths:
        base = max(times[("idle", "torch default")][name])
        row = [name, _cell(base, base).split(" (")[0]]
        for cond in conditions:
            for arm in ("torch default", "labkit"):
                if (cond, arm) != ("idle", "torch default"):
                    row.append(_cell(max(times[(cond, arm)][name]), base))
        lines.append("| " + " | ".join(row) + " |")
    threads = {k: sorted(set(v["_threads"])) for k, v in times.items()}
    lines.append("")
    lines.append("torch threads at the end of each child (labkit's count outside for_work): "
                 + "; ".join(f"{c} {a}: {threads[(c, a)]}" for c, a in times))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="blocks of every condition (alternating arm order)")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per path in each child process")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    ap.add_argument("--quick", action="store_true",
                    help="tiny problems, one round, no 2-co-tenant block: a smoke test of the script")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds per child process; paths it has not finished by then show as '> timeout'")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cgroup-root", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    paths = args.paths.split(",")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        ap.error(f"--paths: unknown {unknown}; choose from {list(PATHS)}")
    if args.child:
        child(args)
        return 0
    args.conditions = [c for c in CONDITIONS if not (args.quick and c == "2 co-tenants")]
    if args.quick:
        args.rounds, args.repeats = 1, 1
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM unwinds: co-tenants killed
    try:
        times, loads = measure(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    import torch

    print(f"\nlabkit hot paths on a shared machine: torch {torch.__version__}, {os.cpu_count()} cores, worst of "
          f"{args.rounds} round(s) x {args.repeats} call(s){', --quick sizes' if args.quick else ''}; "
          "ratios to torch's default idle time\n")
    print(table(times, paths, args.conditions))
    print()
    print("\n".join(loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
