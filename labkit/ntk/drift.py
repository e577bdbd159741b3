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
from labkit.history import StepInfo
from labkit.machine import MAX_MEMORY
from labkit.ntk.empirical import METHODS, choose_method, empirical
from labkit.tracking import Every

__all__ = ["KernelTracker", "kernel_distance", "relative_change"]


def _check_pair(k1: Any, k2: Any) -> tuple[torch.Tensor, torch.Tensor]:
    for name, k in (("k1", k1), ("k2", k2)):
        if not isinstance(k, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(k).__name__}")
    if k1.shape != k2.shape:
        raise ValueError(f"k1 and k2 must have the same shape, got {tuple(k1.shape)} and {tuple(k2.shape)}")
    return k1, k2.to(k1.dtype)


def kernel_distance(k1: torch.Tensor, k2: torch.Tensor) -> float:
    """``1 - <k1, k2>_F / (|k1|_F |k2|_F)``: 0 for kernels equal up to scale (Fort et al. 2020).

    >>> k = torch.eye(2, dtype=torch.float64)
    >>> kernel_distance(k, 3 * k), kernel_distance(k, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    (0.0, 1.0)
    """
    k1, k2 = _check_pair(k1, k2)
    denom = k1.norm() * k2.norm()
    if denom == 0:
        raise ValueError("kernel_distance is undefined for an all-zero kernel")
    return float(1.0 - (k1 * k2).sum() / denom)


def relative_change(k: torch.Tensor, k0: torch.Tensor) -> float:
    """``|k - k0|_F / |k0|_F``: how much the kernel moved, scale included."""
    k, k0 = _check_pair(k, k0)
    return float((k - k0).norm() / k0.norm())


class KernelTracker(Every):
    """A :func:`labkit.train.fit` callback recording the empirical NTK on ``x`` every ``every`` steps.

    Records ``steps``, ``change`` (relative Frobenius change from the first kernel),
    ``distance`` (:func:`kernel_distance` to the first kernel) and ``eigenvalues`` (top ``k``
    of the trace kernel), plus ``initial`` and ``final`` kernels. Pass a
    :class:`labkit.viz.LivePlot` as ``live`` to stream ``kernel_change`` and
    ``kernel_distance`` into it (or only the change, as series ``name``, when ``name`` is given).
    The kernel after ``fit``'s last update is measured too. ``method="auto"`` is resolved once,
    at the first measurement (the sizes do not change during training).
    """

    def __init__(self, x: torch.Tensor, every: int = 10, *, k: int = 5, method: str = "auto", live: Any = None,
                 name: str | None = None, max_memory: int = MAX_MEMORY):
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError(f"x must be a tensor of inputs (n, features...), got {getattr(x, 'shape', x)!r}")
        super().__init__(every, live=live, final=True)
        self.k = _checks.positive("k", k, integer=True)
        self.method = _checks.choice("method", method, METHODS)
        self.max_memory = _checks.positive("max_memory", max_memory, integer=True)
        self.x, self.kernel_name = x, name
        self.initial: torch.Tensor | None = None
        self.final: torch.Tensor | None = None
        self._method: str | None = None

    def measure(self, info: StepInfo) -> dict[str, Any]:
        if self._method is None:
            self._method = choose_method(info.model, self.x) if self.method == "auto" else self.method
        kern = empirical(info.model, self.x, method=self._method, max_memory=self.max_memory).detach()
        if self.initial is None:
            self.initial = kern
        self.final = kern
        return {"change": relative_change(kern, self.initial), "distance": kernel_distance(kern, self.initial),
                "eigenvalues": torch.linalg.eigvalsh(kern).flip(0)[: self.k]}

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        if self.kernel_name is not None:
            return {self.kernel_name: record["change"]}
        return {"kernel_change": record["change"], "kernel_distance": record["distance"]}

    change = property(lambda self: self.series("change"), doc="|K - K0| / |K0| at each record.")
    distance = property(lambda self: self.series("distance"), doc="1 - cos(K, K0) at each record.")
    eigenvalues = property(lambda self: self.series("eigenvalues"), doc="Top k eigenvalues at each record.")

    def figure(self, title: str = "Kernel change during training") -> Any:
        """Relative change and distance of the kernel against the step (plotly)."""
        from labkit.viz import theme

        fig = theme.figure(title, "step", "relative to the initial kernel")
        fig.add_scatter(x=self.steps, y=self.change, name="|K - K0| / |K0|", mode="lines+markers")
        fig.add_scatter(x=self.steps, y=self.distance, name="1 - cos(K, K0)", mode="lines+markers")
        return fig
