"""The regime map: a width x learning-rate sweep, each cell labelled by the numbers that decide its training regime.

Every width is one :func:`labkit.train.fit_many` call over the learning rates (a population per width), with the
population probes measuring every member at once: the top Hessian eigenvalue at initialisation
(:class:`~labkit.population.probes.Sharpness`) and the empirical NTK (traced) before and after training
(:func:`~labkit.population.probes.ntk`). The label of a cell, in this order:

- **divergent**: the loss became non-finite, or ended no lower than it started;
- **catapult**: ``lr x lambda_0 > 2`` (the linear model's limit) and it converged anyway (Lewkowycz et al. 2020);
- **lazy**: the kernel moved by less than ``lazy_below`` (relative Frobenius change; Jacot et al. 2018, Chizat,
  Oyallon & Bach 2019);
- **feature-learning**: the kernel moved more.

Each cell keeps the numbers behind its label (``lr_sharpness``, ``kernel_change``, ``peak_loss``, ``final_loss``,
``diverged``); :meth:`RegimeMap.figure` draws the labels with those numbers in the hover.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labkit import _checks, _io
from labkit.history import Callback, StepInfo
from labkit.population import probes
from labkit.population.fit import fit_many

__all__ = ["LABELS", "RegimeMap", "regime_map", "regime_maps"]

#: The labels, in the order they are decided.
LABELS = ("divergent", "catapult", "lazy", "feature-learning")
_STABLE = 2.0  # gradient descent on the quadratic model is stable iff lr x lambda_max < 2


@dataclass
class RegimeMap:
    """``labels[i][j]`` for width ``widths[i]`` and learning rate ``lrs[j]``; ``numbers[i][j]`` the measurements
    that decided it (``lr_sharpness`` = lr x lambda_max at init, ``kernel_change``, ``initial_loss``, ``peak_loss``
    (the highest loss of the run: a catapult's spike), ``final_loss``, ``diverged``)."""

    widths: list[int]
    lrs: list[float]
    labels: list[list[str]]
    numbers: list[list[dict[str, Any]]] = field(repr=False)
    lazy_below: float = 0.1

    def figure(self) -> Any:
        """A heatmap of the labels (one colour each; rows: widths, columns: learning rates), the numbers that
        decided each cell in its hover."""
        from labkit.viz import theme

        colours = [theme.DIVERGED, theme.COLORS[4], theme.COLORS[0], theme.COLORS[2]]  # in LABELS' order
        n = len(LABELS)
        scale = [[(k + e) / n, c] for k, c in enumerate(colours) for e in (0, 1)]
        z = [[LABELS.index(lab) for lab in row] for row in self.labels]
        hover = [[f"{lab}<br>lr x lambda_0 = {c['lr_sharpness']:.3g}<br>kernel change = {c['kernel_change']:.3g}"
                  f"<br>loss: {c['initial_loss']:.3g} -> peak {c.get('peak_loss', math.nan):.3g}"
                  f" -> {c['final_loss']:.3g}" for lab, c in zip(labs, cells)]
                 for labs, cells in zip(self.labels, self.numbers)]
        fig = theme.figure(f"Regime map (lazy: kernel change < {self.lazy_below:g}; catapult: lr x lambda_0 > 2)",
                           "learning rate", "width")
        fig.add_heatmap(x=[f"{v:g}" for v in self.lrs], y=[str(w) for w in self.widths], z=z, zmin=-0.5,
                        zmax=n - 0.5, colorscale=scale, text=hover, hoverinfo="text",
                        colorbar={"tickvals": list(range(n)), "ticktext": list(LABELS)}, xgap=2, ygap=2)
        fig.update_xaxes(type="category")
        fig.update_yaxes(type="category")
        return fig

    def to_dict(self) -> dict[str, Any]:
        """Plain lists; valid JSON (non-finite numbers become None)."""
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {"widths": self.widths, "lrs": self.lrs, "labels": self.labels, "lazy_below": self.lazy_below,
                "numbers": [[{k: clean(v) for k, v in c.items()} for c in row] for row in self.numbers]}

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (``.json`` appended if missing), atomically; returns the path."""
        return _io.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RegimeMap:
        """A map read back from :meth:`save` (JSON ``null`` numbers come back as NaN)."""
        d = _io.read_json(path)
        numbers = [[{k: math.nan if v is None else v for k, v in c.items()} for c in row] for row in d["numbers"]]
        return cls(list(d["widths"]), list(d["lrs"]), [list(r) for r in d["labels"]], numbers, d["lazy_below"])


class _Ends(Callback):
    """The stacked parameters at the first and the last step a fit_many callback sees (before its update)."""

    def __init__(self) -> None:
        self.first: dict[str, torch.Tensor] | None = None
        self.last: dict[str, torch.Tensor] | None = None

    def on_step(self, info: StepInfo) -> None:
        params = {k: v.detach().clone() for k, v in info.params.items()}
        if self.first is None:
            self.first = params
        self.last = params


def label(diverged: bool, lr_sharpness: float, kernel_change: float, lazy_below: float,
          loss_ratio: float = 0.0) -> str:
    """The regime of one cell from its numbers (see the module docstring); ``loss_ratio`` = final / initial loss."""
    if diverged or not loss_ratio < 1 or not math.isfinite(kernel_change):
        return "divergent"
    if lr_sharpness > _STABLE:
        return "catapult"
    return "lazy" if kernel_change < lazy_below else "feature-learning"


def _peak(losses: Sequence[float]) -> float:
    """The highest loss of a run; inf once any loss is non-finite (a diverged run peaks without bound)."""
    return max((float(v) if math.isfinite(v) else math.inf) for v in losses)


def regime_map(make_model: Callable[[int, int], nn.Module], data: Any, widths: Sequence[int], lrs: Sequence[float],
               *, loss: Any = "auto", steps: int = 200, seed: int = 0, lazy_below: float = 0.1,
               progress: bool = False) -> RegimeMap:
    """Train ``make_model(width, seed)`` at every ``lr`` for every width (full batch, SGD) and label each cell.

    One ``fit_many`` per width; the kernel is the traced empirical NTK on the training inputs, before the first
    and before the last update; ``lazy_below`` the relative kernel change under which a cell is lazy.
    """
    return regime_maps(make_model, data, widths, lrs, seeds=[seed], loss=loss, steps=steps, lazy_below=lazy_below,
                       progress=progress)[0]


def regime_maps(make_model: Callable[[int, int], nn.Module], data: Any, widths: Sequence[int], lrs: Sequence[float],
                *, seeds: Sequence[int], loss: Any = "auto", steps: int = 200, lazy_below: float = 0.1,
                progress: bool = False) -> list[RegimeMap]:
    """:func:`regime_map` for every seed in ``seeds`` (one map each, same data): still one ``fit_many`` per width,
    its population every (seed, lr) pair, so a seed spread costs no extra Python loop."""
    widths, lrs, seeds = [int(w) for w in widths], [float(v) for v in lrs], [int(s) for s in seeds]
    if not widths or not lrs or not seeds:
        raise ValueError(f"widths, lrs and seeds must be non-empty, got widths={widths!r}, lrs={lrs!r}, "
                         f"seeds={seeds!r}")
    _checks.positive("lazy_below", lazy_below)
    labels: list[list[list[str]]] = [[] for _ in seeds]
    numbers: list[list[list[dict[str, Any]]]] = [[] for _ in seeds]
    pairs = [(s, lr) for s in seeds for lr in lrs]
    for width in widths:
        def make(s: int, width: int = width) -> nn.Module:
            return make_model(width, s)

        sharp, ends = probes.Sharpness(make, every=steps + 1), _Ends()
        hists = fit_many(make, data, hparams={"lr": [lr for _, lr in pairs], "seed": [s for s, _ in pairs]},
                         loss=loss, steps=steps, callbacks=[sharp, ends], progress=progress, engine="vmap")
        base = make(seeds[0])
        k0 = probes.ntk(probes.Members(base, ends.first, loss, data))
        k1 = probes.ntk(probes.Members(base, ends.last, loss, data))
        change = probes.kernel_change(k1, k0).tolist()
        lam0 = sharp.results[0].top.tolist()
        for i in range(len(seeds)):
            row_l, row_n = [], []
            for j, lr in enumerate(lrs):
                m, h = i * len(lrs) + j, hists[i * len(lrs) + j]
                cell = {"lr_sharpness": lr * lam0[m], "kernel_change": change[m], "initial_loss": h.loss[0],
                        "peak_loss": _peak(h.loss), "final_loss": h.final_loss, "diverged": h.diverged}
                ratio = h.final_loss / h.loss[0] if h.loss[0] > 0 else math.nan
                row_l.append(label(h.diverged, cell["lr_sharpness"], change[m], lazy_below, ratio))
                row_n.append(cell)
            labels[i].append(row_l)
            numbers[i].append(row_n)
    return [RegimeMap(widths, lrs, lab, num, lazy_below) for lab, num in zip(labels, numbers)]
