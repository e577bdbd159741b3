"""Controls, the background Runner (Run / Stop / cancel-and-restart) and train_panel, driven from code.

Thread tests synchronise on events (never on sleeps) and every wait is bounded.
"""

import threading

import pytest

from labkit import widgets
from labkit.widgets import Runner

T = 30.0  # generous bound for any wait (the machine may be loaded); passing runs take milliseconds


class Recorder:
    """A work function that runs until stopped and records what it saw, and how many ran at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = self.max_active = 0
        self.seen = []
        self.started = threading.Event()

    def __call__(self, ctx):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.seen.append(dict(ctx.params))
        self.started.set()
        try:
            ctx.stop_event.wait(T)  # "train" until stopped
            return ctx.params
        finally:
            with self.lock:
                self.active -= 1


def test_run_then_stop_button():
    work = Recorder()
    lr = widgets.lr_slider(0.1)
    runner = Runner(work, {"lr": lr})
    assert not runner.running and runner.stop_button.disabled
    runner.run_button.click()
    assert work.started.wait(T) and runner.running and not runner.stop_button.disabled
    runner.stop_button.click()
    assert runner.wait(T) and not runner.running
    assert runner.result == {"lr": pytest.approx(0.1)}
    assert runner.status_line.value.startswith("stopped") and runner.stop_button.disabled


def test_control_change_mid_run_cancels_and_restarts_with_new_value():
    work = Recorder()
    lr = widgets.lr_slider(0.1)
    runner = Runner(work, {"lr": lr})
    runner.start()
    assert work.started.wait(T)
    work.started.clear()
    lr.value = 0.5  # mid-run: cancel and restart
    assert work.started.wait(T)
    assert [round(s["lr"], 6) for s in work.seen] == [0.1, 0.5]
    assert runner.running and runner.runs_started == 2
    runner.stop()
    assert not runner.running and work.max_active == 1  # never two runs at once
    lr.value = 1.0  # idle: a change does not start anything
    assert runner.runs_started == 2 and not runner.running


def test_rapid_restarts_never_overlap_and_the_last_values_win():
    work = Recorder()
    steps = widgets.steps_slider(100)
    runner = Runner(work, {"steps": steps})
    runner.start()
    assert work.started.wait(T)
    for v in (200, 300, 400, 500):
        steps.value = v
    # the last request is the one left running, with the last value (superseded ones may be skipped)
    while work.seen[-1]["steps"] != 500:
        work.started.clear()
        assert work.started.wait(T)
    assert runner.running
    runner.stop(wait=False)
    assert runner.wait(T)
    got = [s["steps"] for s in work.seen]
    assert work.max_active == 1 and got[0] == 100 and got[-1] == 500 and got == sorted(got)
    assert runner.result == {"steps": 500}


def test_errors_are_shown_and_reraised_in_wait():
    def broken(ctx):
        raise RuntimeError("bad work")

    runner = Runner(broken)
    runner.start()
    with pytest.raises(RuntimeError, match="bad work"):
        runner.wait(T)
    assert "bad work" in runner.status_line.value and not runner.running
    assert runner.wait(T)  # reported once


@pytest.mark.parametrize("exc", [RuntimeError("bad <b>work</b> & more"), KeyboardInterrupt("ctrl-c"),
                                 SystemExit(3), ValueError("")])
def test_any_exception_ends_the_run_with_the_error_in_the_status_line(exc):
    def broken(ctx):
        ctx.status("running...")
        raise exc

    runner = Runner(broken)
    runner.start()
    with pytest.raises(type(exc)):
        runner.wait(T)
    status = runner.status_line.value
    assert not runner.running and runner.stop_button.disabled and runner.run_button.description == "Run"
    assert "running" not in status and type(exc).__name__ in status
    if "<b>" in str(exc):  # the error text is HTML-escaped
        assert "<b>work</b>" not in status and "&lt;b&gt;work&lt;/b&gt; &amp; more" in status
    runner.start()  # the runner still works afterwards
    with pytest.raises(type(exc)):
        runner.wait(T)


def test_invalid_constructor_arguments_raise_at_construction():
    lr = widgets.lr_slider(0.1)
    with pytest.raises(TypeError, match="controls must be a dict"):
        Runner(lambda ctx: None, [lr])
    with pytest.raises(TypeError, match=r"controls\['lr'\] must be an ipywidgets control"):
        Runner(lambda ctx: None, {"lr": 0.1})
    with pytest.raises(TypeError, match="restart_on_change"):
        Runner(lambda ctx: None, {"lr": lr}, restart_on_change="yes")
    with pytest.raises(ValueError, match="threads must be > 0"):
        Runner(lambda ctx: None, threads=0)
    with pytest.raises(TypeError, match="threads must be an int"):
        Runner(lambda ctx: None, threads="2")
    with pytest.raises(TypeError, match="work"):
        Runner(lambda ctx: None).start(work=3)


def test_torch_threads_are_decided_once_on_the_main_thread(monkeypatch):
    """set_num_threads is process-wide: setting and restoring it from two workers at once races."""
    import torch

    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append((n, threading.current_thread().name)))
    before = torch.get_num_threads()
    try:
        other = 2 if before == 1 else 1
        runners = [Runner(Recorder(), threads=other), Runner(Recorder())]
        assert calls == [(other, "MainThread")]  # once, at construction, on the main thread
        for r in runners:
            r.start()
        for r in runners:
            assert r.work.started.wait(T)
            r.stop()
        assert calls == [(other, "MainThread")]  # never from a worker thread
        errors = []

        def build_in_a_worker():
            try:
                Runner(Recorder(), threads=1)
            except RuntimeError as err:
                errors.append(err)

        t = threading.Thread(target=build_in_a_worker)
        t.start()
        t.join(T)
        assert errors and "main thread" in str(errors[0])
    finally:
        real(before)


def test_controls():
    lr = widgets.lr_slider(0.1, 1e-4, 10.0)
    assert lr.min == pytest.approx(-4) and lr.max == pytest.approx(1) and lr.base == 10 and not lr.continuous_update
    bs = widgets.batch_size_slider(None, 8, 64)
    assert [v for _, v in bs.options] == [8, 16, 32, 64, "full"] and bs.value == "full"
    assert widgets.batch_size_value(bs.value, 100) is None and widgets.batch_size_value(32, 100) == 32
    assert widgets.batch_size_value(64, 50) is None
    assert widgets.width_slider(64).value == 64
    assert widgets.optimizer_dropdown("adam").options == ("sgd", "momentum", "adam", "adamw")
    with pytest.raises(ValueError, match="must lie in"):
        widgets.lr_slider(100.0)
    with pytest.raises(ValueError, match="value='mnist'"):
        widgets.dataset_dropdown("mnist")
    with pytest.raises(ValueError, match="one of"):
        widgets.width_slider(48)
    with pytest.raises(TypeError, match="work"):
        Runner(3)


def test_train_panel_runs_restarts_and_stops(capsys):
    stepping = {}  # lr -> Event set once a run with that lr is training

    def probe(params, live):
        event = stepping.setdefault(round(params["lr"], 6), threading.Event())
        return [lambda info: event.set()]

    panel = widgets.train_panel(steps=40, width=8, n=128, batch_size=32, callbacks=probe)
    hist = panel.run(wait=True, timeout=120)
    assert hist.steps == 40 and not hist.diverged and hist.final_loss < hist.loss[0]
    assert set(panel.live.names) == {"loss", "test loss", "test accuracy"}
    drawn = panel.live.widget.outputs[0]["data"]["application/vnd.plotly.v1+json"]["data"]
    assert drawn[0]["y"][-1] == pytest.approx(hist.loss[-1])  # the final state is on screen
    assert panel.runner.status_line.value.startswith("done")

    panel.set(steps=5000)
    stepping.clear()
    panel.run()
    assert stepping.setdefault(0.1, threading.Event()).wait(T)
    panel.set(lr=0.05)  # mid-run change: cancels, restarts with the new learning rate
    assert stepping.setdefault(0.05, threading.Event()).wait(T)
    panel.stop()
    assert not panel.runner.running and panel.runner.runs_started == 3
    assert panel.history.hparams["lr"] == pytest.approx(0.05) and panel.history.stopped_early
    assert panel.history.steps < 5000
    assert capsys.readouterr().out == ""  # the worker thread printed nothing

    with pytest.raises(ValueError, match="no control 'nope'"):
        panel.set(nope=1)
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()


def test_train_panel_extension_points():
    calls = []

    def extra(params, live):
        live.reference("loss", 0.1, "target")
        calls.append(params["weight_decay"])
        return []

    panel = widgets.train_panel(steps=10, n=64, dataset="two_moons", callbacks=extra,
                                controls={"weight_decay": widgets.lr_slider(1e-3, 1e-6, 1e-1, "weight decay")})
    hist = panel.run(wait=True, timeout=120)
    assert calls == [pytest.approx(1e-3)] and hist.hparams["weight_decay"] == pytest.approx(1e-3)
    assert "target = 0.1" in {t["name"] for t in panel.live._traces()}


def test_run_button_presses_draw_new_seeds_but_changes_and_code_keep_it():
    panel = widgets.train_panel(steps=5, n=64, width=4)
    assert panel.run(wait=True, timeout=120).hparams["seed"] == 0
    assert panel.run(wait=True, timeout=120).hparams["seed"] == 0  # from code: reproducible
    for expected in (1, 2):
        panel.runner.run_button.click()
        assert panel.runner.wait(T) and panel.history.hparams["seed"] == expected


def test_train_panel_says_diverged_not_done_and_flags_controls_changed_while_idle():
    panel = widgets.train_panel(lr=5.0, steps=50, n=256, width=32, depth=2)  # the tour: diverges in ~6 steps
    panel.run(wait=True, timeout=120)
    assert panel.history.diverged
    status = panel.runner.status_line.value
    assert "diverged at step" in status and "done" not in status, status
    panel.set(lr=0.1)  # idle: nothing runs, so the figure still shows the lr = 10 run and must say so
    assert not panel.runner.running
    assert "controls changed: the figure still shows the last run; press <b>Run</b>" in panel.runner.status_line.value
    panel.run(wait=True, timeout=120)
    assert not panel.history.diverged and panel.runner.status_line.value.startswith("done in")
