"""The executor seam: in-process by default, the same results on a 2-worker Dask LocalCluster, faults survived."""

import os
import signal
import sys
import time

import numpy as np
import pytest
import torch

from labkit import data, fractal, models, parallel, train


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
        train.fit_many(lambda s: models.mlp(2, [4], 2, seed=s), ds, hparams={"seed": [0, 1]}, groups=0)


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
    split = train.fit_many(make, ds, hparams=hp, groups=4, steps=20)
    assert [h.loss for h in split] == [h.loss for h in one]
    assert [h.hparams for h in split] == [h.hparams for h in one]
    from labkit import _deprecated

    _deprecated._warned.clear()
    with pytest.warns(DeprecationWarning, match=r"labkit.train.fit_many\(..., executor=, groups=\)"):
        old = parallel.fit_many(make, ds, hparams=hp, groups=4, steps=20)
    assert [h.loss for h in old] == [h.loss for h in one]


def _local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        with distributed.Client(lc) as c:
            yield c


@pytest.fixture(scope="module")
def cluster():
    yield from _local_cluster()


@pytest.fixture
def doomed_cluster():
    """A cluster of its own for a test that kills a worker: the module's cluster never depends on a nanny's
    restart (a restarted nanny sometimes closes instead, and the next tests would find one worker)."""
    yield from _local_cluster()


@pytest.mark.slow
def test_fit_many_on_two_workers_equals_in_process(cluster):
    ds = data.gaussian_mixture(n=64, dim=2, classes=3, seed=0)
    hp = train.grid(lr=[0.1, 1.0, 10.0], seed=range(4))
    here = train.fit_many(_mlp, ds, hparams=hp, steps=30, progress=False)
    there = train.fit_many(_mlp, ds, hparams=hp, executor=cluster, steps=30)
    assert parallel.n_workers(cluster) == 2
    assert [h.loss for h in there] == [h.loss for h in here]  # bit for bit, divergences included
    assert [h.diverged for h in there] == [h.diverged for h in here]


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(doomed_cluster):
    stream = parallel.submit(_slow_pid, [(i,) for i in range(12)], name="slow", executor=doomed_cluster)
    results, killed = {}, False
    for i, (pid, j) in stream:
        results[i] = j
        if not killed:  # kill the worker that just finished a task, while the rest are queued or running
            os.kill(pid, signal.SIGKILL)
            killed = True
    assert results == {i: i for i in range(12)}  # every task once, lost ones recomputed


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


# ---------------------------------------------------------------- fractal scans and zooms on the cluster


def _same(a, b):
    return np.array_equal(a.converged, b.converged) and np.array_equal(a.score, b.score, equal_nan=True)


@pytest.mark.slow
def test_fractal_scan_on_two_workers_is_identical(cluster):
    here = fractal.scan("quick", (0.1, 100.0), (0.1, 100.0), 64, progress=False)
    tiles = []
    there = fractal.scan("quick", (0.1, 100.0), (0.1, 100.0), 64, progress=False, executor=cluster,
                         on_chunk=lambda r: tiles.append(r.cells_done))
    assert there.complete and _same(here, there)  # bit for bit
    assert len(tiles) >= 4 and tiles == sorted(tiles) and tiles[-1] == 64 * 64  # streamed tile by tile


@pytest.mark.slow
def test_curvature_map_on_two_workers_is_identical(cluster):
    """Tiles of whole lockstep chunks on workers: the same bits as in-process."""
    window = ((0.1, 100.0), (0.1, 100.0))
    here = fractal.sharpness_map("quick", *window, 24, chunk_size=100, progress=False)
    there = fractal.sharpness_map("quick", *window, 24, chunk_size=100, progress=False, executor=cluster, tile_size=200)
    assert np.array_equal(here, there)


@pytest.mark.slow
def test_zoom_sequence_on_two_workers_is_identical(cluster, tmp_path):
    start, end = ((0.1, 100.0), (0.1, 100.0)), ((1.0, 3.0), (1.0, 3.0))
    here = fractal.zoom_sequence("quick", start, end, frames=3, resolution=24)
    there = fractal.zoom_sequence("quick", start, end, frames=3, resolution=24, executor=cluster, folder=tmp_path)
    assert len(there) == 3 and all(_same(a, b) for a, b in zip(here, there))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame_000.png", "frame_001.png", "frame_002.png"]


