"""``BatchSizeAdvisor``: a live panel that says, while a model trains, how large a batch and a learning rate it can use.

Every ``every`` steps the gradient instruments (:class:`labkit.batchsize.GradientInstruments`, curvature on)
measure, on a batch of ``probe_batch`` training examples:

- ``B_simple = tr(S) / |g_B|^2`` and ``B_noise = tr(H S) / (g_B^T H g_B)`` (McCandlish et al. 2018); the
  predicted critical batch size is ``B_noise`` (their eq. 2.8: the batch at which a step gains half of what a
  noiseless step would);
- ``lambda_max``, and from it the largest stable learning rate: ``threshold / lambda_max`` with the optimiser's
  threshold on a quadratic (:func:`labkit.edge.threshold`: ``2`` for SGD, ``2 + 2 beta`` for heavy ball).

The **Check** button (or :meth:`BatchSizeAdvisor.check`) tests the prediction: a Shallue et al. steps-to-target
sweep on the same problem (:func:`labkit.batchsize.steps_to_target`, vectorised, ``executor=`` for workers)
fits McCandlish's ``B_crit``, which is compared with ``B_noise`` measured when the live run's loss was nearest the
sweep's target (they found agreement within an order of magnitude).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from torch import nn

from labkit import _checks
from labkit.batchsize import GradientInstruments, steps_to_target
from labkit.data import as_dataset
from labkit.train import History, fit
from labkit.viz.live import LivePlot
from labkit.widgets import controls as ctl
from labkit.widgets.runner import RunContext, Runner, RunnerPanel

__all__ = ["BatchSizeAdvisor", "batch_size_advisor"]

OPTIMIZERS = ("sgd", "momentum")  # Adam's threshold is on the preconditioned sharpness (labkit.edge), not lambda_max


class _Advice(GradientInstruments):
    """The instruments, streaming what the advisor shows."""

    def __init__(self, advisor: BatchSizeAdvisor, lr: float, batch_size: int, **kw: Any):
        super().__init__(advisor.every, batch_size=advisor.probe_batch, curvature=True, seed=advisor.seed,
                         live=advisor.live, **kw)
        self.advisor, self.lr, self.train_batch = advisor, lr, batch_size

    def measure(self, info: Any) -> dict[str, Any]:
        record = super().measure(info)
        record["max_lr"] = self.advisor.threshold / record["lambda_max"] if record["lambda_max"] > 0 else math.inf
        self.advisor.summary.value = self.advisor.describe(record, self.lr, self.train_batch)
        return record

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        out = {"B_simple": record["b_simple"], "B_noise (predicted B_crit)": record["b_noise"],
               "batch size": float(self.train_batch), "largest stable lr": record["max_lr"], "lr": self.lr}
        return {k: v for k, v in out.items() if math.isfinite(v) and v > 0}


class BatchSizeAdvisor(RunnerPanel):
    """The advisor panel (see the module docstring): controls, Run / Stop, a live figure, a summary line and Check.

    ``make_model(seed)`` builds the network, ``data`` is the training set. ``every`` and ``probe_batch`` set how
    often and on how many examples the instruments measure; ``target`` (a training loss), ``sweep_batches`` and
    ``sweep_lrs`` define the check's steps-to-target sweep (``executor`` runs its batch sizes on workers).
    ``records``, ``history``, ``model_`` (the trained network) and ``last_check`` hold the last run and check.

    The instruments measure a probe batch: its ``|g_B|^2`` carries the noise ``tr(Sigma) / probe_batch``, so
    ``B_simple`` and ``B_noise`` measured there stay below about ``probe_batch`` (a lower bound when the true
    noise scale is larger; ``probe_batch=None`` measures the whole training set, exactly but slower).
    """

    def __init__(self, make_model: Callable[[int], nn.Module], data: Any, *, lr: float = 0.1, batch_size: int = 16,
                 steps: int = 500, optimizer: str = "sgd", every: int = 25, probe_batch: int | None = 256,
                 target: float | None = None, sweep_batches: Sequence[int] = (2, 8, 32, 128, 512),
                 sweep_lrs: Sequence[float] | None = None, sweep_steps: int = 2000, executor: Any = None,
                 seed: int = 0, backend: str = "auto"):
        if not callable(make_model):
            raise TypeError(f"make_model must be a function seed -> nn.Module, got {make_model!r}")
        self.data = as_dataset(data)
        _checks.choice("optimizer", optimizer, OPTIMIZERS)
        _checks.positive("every", every, integer=True)
        self.make_model, self.optimizer, self.every, self.seed = make_model, optimizer, every, seed
        self.probe_batch = None if probe_batch is None else min(probe_batch, len(self.data))
        from labkit.edge import threshold

        self.threshold = threshold(1.0, optimizer)  # sharpness threshold x lr: 2 for SGD, 3.8 for momentum 0.9
        self.target, self.executor = target, executor
        self.sweep_batches = [b for b in sweep_batches if b <= len(self.data)]
        self.sweep_lrs = list(np.geomspace(0.02, 0.64, 6)) if sweep_lrs is None else list(sweep_lrs)
        self.sweep_steps = sweep_steps
        self.controls = {"lr": ctl.lr_slider(lr, min=1e-3, max=3.0),
                         "batch_size": ctl.batch_size_slider(batch_size, min=1, max=min(1024, len(self.data))),
                         "steps": ctl.steps_slider(steps, min=min(50, steps), step=10)}
        backend = "output" if backend == "auto" else backend
        self.live = LivePlot({"loss": ["loss", "eval loss"],
                              "batch sizes": ["B_simple", "B_noise (predicted B_crit)", "batch size"],
                              "learning rate": ["largest stable lr", "lr"]},
                             log_y=True, backend=backend, title="Batch-size advisor")
        self.summary = widgets.HTML("press <b>Run</b>: the advice appears after the first measurement")
        self.check_button = widgets.Button(description="Check", icon="check", tooltip="steps-to-target sweep")
        self.check_line = widgets.HTML("")
        self.check_button.on_click(lambda _b: self._check_clicked())
        self.runner = Runner(self.train, self.controls)
        self.records: list[dict[str, Any]] = []
        self.history: History | None = None
        self.model_: nn.Module | None = None
        self.last_check: dict[str, Any] | None = None
        parts: list[widgets.Widget] = [widgets.HBox(list(self.controls.values())), self.runner.widget, self.summary]
        if self.live.widget is not None:
            parts.append(self.live.widget)
        parts.append(widgets.HBox([self.check_button, self.check_line]))
        self.widget = widgets.VBox(parts)

    # ------------------------------------------------------------ the live run

    def describe(self, record: dict[str, Any], lr: float, batch_size: int) -> str:
        """One HTML line of advice from an instruments record."""
        b_noise, max_lr = record["b_noise"], record["max_lr"]
        batch_word = ("below" if batch_size < b_noise / 4 else "above" if batch_size > 4 * b_noise else "near")
        lr_word = "unstable: lower it" if lr > max_lr else "stable"
        return html.escape(
            f"loss {record['loss']:.3g} | B_simple {record['b_simple']:.3g}, B_noise {b_noise:.3g} (predicted "
            f"B_crit): batch {batch_size} is {batch_word} it | lambda_max {record['lambda_max']:.3g}, largest "
            f"stable lr {max_lr:.3g}: lr {lr:.3g} is {lr_word}")

    def train(self, ctx: RunContext) -> History:
        """One run (the Runner's work): ``fit`` with the instruments streaming into the figure and summary."""
        p = ctx.params
        bs = ctl.batch_size_value(p["batch_size"], len(self.data))
        self.live.clear()
        self.live.draw()
        advice = _Advice(self, p["lr"], bs or len(self.data))
        model = self.make_model(self.seed)
        hist = fit(model, self.data, optimizer=self.optimizer, lr=p["lr"], batch_size=bs,
                   steps=p["steps"], seed=self.seed, eval_every=max(1, self.every // 5), progress=False,
                   callbacks=[self.live, advice, ctx.callback])
        self.records, self.history, self.model_ = advice.records, hist, model
        return hist

    # ------------------------------------------------------------ the check

    def check(self, target: float | None = None, progress: bool = True) -> dict[str, Any]:
        """Compare the predicted ``B_crit`` (``B_noise`` where the last run's loss was nearest ``target``; default
        ``target``: 1.2 x the lowest loss the run measured) with the one a steps-to-target sweep fits. Returns
        ``predicted``, ``measured``, ``ratio``, the ``sweep`` and ``within_10x`` (McCandlish et al.'s
        order-of-magnitude agreement)."""
        if not self.records:
            raise ValueError("run the advisor first (press Run or call .run(wait=True)): there is no prediction yet")
        target = self.target if target is None else target
        if target is None:
            target = 1.2 * min(r["loss"] for r in self.records)  # a loss the live run reached
        _checks.positive("target", target)
        losses = np.array([r["loss"] for r in self.records])
        j = int(np.argmin(np.abs(np.log(np.maximum(losses, 1e-300)) - math.log(target))))
        predicted = self.records[j]["b_noise"]
        sweep = steps_to_target(self.make_model, self.data, batch_sizes=self.sweep_batches, target=target,
                                lrs=self.sweep_lrs, optimizer=self.optimizer, max_steps=self.sweep_steps,
                                eval_every=2, progress=progress, executor=self.executor)
        measured = sweep.tradeoff().b_crit
        ratio = predicted / measured
        self.last_check = {"predicted": predicted, "measured": measured, "ratio": ratio, "target": target,
                           "sweep": sweep, "within_10x": 0.1 <= ratio <= 10, "at_loss": float(losses[j])}
        return self.last_check

    def _check_clicked(self) -> None:
        self.check_line.value = "running the steps-to-target sweep..."
        try:
            c = self.check(progress=False)
        except Exception as err:  # shown, never raised into the page
            self.check_line.value = html.escape(f"check failed: {err}")
            return
        self.check_line.value = html.escape(
            f"target loss {c['target']:.3g}: predicted B_crit (B_noise at loss {c['at_loss']:.3g}) {c['predicted']:.3g}"
            f", measured by the sweep {c['measured']:.3g} (ratio {c['ratio']:.2g}; "
            f"{'within' if c['within_10x'] else 'outside'} McCandlish et al.'s order of magnitude)")


def batch_size_advisor(make_model: Callable[[int], nn.Module], data: Any, **kwargs: Any) -> BatchSizeAdvisor:
    """A ready advisor panel: ``advisor = batch_size_advisor(make_model, data, lr=0.1); advisor``."""
    return BatchSizeAdvisor(make_model, data, **kwargs)
