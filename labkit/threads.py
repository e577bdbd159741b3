"""How many CPU threads torch uses for labkit's work: what the process may really use, and what pays now.

**The policy** (:func:`policy`), decided once when ``labkit`` is imported, from what the process may really
use: the affinity mask (:func:`os.sched_getaffinity`), the container's CPU quota (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; :func:`cpu_quota`) and an explicit ``LABKIT_THREADS``. torch
sizes its pool from the cores it can see, so a pod limited to 1 CPU on a 32-core node would start 32 threads
that the quota then stalls at every barrier; labkit gives torch ``floor(quota)`` threads (intra-op and
inter-op) instead. A choice you made is kept: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the environment,
or ``torch.set_num_threads(n)`` called before (or after) importing labkit. ``labkit doctor`` prints the
inputs, the choice and why.

**Per hot path** (:func:`for_work`): training many tiny networks at once is hundreds of small parallel regions
per second, and every region ends at a barrier that waits for the slowest thread. On an idle machine that
wait is a microsecond or two; beside one busy process (a browser redrawing, another notebook, CI) the
scheduler deschedules one of torch's threads for a whole time slice, and the others wait milliseconds at
every barrier: ``fit_many`` of 64 small MLPs went from 0.42 s to 2-45 s on 2 cores. One thread never waits
at a barrier but is 1.7x slower when the machine is idle. So the hot paths (``fit_many``, the fractal scan,
grokking, the empirical NTK, per-example norms, Hessian eigenvalues) run under ``with for_work(flops)``,
which first leaves the cores that busy neighbours hold right now (:func:`busy_neighbours`: runnable tasks that
are not this process's), then keeps torch's threads when one parallel region's work (``flops`` per op,
computed from the problem's size) is large against the barrier cost **measured now** (:func:`barrier_cost`, a
few microseconds idle, milliseconds beside a busy process), and drops to one thread otherwise; algorithms whose
op sizes are not known up front (Lanczos on an operator, the signal-propagation sweeps) are decorated with
:func:`hot` (the neighbour rule alone). The numbers behind this choice are in ``docs/performance.md`` and
``benchmarks/bench_shared.py``.

This module sits beside :mod:`labkit.machine`, below the core: it imports nothing of labkit, and torch only
inside functions (``import labkit`` stays cheap).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Policy", "barrier_cost", "busy_neighbours", "configure", "cpu_quota", "decide", "describe", "for_work",
           "hot", "layer_flops", "over", "parse_cfs", "parse_cpu_max", "parse_loadavg", "policy", "threads_for"]

ENV = "LABKIT_THREADS"
USER_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")

#: One core's rate on the ops of labkit's hot paths (small matmuls plus elementwise passes), FLOP/s: 64 tanh
#: MLPs 8-32-32-3 on 256 points reach 3.7e10 on one thread of the 2-core Xeon; the rate only turns a problem's
#: size into a time for the comparison with the barrier, where idle and busy differ by 1000x.
CORE_RATE = 3e10
#: Each thread's share of an op must be at least this many times the barrier cost to keep the threads (2 threads
#: then take at most 0.625x one thread's time on that op: they still pay).
AMORTISE = 4.0
#: Ops whose single-thread time is above this (seconds) keep the threads without a probe: a stall of one
#: scheduler slice (a few ms) costs them little, and one thread would lose half the machine.
LONG_OP = 0.05
#: Ops below this (seconds) run on one thread without a probe: even an idle barrier (1-3 us, and a worker's
#: wake-up from sleep, ~50 us) eats what a second thread would save.
SHORT_OP = 20e-6
#: A measured barrier cost is reused for this long (seconds), so tight loops of small calls probe once; a cost
#: above a millisecond (the probe itself stalled) is reused 5x as long.
PROBE_TTL = 1.0
_GRAIN = 32768  # torch's intra-op grain (at::internal::GRAIN_SIZE): elementwise ops below it run serially


# ---------------------------------------------------------------------------------------------------- inputs
def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"`` in microseconds; ``"max PERIOD"``: no
    quota, None). Unreadable content is None (no quota known), never an error: a strange kernel must not stop
    ``import labkit``."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota, period = float(parts[0]), float(parts[1]) if len(parts) > 1 else 100_000.0
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 and math.isfinite(quota / period) else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``: none, None)."""
    try:
        quota, period = float(quota_text.strip()), float(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _own_paths(self_cgroup: str) -> dict[str, str]:
    """``/proc/self/cgroup`` lines ``ID:CONTROLLERS:PATH`` as {controller: path} (v2's unified line: ``""``)."""
    out = {}
    for line in self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) == 3:
            for ctrl in parts[1].split(",") if parts[1] else [""]:
                out[ctrl] = parts[2]
    return out


