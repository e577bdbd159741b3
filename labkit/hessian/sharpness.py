"""Sharpness during training: the top Hessian eigenvalue(s) every few steps (a :class:`labkit.tracking.Every`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labkit import _checks, linalg
from labkit.curvature import HessianOperator
from labkit.data import as_dataset
from labkit.hessian.probes import stability_threshold
from labkit.tracking import Every
from labkit.train import StepInfo

__all__ = ["Sharpness"]


class Sharpness(Every):
    """A :func:`labkit.train.fit` callback recording the top Hessian eigenvalue(s) every ``every`` steps.

    Each measurement warm-starts Lanczos from the previous top eigenvectors, so it
    typically costs a few tens of HVPs. ``data`` defaults to the training data
    (``max_examples`` keeps the first rows only, as Cohen et al. used 5,000);
    ``live`` is an optional ``labkit.viz.LivePlot`` fed ``sharpness`` and ``threshold``.
    Records ``steps``, ``values`` (list of ``k`` floats), ``lrs``, ``thresholds``, ``n_matvec``.
    """

    def __init__(self, every: int = 10, k: int = 1, *, data: Any = None, max_examples: int | None = None,
                 tol: float = 1e-4, live: Any = None):
        super().__init__(every, live=live)
        self.k = _checks.positive("k", k, integer=True)
        self.data, self.max_examples, self.tol = data, max_examples, tol
        self._vectors: torch.Tensor | None = None

    def measure(self, info: StepInfo) -> dict[str, Any]:
        ds = as_dataset(self.data if self.data is not None else info.data)
        if self.max_examples is not None:
            ds = ds[: self.max_examples]
        res = linalg.top_eigenvalues(HessianOperator(info.model, info.loss_fn, ds), self.k, tol=self.tol,
                                     v0=self._vectors, dense=False)
        self._vectors = res.vectors
        values = [float(v) for v in res.values]
        return {"sharpness": values[0], "values": values, "lr": info.lr,
                "threshold": stability_threshold(info.lr, info.optimizer), "n_matvec": res.n_matvec}

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        return {"sharpness": record["sharpness"], "threshold": record["threshold"]}

    values = property(lambda self: self.series("values"), doc="The ``k`` top eigenvalues at each record.")
    lrs = property(lambda self: self.series("lr"), doc="The learning rate at each record.")
    thresholds = property(lambda self: self.series("threshold"), doc="The edge-of-stability threshold.")
    n_matvec = property(lambda self: self.series("n_matvec"), doc="HVPs each measurement took.")

    @property
    def top(self) -> np.ndarray:
        """lambda_max at each recorded step."""
        return np.array(self.series("sharpness"))

    def figure(self) -> Any:
        """lambda_max against step, with the edge-of-stability threshold."""
        from labkit.viz import theme

        fig = theme.figure("Sharpness during training", "step", "top Hessian eigenvalue")
        fig.add_scatter(x=self.steps, y=self.top, mode="lines+markers", name="lambda_max")
        fig.add_scatter(x=self.steps, y=self.thresholds, mode="lines", name="2/lr (EoS)",
                        line={"dash": "dash", "color": theme.REFERENCE})
        return fig
