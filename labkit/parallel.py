"""Where labkit's embarrassingly parallel work runs: in this process (the default) or on a Dask cluster.

A seam, not a framework. Every function that takes ``executor=`` accepts:

- ``None``: run here, one task after another, each one vectorised on one device (exactly as without Dask);
- ``"local"``: a ``distributed.LocalCluster`` sized to this machine (one single-threaded worker process per
  core), started on first use and reused; :func:`close_local` stops it;
- a scheduler address such as ``"tcp://10.0.0.5:8786"``: connect to a running cluster;
- a ``distributed.Client``: used as given (a SLURM cluster from ``dask_jobqueue``, GPU workers, ...).

Tasks return CPU numpy arrays or plain Python objects, never device tensors. Their keys are deterministic (a
name and a hash of the arguments), so identical work submitted twice is computed once, and results stream back
in completion order (:class:`Stream`), which is what a progressive image and a cancellable zoom need. Dask is an
optional extra: ``pip install "labkit-dynamics[distributed]"``.

>>> [r for _, r in submit(pow, [(2, 3), (3, 2)], name="pow")]  # in-process: results in order
[8, 9]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["INSTALL_HINT", "Stream", "client", "close_local", "local_client", "n_workers", "submit", "task_key"]

INSTALL_HINT = 'pip install "labkit-dynamics[distributed]"'
_local: dict[str, Any] = {}  # the one LocalCluster and Client behind executor="local" (see close_local)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as err:
        raise ImportError(f"running on a Dask cluster needs dask.distributed: {INSTALL_HINT}") from err
    return distributed


def client(executor: Any) -> Any:
    """The ``distributed.Client`` behind ``executor`` (see the module docstring), or ``None`` for in-process."""
    if executor is None:
        return None
    if isinstance(executor, str):
        distributed = _distributed()
        if executor == "local":
            return local_client()
        if "://" not in executor and ":" not in executor:
            raise ValueError(f"executor={executor!r} is neither 'local' nor a scheduler address like 'tcp://host:8786'")
        return distributed.Client(executor)
    if type(executor).__name__ == "Client" and hasattr(executor, "submit"):
        return executor
    raise TypeError(
        f"executor must be None, 'local', a scheduler address or a distributed.Client, got {type(executor).__name__}"
    )


def local_client(n_workers: int | None = None) -> Any:
    """The ``distributed.Client`` of a LocalCluster with ``n_workers`` single-threaded worker processes
    (default: one per core), started on first use and reused while the worker count is the same."""
    distributed = _distributed()
    n = (os.cpu_count() or 1) if n_workers is None else n_workers
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n_workers must be a positive int, got {n_workers!r}")
    if _local.get("n") != n:
        close_local()
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        _local.update(cluster=cluster, client=distributed.Client(cluster), n=n)
    return _local["client"]


def close_local() -> None:
    """Stop the LocalCluster that ``executor="local"`` started (a no-op when none is running)."""
    if "client" in _local:
        _local.pop("client").close()
        _local.pop("cluster").close()
        _local.pop("n", None)


def n_workers(executor: Any) -> int:
    """How many workers ``executor`` has (1 in-process): the number of groups worth splitting work into."""
    c = client(executor)
    return 1 if c is None else max(1, len(c.scheduler_info().get("workers", {})))


def task_key(name: str, *parts: Any) -> str:
    """A deterministic key: ``name`` plus a hash of ``parts`` (same work, same key: Dask computes it once).

    Uses ``dask.base.tokenize`` when Dask is installed (it hashes arrays and tensors by content), else
    ``repr``; objects Dask cannot hash deterministically (e.g. a lambda) get a unique key, which is safe.
    """
    try:
        from dask.base import tokenize
    except ImportError:
        return f"labkit-{name}-{hashlib.sha1(repr(parts).encode()).hexdigest()[:20]}"
    return f"labkit-{name}-{tokenize(*parts)}"


class Stream:
    """Results of submitted tasks as ``(index, result)`` pairs, in completion order; :meth:`cancel` drops the rest.

    In-process, each task runs when the iteration reaches it (so cancelling skips the work not yet done). On Dask,
    every task was submitted at once; a lost worker's tasks are recomputed elsewhere by the scheduler.
    """

    def __init__(self, fn: Callable, args: Sequence[tuple], keys: Sequence[str], dask_client: Any, priority: int):
        self._fn, self._args, self._client = fn, list(args), dask_client
        self._cancelled, self.done = False, 0
        self.futures: list[Any] = []
        if dask_client is not None:
            self.futures = [
                dask_client.submit(fn, *a, key=k, pure=True, priority=priority) for a, k in zip(self._args, keys)
            ]
        self._index = {f.key: i for i, f in enumerate(self.futures)}

    def __len__(self) -> int:
        return len(self._args)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        if self._client is None:
            for i, a in enumerate(self._args):
                if self._cancelled:
                    return
                result = self._fn(*a)
                self.done += 1
                yield i, result
            return
        from distributed import as_completed

        for future in as_completed(self.futures):
            if self._cancelled:
                return
            if future.cancelled():
                continue
            result = future.result()
            self.done += 1
            yield self._index[future.key], result

    def cancel(self) -> None:
        """Stop: tasks not yet finished are cancelled on the cluster (or never run, in-process)."""
        self._cancelled = True
        if self._client is not None:
            pending = [f for f in self.futures if not f.done()]
            if pending:
                self._client.cancel(pending)


def submit(
    fn: Callable, args: Sequence[tuple], *, name: str, executor: Any = None, keys: Sequence[str] | None = None,
    priority: int = 0,
) -> Stream:
    """Run ``fn(*a)`` for each ``a`` in ``args`` on ``executor``; iterate the returned :class:`Stream` for results.

    ``keys`` default to :func:`task_key` of ``name`` and each argument tuple; ``priority`` is Dask's (higher runs
    first: a zoom's newest window outranks tiles still queued for an older one).
    """
    args = [tuple(a) for a in args]
    keys = [task_key(name, *a) for a in args] if keys is None else list(keys)
    if len(keys) != len(args):
        raise ValueError(f"keys has {len(keys)} entries for {len(args)} tasks")
    return Stream(fn, args, keys, client(executor), priority)


def __getattr__(name: str):
    if name == "fit_many":  # moved: fit_many(executor=, groups=) is labkit.train.fit_many's
        from labkit import _deprecated

        _deprecated.warn("labkit.parallel.fit_many", "labkit.train.fit_many(..., executor=, groups=)")
        return _deprecated.resolve("labkit.population.fit:fit_many")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
