"""The executor seam: in-process by default, the same results on a 2-worker Dask LocalCluster, faults survived."""

import os
import signal
import sys
import time

import pytest

from labkit import data, models, parallel, train


def _square(x):
    return x * x


def _slow_pid(i):
    time.sleep(0.3)
    return os.getpid(), i


def test_in_process_stream_runs_in_order_and_cancels():
    stream = parallel.submit(_square, [(i,) for i in range(5)], name="sq")
    seen = []
    for i, r in stream:
        seen.append((i, r))
        if i == 2:
            stream.cancel()
    assert seen == [(0, 0), (1, 1), (2, 4)]  # nothing after the cancel ran
    assert stream.done == 3


def test_bad_executor_and_groups_are_refused():
    with pytest.raises(TypeError, match="executor must be"):
        parallel.client(3.5)
    ds = data.gaussian_mixture(n=32, dim=2, classes=2, seed=0)
    with pytest.raises(ValueError, match="groups must be a positive int"):
        parallel.fit_many(lambda s: models.mlp(2, [4], 2, seed=s), ds, hparams={"seed": [0, 1]}, groups=0)


def test_missing_dask_gives_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install "labkit-dynamics\[distributed\]"'):
        parallel.client("local")


def test_task_keys_are_deterministic():
    assert parallel.task_key("tile", 1, (0.5, 2.0)) == parallel.task_key("tile", 1, (0.5, 2.0))
    assert parallel.task_key("tile", 1, (0.5, 2.0)) != parallel.task_key("tile", 2, (0.5, 2.0))


def test_in_process_fit_many_groups_equal_one_call():
    ds = data.gaussian_mixture(n=64, dim=2, classes=3, seed=0)
    make = lambda s: models.mlp(2, [8], 3, seed=s)  # noqa: E731
    hp = train.grid(lr=[0.1, 1.0], seed=range(3))
    one = train.fit_many(make, ds, hparams=hp, steps=20, progress=False)
    split = parallel.fit_many(make, ds, hparams=hp, groups=4, steps=20)
    assert [h.loss for h in split] == [h.loss for h in one]
    assert [h.hparams for h in split] == [h.hparams for h in one]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        with distributed.Client(lc) as c:
            yield c


@pytest.mark.slow
def test_fit_many_on_two_workers_equals_in_process(cluster):
    ds = data.gaussian_mixture(n=64, dim=2, classes=3, seed=0)
    hp = train.grid(lr=[0.1, 1.0, 10.0], seed=range(4))
    here = train.fit_many(_mlp, ds, hparams=hp, steps=30, progress=False)
    there = parallel.fit_many(_mlp, ds, hparams=hp, executor=cluster, steps=30)
    assert parallel.n_workers(cluster) == 2
    assert [h.loss for h in there] == [h.loss for h in here]  # bit for bit, divergences included
    assert [h.diverged for h in there] == [h.diverged for h in here]


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(cluster):
    stream = parallel.submit(_slow_pid, [(i,) for i in range(12)], name="slow", executor=cluster)
    results, killed = {}, False
    for i, (pid, j) in stream:
        results[i] = j
        if not killed:  # kill the worker that just finished a task, while the rest are queued or running
            os.kill(pid, signal.SIGKILL)
            killed = True
    assert results == {i: i for i in range(12)}  # every task once, lost ones recomputed
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarts the worker for the next tests


@pytest.mark.slow
def test_cancel_on_the_cluster(cluster):
    stream = parallel.submit(_slow_pid, [(100 + i,) for i in range(20)], name="cancel", executor=cluster)
    first = next(iter(stream))
    stream.cancel()
    time.sleep(0.5)
    statuses = [f.status for f in stream.futures]
    assert first is not None and "cancelled" in statuses
    assert sum(s == "finished" for s in statuses) < 20


def _mlp(seed):
    return models.mlp(2, [8], 3, seed=seed)