@pytest.mark.slow
def test_fractal_scan_survives_a_killed_worker(doomed_cluster):
    cluster = doomed_cluster
    exp = fractal.Experiment.preset("paper", steps=200)
    default_threads = fractal.scan(exp, (0.1, 10.0), (0.1, 10.0), 32, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' BLAS thread count: a GEMM's last bits depend on it (see scan's docstring)
    try:
        here = fractal.scan(exp, (0.1, 10.0), (0.1, 10.0), 32, progress=False)
    finally:
        torch.set_num_threads(threads)
    pids = list(cluster.run(os.getpid).values())
    killed = []

    def kill_once(result):
        if not killed:
            os.kill(pids[0], signal.SIGKILL)  # a worker dies with tiles queued and running
            killed.append(result.cells_done)

    there = fractal.scan(exp, (0.1, 10.0), (0.1, 10.0), 32, progress=False, executor=cluster, tile_size=64,
                         on_chunk=kill_once)
    assert killed and killed[0] < 32 * 32
    assert there.complete and _same(here, there)  # lost tiles recomputed; nothing lost or duplicated
    assert np.array_equal(there.converged, default_threads.converged)  # any thread count: the same picture


@pytest.mark.slow
def test_cancelling_a_scan_cancels_its_queued_tiles(cluster):
    exp = fractal.Experiment.preset("paper", steps=200)
    with pytest.warns(UserWarning, match="partial result"):
        res = fractal.scan(exp, (0.1, 10.0), (0.2, 20.0), 32, progress=False, executor=cluster, tile_size=32,
                           cancel=lambda: True)
    assert not res.complete and 0 < res.cells_done < 32 * 32

    def tile_states(dask_scheduler):
        return [ts.state for key, ts in dask_scheduler.tasks.items() if "fractal-tile" in str(key)]

    deadline = time.time() + 10
    while (states := cluster.run_on_scheduler(tile_states)) and time.time() < deadline:
        time.sleep(0.2)
    assert states == []  # the queued tiles were cancelled and released: nothing of the scan is left to run


def test_scan_with_a_scheduler_but_no_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match="labkit-dynamics"):
        fractal.scan("quick", resolution=8, progress=False, executor="local")


@pytest.mark.slow
def test_cli_scheduler_local(tmp_path, capsys):
    from labkit.cli import main

    out = tmp_path / "scan"
    assert main(["fractal", "--resolution", "16", "--quiet", "--out", str(out), "--scheduler", "local",
                 "--workers", "2"]) == 0
    parallel.close_local()
    assert (tmp_path / "scan.npz").exists()
    assert main(["fractal", "--resolution", "16", "--quiet", "--out", str(out), "--workers", "2"]) == 2
    assert "--workers goes with --scheduler local" in capsys.readouterr().err


@pytest.mark.slow
def test_steps_to_target_on_two_workers_is_identical(cluster):
    from labkit import batchsize

    ds = data.teacher_student(n=128, dim=4, seed=0)
    kwargs = dict(batch_sizes=[4, 16, 64], target=0.5, lrs=[0.05, 0.2], seeds=[0, 1], max_steps=150, progress=False)
    here = batchsize.steps_to_target(_mlp_for(ds), ds, **kwargs)
    there = batchsize.steps_to_target(_mlp_for(ds), ds, executor=cluster, **kwargs)
    assert there.rows == here.rows and any(r["reached"] for r in here.rows)


class _mlp_for:
    """A picklable model factory sized for ``ds`` (lambdas pickle too, through cloudpickle; this reads better)."""

    def __init__(self, ds):
        self.d, self.k = ds.inputs.shape[1], (ds.num_classes if ds.task == "classification" else ds.targets.shape[1])

    def __call__(self, seed):
        return models.mlp(self.d, [16], self.k, activation="tanh", seed=seed)