def _ancestors(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and each folder above it up to ``base`` (a quota anywhere above the process applies)."""
    parts = [p for p in rel.split("/") if p and p != ".."]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cpu_quota(root: str | Path = CGROUP_ROOT, self_cgroup: str = "") -> float | None:
    """CPUs the cgroup quota allows this process (e.g. 1.5), or None when there is no quota.

    Reads cgroup v2 ``root/cpu.max`` and v1 ``root/cpu/cpu.cfs_quota_us`` (also under ``cpu,cpuacct``); with
    ``self_cgroup`` (the text of ``/proc/self/cgroup``) also the process's own cgroup and every cgroup above it,
    and returns the smallest quota found. Missing or unreadable files mean no quota, never an error.
    """
    root = Path(root)
    own = _own_paths(self_cgroup)
    found = []
    for d in _ancestors(root, own.get("", "")):  # v2: one hierarchy
        text = _read(d / "cpu.max")
        if text is not None and (q := parse_cpu_max(text)) is not None:
            found.append(q)
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # v1: the cpu controller's own hierarchy
        for d in _ancestors(root / sub, own.get("cpu", "")):
            quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            if quota is not None and period is not None and (q := parse_cfs(quota, period)) is not None:
                found.append(q)
    return min(found) if found else None


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return None


# ---------------------------------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class Policy:
    """The thread count labkit gives torch and why. ``source`` is ``"labkit"`` (decided from the machine) or
    what fixed it: ``"LABKIT_THREADS"``, ``"OMP_NUM_THREADS"``, ``"MKL_NUM_THREADS"``,
    ``"torch.set_num_threads"``; only a ``"labkit"`` policy lets :func:`for_work` drop threads."""

    threads: int
    cores: int
    affinity: int | None
    quota: float | None
    why: str
    source: str = "labkit"

    @property
    def adaptive(self) -> bool:
        """Whether :func:`for_work` may run small work on one thread (no explicit choice was made)."""
        return self.source == "labkit"


def _env_threads(name: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name}={value!r} is not a thread count; set a positive integer (e.g. {name}=2) "
                         f"or unset it{' (or auto) to let labkit decide' if name == ENV else ''}")
    return n


def decide(env: Mapping[str, str] | None = None, *, cores: int | None = None, affinity: int | None = None,
           quota: float | None = None) -> Policy:
    """The policy from its inputs (a pure function; :func:`policy` calls it with this machine's).

    ``LABKIT_THREADS`` (a positive integer; ``auto`` or empty: decide) wins, then ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` as you set them; otherwise the CPUs the process may use: the affinity mask, capped by
    ``floor(quota)`` (a thread beyond the quota is throttled at every barrier), at least 1.
    """
    env = os.environ if env is None else env
    cores = cores or os.cpu_count() or 1
    seen = (f"{cores} cores, affinity {affinity if affinity is not None else 'unknown'}, "
            f"quota {'none' if quota is None else f'{quota:g} CPUs'}")
    own = env.get(ENV, "").strip()
    if own and own.lower() != "auto":
        n = _env_threads(ENV, own)
        return Policy(n, cores, affinity, quota, f"{ENV}={own} set explicitly ({seen})", ENV)
    for name in USER_ENV:
        if env.get(name, "").strip():
            n = _env_threads(name, env[name])
            return Policy(n, cores, affinity, quota, f"{name}={env[name].strip()} set by you: kept ({seen})", name)
    usable = affinity if affinity is not None else cores
    if quota is not None and math.floor(quota) < usable:
        n = max(1, math.floor(quota))
        why = f"the cgroup CPU quota allows {quota:g} CPUs of the {usable} visible: {n} thread(s)"
    elif affinity is not None and affinity < cores:
        n, why = affinity, f"the affinity mask allows {affinity} of the {cores} cores"
    else:
        n, why = usable, f"all {usable} cores are usable (no quota, no affinity limit)"
    return Policy(n, cores, affinity, quota, why)


_POLICY: Policy | None = None
_LOCK = threading.Lock()


def policy() -> Policy:
    """The policy decided when labkit was imported (:func:`configure`)."""
    return _POLICY if _POLICY is not None else configure(apply=False)


def configure(root: str | Path = CGROUP_ROOT, *, apply: bool = True) -> Policy:
    """Decide the policy from this process's environment, affinity and cgroup quota (under ``root``) and, with
    ``apply``, give torch that many intra-op and inter-op threads: now if torch is imported, else as soon as it
    is. ``import labkit`` calls this once; call it again after changing ``LABKIT_THREADS``."""
    global _POLICY
    self_cgroup = (_read(Path("/proc/self/cgroup")) or "") if Path(root) == CGROUP_ROOT else ""
    pol = decide(affinity=_affinity(), quota=cpu_quota(root, self_cgroup))
    with _LOCK:
        _POLICY = pol
    if apply and pol.source not in USER_ENV:  # OMP/MKL_NUM_THREADS already sized torch's pool as you asked
        if "torch" in sys.modules:
            _apply()
        else:
            _after_torch_import(_apply)
    return pol


def _torch_defaults() -> set[int]:
    """Counts torch picks by itself (the CPUs it sees, or the affinity mask's): any other count was set by you."""
    return {n for n in (os.cpu_count(), _affinity()) if n}


def _apply() -> None:
    global _POLICY
    import torch

    pol = _POLICY
    if pol is None:
        return
    now = torch.get_num_threads()
    if pol.source == "labkit" and now not in _torch_defaults():
        with _LOCK:
            _POLICY = replace(pol, threads=now, source="torch.set_num_threads",
                              why=f"torch.set_num_threads({now}) called by you before labkit: kept ({pol.why})")
        return
    if now != pol.threads:
        torch.set_num_threads(pol.threads)
    try:
        torch.set_num_interop_threads(pol.threads)
    except RuntimeError:  # inter-op work already started (or set before): torch allows it only once
        pass


def _after_torch_import(fn: Any) -> None:
    """Run ``fn()`` right after the first ``import torch`` (a one-shot import hook; torch is not imported here)."""
    import importlib.abc
    import importlib.util

    class _Loader(importlib.abc.Loader):
        def __init__(self, inner: importlib.abc.Loader):
            self.inner = inner

        def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...: torch's own loader
            return getattr(self.inner, name)

        def create_module(self, spec: Any) -> Any:
            return self.inner.create_module(spec)

        def exec_module(self, module: Any) -> None:
            self.inner.exec_module(module)
            module.__loader__ = module.__spec__.loader = self.inner  # leave no trace
            fn()

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "torch":
                return None
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            spec = importlib.util.find_spec("torch")
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
            return spec

    if not any(type(f).__name__ == "_Finder" and type(f).__module__ == __name__ for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


# -------------------------------------------------------------------------------------------- per hot path
_PROBE: dict[int, tuple[float, float]] = {}  # threads -> (when, seconds)
_NEIGHBOURS: list[tuple[float, int | None]] = []  # [(when, count)]: the last busy_neighbours() answer
#: A busy_neighbours() answer is reused for this long (seconds): a loop of small calls reads /proc once.
NEIGHBOURS_TTL = 0.25


def parse_loadavg(text: str) -> int | None:
    """Runnable tasks on the machine now: the ``R`` of ``/proc/loadavg``'s fourth field ``R/T`` (None if
    unreadable)."""
    parts = text.split()
    try:
        return int(parts[3].split("/")[0]) if len(parts) > 3 else None
    except ValueError:
        return None


def _own_running() -> int | None:
    """This process's threads in state R (running or waiting for a CPU), from ``/proc/self/task/*/stat``."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    n = 0
    for tid in tasks:
        stat = _read(Path("/proc/self/task", tid, "stat"))
        if stat is not None and stat[stat.rfind(")") + 2: stat.rfind(")") + 3] == "R":  # "pid (comm) S ..."
            n += 1
    return n


def busy_neighbours(samples: int = 3) -> int | None:
    """How many runnable tasks that are not this process's share the machine now (None where ``/proc`` is
    missing, e.g. macOS): the fewest over ``samples`` back-to-back reads of ``/proc/loadavg`` less this
    process's own running threads (a busy loop beside us is runnable in every read; a blip is not).
    Cached for :data:`NEIGHBOURS_TTL` s."""
    now = time.perf_counter()
    if _NEIGHBOURS and now - _NEIGHBOURS[0][0] < NEIGHBOURS_TTL:
        return _NEIGHBOURS[0][1]
    best: int | None = None
    for _ in range(max(1, samples)):
        text = _read(Path("/proc/loadavg"))
        running = parse_loadavg(text) if text is not None else None
        if running is not None and running <= 1:  # the reader alone: nobody else (no per-thread reads needed)
            best = 0
            break
        own = _own_running()
        if running is None or own is None:
            best = None
            break
        best = max(0, running - own) if best is None else min(best, max(0, running - own))
        if best == 0:
            break
    _NEIGHBOURS[:] = [(time.perf_counter(), best)]
    return best


def barrier_cost(threads: int, budget: float = 2e-3) -> float:
    """Seconds one parallel region of ``threads`` threads costs now beyond its work (cached for
    :data:`PROBE_TTL` s): an elementwise op of one grain per thread, timed against the same work done serially.
    About 1-3 us on an idle machine; milliseconds when a busy process makes the scheduler deschedule a thread.
    Stops early once ``budget`` seconds are spent (one stalled region says enough)."""
    import torch

    hit = _PROBE.get(threads)
    now = time.perf_counter()
    if hit is not None and now - hit[0] < PROBE_TTL * (5 if hit[1] > 1e-3 else 1):
        return hit[1]
    x = torch.ones(threads * _GRAIN)
    half = x[: _GRAIN // 2]  # below the grain: always serial, whatever the thread count
    half.mul_(1.0)
    t = time.perf_counter()
    for _ in range(4):
        half.mul_(1.0)
    serial = (time.perf_counter() - t) / 4 * 2  # one grain, one thread
    t0 = time.perf_counter()
    x.mul_(1.0)  # wakes the pool (its own cost counts only if it already blows the budget)
    spent, reps, cost = time.perf_counter() - t0, 0, 0.0
    if spent > budget:
        cost = spent
    else:
        t = time.perf_counter()
        while reps < 8 and time.perf_counter() - t0 < budget:
            x.mul_(1.0)
            reps += 1
        cost = max(0.0, (time.perf_counter() - t) / reps - serial)
    _PROBE[threads] = (time.perf_counter(), cost)
    return cost


def threads_for(flops_per_op: float, threads: int | None = None) -> int:
    """The thread count for work whose parallel regions do ``flops_per_op`` each: ``threads`` (default
    torch's current count), less one per core that a busy neighbour occupies now (:func:`busy_neighbours`),
    when one op's time on a core is long against the measured :func:`barrier_cost` (>= :data:`AMORTISE` x),
    else 1. No probe for very short (< :data:`SHORT_OP`) or long (> :data:`LONG_OP`) ops."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    if threads <= 1:
        return 1
    others, pol = busy_neighbours(), policy()
    if others:  # a thread beyond the free cores waits for a time slice at every barrier: leave them the cores
        threads = max(1, min(threads, (pol.affinity or pol.cores) - others))
        if threads == 1:
            return 1
    seconds = float(flops_per_op) / CORE_RATE
    if not seconds >= SHORT_OP:  # NaN as well
        return 1
    if seconds > LONG_OP:
        return threads
    return threads if barrier_cost(threads) * AMORTISE <= seconds / threads else 1


@contextmanager
def for_work(flops_per_op: float) -> Iterator[int]:
    """Run the block with the threads that pay for ops of ``flops_per_op`` FLOPs (:func:`threads_for`); yields
    the count used. Leaves torch alone if you fixed the count (:attr:`Policy.adaptive`, or you called
    ``torch.set_num_threads`` since); nests; restores the count on exit, also on errors."""
    import torch

    now = torch.get_num_threads()
    pol = policy()
    if not pol.adaptive or now != pol.threads or now == 1:
        yield now
        return
    use = threads_for(flops_per_op, now)
    if use == now:
        yield now
        return
    torch.set_num_threads(use)
    try:
        yield use
    finally:
        torch.set_num_threads(now)


T = TypeVar("T")
F = TypeVar("F", bound=Any)


def hot(fn: F) -> F:
    """Decorator for a hot path whose op sizes are not known up front (an algorithm over an operator, a sweep):
    the call runs under ``for_work(inf)``, i.e. with torch's threads unless busy neighbours hold cores right now
    (:func:`busy_neighbours`), then with the cores they leave free. Nests with :func:`for_work` (an enclosing
    decision stands)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with for_work(math.inf):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def over(steps: Iterable[T], flops_per_op: float) -> Iterator[T]:
    """``for t in over(range(n), flops):`` a loop whose body runs under :func:`for_work` (a one-line wrap)."""
    with for_work(flops_per_op):
        yield from steps


def layer_flops(model: Any, rows: int, copies: int = 1) -> float:
    """FLOPs of the model's largest layer (its largest parameter tensor) on ``rows`` examples, for ``copies``
    networks at once: the size of the largest op of a training step, what :func:`for_work` takes."""
    params = getattr(model, "parameters", None)
    if params is None:  # not a module (e.g. a Risk): size unknown, leave the threads as they are
        return math.inf
    largest = max((p.numel() for p in params()), default=0)
    return 2.0 * largest * rows * copies


def describe() -> list[tuple[str, str]]:
    """Rows for ``labkit doctor``: cores seen, affinity, quota, threads chosen, why, and the torch count now."""
    pol = policy()
    rows = [
        ("cores seen", str(pol.cores)),
        ("affinity", "unknown (no sched_getaffinity here)" if pol.affinity is None else f"{pol.affinity} CPUs"),
        ("cpu quota", "none" if pol.quota is None else f"{pol.quota:g} CPUs"),
        ("threads chosen", f"{pol.threads} ({pol.source})"),
        ("why", pol.why),
        ("small work", "one thread when a busy neighbour makes barriers cost more than the work (for_work)"
         if pol.adaptive else "the fixed count above (you chose it)"),
    ]
    if "torch" in sys.modules:
        import torch

        rows.append(("torch threads", f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} "
                                      "inter-op"))
    return rows
