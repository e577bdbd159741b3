"""``Runner``: run work in a background thread behind Run / Stop buttons.

A cell that trains in the foreground streams figure updates to the page, but
the page's events (a Stop click, a slider move) wait until the cell ends. So a
panel runs its work in a background thread, which keeps the kernel free to
react. The rules that make this safe:

- one run at a time: starting a run (Run, or a control changed mid-run) sets the
  running one's stop event, and the new thread first waits for the old one to
  finish, so two runs never write into one figure;
- hyperparameters are read from the controls when the run starts (``ctx.params``);
- the thread only sets widget values and figure data: no ``print``, no
  ``display``, no progress bars (pass ``progress=False`` to ``fit``);
- any exception in the work, ``KeyboardInterrupt`` and ``SystemExit`` included,
  ends the run with the error in the status line (HTML-escaped); the status
  never says "running..." once the thread has ended;
- torch's thread count is process-wide, so it is decided once, on the main
  thread, when the Runner is built (``threads=n``), never in a worker thread
  (two runners setting and restoring it from their threads would race).

Reuse it with your own work function; it gets a :class:`RunContext` and should
stop soon after ``ctx.stopped()`` turns True (``ctx.callback`` does that inside
``fit``)::

    live = LivePlot({"loss": ["loss"], "sharpness": ["sharpness"]})
    lr = lr_slider(0.05)

    def work(ctx):
        live.clear()
        live.reference("sharpness", 2 / ctx.params["lr"], "2/lr")
        return fit(model(), ds, lr=ctx.params["lr"], steps=500, progress=False,
                   callbacks=[live, my_sharpness_callback, ctx.callback])

    runner = Runner(work, {"lr": lr})
    widgets.VBox([lr, runner.widget, live.widget])
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets

from labkit.history import Callback, StepInfo

__all__ = ["RunContext", "Runner", "RunnerPanel", "set_torch_threads"]


class _StopCallback(Callback):
    """Stops ``fit`` when the run is cancelled; reports progress in the status line (at most 2x/s)."""

    def __init__(self, ctx: RunContext):
        self.ctx, self.last = ctx, 0.0

    def on_step(self, info: StepInfo) -> bool:
        now = time.monotonic()
        if now - self.last > 0.5:
            self.last = now
            loss = info.loss if isinstance(info.loss, float) else float(info.loss.nanmean())
            self.ctx.status(f"running: step {info.step}, loss {loss:.4g}")
        return self.ctx.stopped()


@dataclass
class RunContext:
    """What a work function receives: the control values at start and the stop signal."""

    params: dict[str, Any]
    stop_event: threading.Event
    run_id: int
    #: what started the run: "button" (Run pressed), "change" (a control moved mid-run) or "code"
    reason: str = "code"
    _status: Callable[[str], None] = field(repr=False, default=lambda _msg: None)
    #: set by the work to add a word to the final status line ("done in 1.2 s; <note>")
    note: str = ""
    #: set by the work when the run ended badly although nothing raised (e.g. "diverged"): replaces "done"
    outcome: str = ""

    def stopped(self) -> bool:
        """True once Stop was pressed or a newer run was requested: return soon."""
        return self.stop_event.is_set()

    def status(self, message: str) -> None:
        """Show ``message`` in the status line (ignored once a newer run has started)."""
        self._status(message)

    @property
    def callback(self) -> Callback:
        """A ``fit`` callback that stops training when this run is cancelled (put it last)."""
        return _StopCallback(self)


@dataclass
class _Run:
    run_id: int
    thread: threading.Thread
    stop_event: threading.Event


class Runner:
    """Run ``work(ctx)`` in a background thread, with Run / Stop buttons and a status line.

    ``controls`` maps parameter names to widgets; their values form
    ``ctx.params``. With ``restart_on_change`` (default) changing a control
    during a run cancels it and starts a new run with the new values. The last
    finished run's return value is ``result`` and its exception ``error``.
    ``threads=n`` sets torch's (process-wide) thread count to ``n`` now, on the
    calling thread; ``None`` (default) leaves it as it is.
    """

    def __init__(
        self,
        work: Callable[[RunContext], Any],
        controls: Mapping[str, widgets.ValueWidget] | None = None,
        *,
        restart_on_change: bool = True,
        threads: int | None = None,
        run_label: str = "Run",
    ):
        if not callable(work):
            raise TypeError(f"work must be a function work(ctx), got {work!r}")
        if controls is not None and not isinstance(controls, Mapping):
            raise TypeError(f"controls must be a dict of name -> widget, got {type(controls).__name__}")
        for name, c in dict(controls or {}).items():
            if not isinstance(name, str) or not (hasattr(c, "value") and hasattr(c, "observe")):
                raise TypeError(f"controls[{name!r}] must be an ipywidgets control (with .value), got {c!r}")
        if not isinstance(restart_on_change, bool):
            raise TypeError(f"restart_on_change must be True or False, got {restart_on_change!r}")
        if threads is not None:
            set_torch_threads(threads)
        self.work = work
        self.controls = dict(controls or {})
        self.restart_on_change = restart_on_change
        self.threads = threads
        self.run_label = str(run_label)
        self.result: Any = None
        self.error: BaseException | None = None
        self.runs_started = 0
        self._lock = threading.RLock()
        self._current: _Run | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.run_button = widgets.Button(description=self.run_label, icon="play", button_style="success",
                                         layout={"width": "100px"})
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger", disabled=True,
                                          layout={"width": "100px"})
        self.status_line = widgets.HTML("press <b>Run</b>")
        self.run_button.on_click(lambda _b: self.start("button"))
        self.stop_button.on_click(lambda _b: self.stop(wait=False))
        for c in self.controls.values():
            c.observe(self._control_changed, names="value")
        self.widget = widgets.HBox([self.run_button, self.stop_button, self.status_line])

    # ------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """True while a run is active (including one waiting for its predecessor to stop)."""
        return self._current is not None

    def params(self) -> dict[str, Any]:
        """The current control values."""
        return {name: c.value for name, c in self.controls.items()}

    # ------------------------------------------------------------ actions

    def start(self, reason: str = "code", work: Callable[[RunContext], Any] | None = None) -> int:
        """Start a run with the current control values (cancelling the running one); return its id.

        ``reason`` reaches the work as ``ctx.reason``; ``work`` replaces the Runner's own work function for
        this run only (one panel, several jobs, one thread at a time).
        """
        if work is not None and not callable(work):
            raise TypeError(f"work must be a function work(ctx), got {work!r}")
        with self._lock:
            previous = self._current
            if previous is not None:
                previous.stop_event.set()
            self.runs_started += 1
            run_id = self.runs_started
            event = threading.Event()
            thread = threading.Thread(target=self._main, name=f"labkit-run-{run_id}", daemon=True,
                                      args=(run_id, self.params(), event, previous, reason, work or self.work))
            self._current = _Run(run_id, thread, event)
            self._idle.clear()
            self.run_button.description = "Restart" if self.run_label == "Run" else f"Re{self.run_label.lower()}"
            self.stop_button.disabled = False
            thread.start()
        return run_id

    def stop(self, wait: bool = True, timeout: float | None = 30.0) -> bool:
        """Ask the running work to stop; with ``wait``, block until it has. True when idle."""
        with self._lock:
            if self._current is not None:
                self._current.stop_event.set()
                self._set_status(self._current.run_id, "stopping...")
        return self.wait(timeout, raise_errors=False) if wait else not self.running

    def wait(self, timeout: float | None = None, raise_errors: bool = True) -> bool:
        """Block until no run is active (True) or ``timeout`` seconds pass (False).

        With ``raise_errors`` an exception raised by the work is re-raised here,
        in the notebook's thread, where it is visible.
        """
        done = self._idle.wait(timeout)
        if done and raise_errors and self.error is not None:
            err, self.error = self.error, None
            raise err
        return done

    # ------------------------------------------------------------ internals

    def _control_changed(self, change: dict[str, Any]) -> None:
        if self.restart_on_change and self.running:
            self.start("change")
        elif not self.running and self.result is not None:  # idle: the figure shows a run with other values
            self.status_line.value = (f"controls changed: the figure still shows the last run; press "
                                      f"<b>{self.run_label}</b> to run with the new values")

    def _set_status(self, run_id: int, message: str) -> None:
        with self._lock:
            if self._current is not None and self._current.run_id == run_id:
                self.status_line.value = message

    def _main(self, run_id: int, params: dict[str, Any], event: threading.Event, previous: _Run | None,
              reason: str, work: Callable[[RunContext], Any]) -> None:
        final = "ended"
        try:
            if previous is not None:
                previous.thread.join()  # never two runs at once: wait for the cancelled one to finish
            if event.is_set():
                final = "skipped: a newer run was requested"
                return  # superseded before it began
            self._set_status(run_id, "running...")
            start = time.perf_counter()
            ctx = RunContext(params, event, run_id, reason, lambda msg: self._set_status(run_id, msg))
            result = work(ctx)
            with self._lock:
                self.result, self.error = result, None
            took = f"{time.perf_counter() - start:.1f} s"
            outcome = f"<span style='color:#B2182B'>{ctx.outcome}</span> after" if ctx.outcome else "done in"
            final = (f"stopped after {took}" if event.is_set() else f"{outcome} {took}") + (
                f"; {ctx.note}" if ctx.note else "")
        except BaseException as err:  # KeyboardInterrupt and SystemExit too: shown here, re-raised by wait()
            with self._lock:
                self.error = err
            text = html.escape(f"{type(err).__name__}: {err}")
            final = f"<span style='color:#B2182B'>error: {text}</span>"
        finally:
            with self._lock:
                if self._current is not None and self._current.run_id == run_id:
                    self.status_line.value = final  # the status always ends; never "running..." after the thread
                    self._current = None
                    self.run_button.description = self.run_label
                    self.stop_button.disabled = True
                    self._idle.set()


def set_torch_threads(threads: int) -> None:
    """Set torch's thread count (process-wide) from the main thread; refuse from any other thread."""
    import torch

    from labkit import _checks

    _checks.positive("threads", threads, integer=True)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("threads= must be decided on the main thread (torch's thread count is process-wide); "
                           "build the Runner in a notebook cell, not in a worker thread")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(int(threads))


class RunnerPanel:
    """What every panel built around a :class:`Runner` shares: Run from code, and its display in a notebook.

    A subclass sets ``runner`` and ``widget`` and keeps its last run's result in ``history``.
    """

    runner: Runner
    widget: Any
    history: Any

    def run(self, wait: bool = False, timeout: float | None = None) -> Any:
        """Press Run from code; with ``wait``, block until done and return the History (errors re-raised)."""
        self.runner.start()
        if wait:
            if not self.runner.wait(timeout):
                raise TimeoutError(f"the run did not finish within {timeout} s")
            return self.history
        return None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)
