"""How far the empirical NTK moves during training: lazy (kernel) vs feature-learning regimes.

In the NTK parameterisation the kernel's relative change shrinks like ``1/sqrt(width)``
(Jacot et al. 2018; Lee et al. 2019), so wide networks train like their linearisation; in
the standard/mean-field regimes, or at large learning rates, the kernel moves and aligns
with the task (Fort et al. 2020, "Deep learning versus kernel learning: an empirical study
of loss landscape geometry and the time evolution of the Neural Tangent Kernel", NeurIPS,
arXiv:2010.15110).
"""

from __future__ import annotations

from typing import Any

import torch

from labkit import _checks
from labkit.ntk.empirical import METHODS, empirical
from labkit.train import Callback, History, StepInfo

__all__ = ["KernelTracker", "kernel_distance", "relative_change"]


def _check_pair(k1: Any, k2: Any) -> tuple[torch.Tensor, torch.Tensor]:
    for name, k in (("k1", k1), ("k2", k2)):
        if not isinstance(k, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(k).__name__}")
    if k1.shape != k2.shape:
        raise ValueError(f"k1 and k2 must have the same shape, got {tuple(k1.shape)} and {tuple(k2.shape)}")
    return k1, k2.to(k1.dtype)


def kernel_distance(k1: torch.Tensor, k2: torch.Tensor) -> float:
    """``1 - <k1, k2>_F / (|k1|_F |k2|_F)``: 0 for kernels equal up to scale (Fort et al. 2020)."""
    k1, k2 = _check_pair(k1, k2)
    denom = k1.norm() * k2.norm()
    if denom == 0:
        raise ValueError("kernel_distance is undefined for an all-zero kernel")
    return float(1.0 - (k1 * k2).sum() / denom)


def relative_change(k: torch.Tensor, k0: torch.Tensor) -> float:
    """``|k - k0|_F / |k0|_F``: how much the kernel moved, scale included."""
    k, k0 = _check_pair(k, k0)
    return float((k - k0).norm() / k0.norm())


class KernelTracker(Callback):
    """A :func:`labkit.train.fit` callback recording the empirical NTK on ``x`` every ``every`` steps.

    Records ``steps``, ``change`` (relative Frobenius change from the first kernel),
    ``distance`` (:func:`kernel_distance` to the first kernel) and ``eigenvalues`` (top ``k``
    of the trace kernel), plus ``initial`` and ``final`` kernels. Pass a
    :class:`labkit.viz.LivePlot` as ``live`` to stream ``kernel_change`` and
    ``kernel_distance`` into it (or only the change, as series ``name``, when ``name`` is given).
    The kernel after ``fit``'s last update is measured in ``on_end``.
    """

    def __init__(self, x: torch.Tensor, every: int = 10, *, k: int = 5, method: str = "auto", live: Any = None,
                 name: str | None = None):
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError(f"x must be a tensor of inputs (n, features...), got {getattr(x, 'shape', x)!r}")
        _checks.positive("every", every, integer=True)
        _checks.positive("k", k, integer=True)
        _checks.choice("method", method, METHODS)
        self.x, self.every, self.k, self.method, self.live, self.name = x, every, k, method, live, name
        self.steps: list[int] = []
        self.change: list[float] = []
        self.distance: list[float] = []
        self.eigenvalues: list[torch.Tensor] = []
        self.initial: torch.Tensor | None = None
        self.final: torch.Tensor | None = None
        self._model: Any = None
        self._last = -1

    def _record(self, step: int, model: Any) -> None:
        kern = empirical(model, self.x, method=self.method).detach()
        if self.initial is None:
            self.initial = kern
        self.final = kern
        self.steps.append(step)
        self.change.append(relative_change(kern, self.initial))
        self.distance.append(kernel_distance(kern, self.initial))
        self.eigenvalues.append(torch.linalg.eigvalsh(kern).flip(0)[: self.k])
        self._last = step
        if self.live is not None and self.name is not None:
            self.live.append(step, **{self.name: self.change[-1]})
        elif self.live is not None:
            self.live.append(step, kernel_change=self.change[-1], kernel_distance=self.distance[-1])

    def on_start(self, info: StepInfo) -> None:
        if info.model is None:
            raise TypeError("KernelTracker follows one network: use it with labkit.train.fit, not fit_many")
        self._model = info.model

    def on_step(self, info: StepInfo) -> bool | None:
        if info.step % self.every == 0:
            self._record(info.step, info.model)
        return None

    def on_end(self, history: History | list[History]) -> None:
        steps = len(history.loss) if isinstance(history, History) else None
        if steps is not None and self._model is not None and steps > self._last and not history.diverged:
            self._record(steps, self._model)

    def figure(self, title: str = "Kernel change during training") -> Any:
        """Relative change and distance of the kernel against the step (plotly)."""
        from labkit.viz import theme

        fig = theme.figure(title, "step", "relative to the initial kernel")
        fig.add_scatter(x=self.steps, y=self.change, name="|K - K0| / |K0|", mode="lines+markers")
        fig.add_scatter(x=self.steps, y=self.distance, name="1 - cos(K, K0)", mode="lines+markers")
        return fig
