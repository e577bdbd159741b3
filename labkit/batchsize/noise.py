"""The gradient noise scale of McCandlish et al. (2018), exactly and from two batch sizes.

McCandlish, Kaplan, Amodei and the OpenAI Dota team (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162. With per-example gradients ``g_i``, the true
gradient ``G = mean_i g_i`` and their covariance ``Sigma``:

- ``B_simple = tr(Sigma) / |G|^2`` (the batch size at which gradient noise and signal
  are equal; the largest useful batch if the Hessian is a multiple of the identity);
- ``B_noise = tr(H Sigma) / (G^T H G)`` (the same with the Hessian ``H`` in place).

**Convention.** The dataset is the distribution: ``Sigma = (1/n) sum_i (g_i - G)(g_i - G)^T``
(divisor ``n``, not ``n - 1``), the covariance of the gradient of one example drawn
uniformly. Then ``tr(Sigma) = mean_i |g_i|^2 - |G|^2`` exactly, and a batch of ``B``
examples drawn *with* replacement has ``E |G_B|^2 = |G|^2 + tr(Sigma) / B``; drawn
*without* replacement (the default, as in training) ``1/B`` becomes the finite-population
factor ``c_B = (n - B) / (B (n - 1))``. The two-batch estimators below use the matching
``c_B``, so both are unbiased for exactly the quantities ``method="per_example"`` computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import grad, vmap

from labkit import _checks
from labkit.curvature import EmpiricalFisher, GradientCovariance, HessianOperator, trace_product
from labkit.data import Dataset
from labkit.history import StepInfo
from labkit.losses import Loss
from labkit.risk import Risk
from labkit.tracking import Every

__all__ = ["NoiseScale", "NoiseScaleTracker", "b_noise", "noise_scale"]

METHODS = ("per_example", "two_batch")


@dataclass(frozen=True)
class NoiseScale:
    """``b_simple = trace_cov / grad_sq_norm`` with the two parts and their standard errors.

    For ``method="per_example"`` the values are exact on the data (stderrs are 0).
    For ``"two_batch"`` each part is the mean of ``n_samples`` unbiased estimates and its
    stderr is their sample standard deviation over sqrt(n_samples); ``b_simple`` is the
    ratio of the means (not the mean of ratios) with a delta-method stderr.
    """

    b_simple: float
    trace_cov: float
    grad_sq_norm: float
    b_simple_stderr: float = 0.0
    trace_cov_stderr: float = 0.0
    grad_sq_norm_stderr: float = 0.0
    method: str = "per_example"
    n: int = 0
    batch_sizes: tuple[int, int] | None = None
    n_samples: int = 0


def _risk(model: nn.Module, loss: str | Loss | Callable, data: Any) -> Risk:
    risk = Risk(model, loss, data)
    if risk.num_examples < 2:
        raise ValueError(f"the noise scale of {risk.num_examples} example is undefined (the gradient covariance "
                         "needs at least 2 examples)")
    return risk


def _finite_population(n: int, b: int, replacement: bool) -> float:
    """``c_B`` in ``E|G_B|^2 = |G|^2 + c_B tr(Sigma)``."""
    return 1.0 / b if replacement else (n - b) / (b * (n - 1))


def _check_batch_sizes(batch_sizes: Any, n: int, replacement: bool) -> tuple[int, int]:
    if not isinstance(batch_sizes, Sequence) or len(batch_sizes) != 2:
        raise ValueError(f"batch_sizes must be a pair (small, big), got {batch_sizes!r}")
    small, big = batch_sizes
    _checks.positive("batch_sizes[0] (small)", small, integer=True)
    _checks.positive("batch_sizes[1] (big)", big, integer=True)
    if small >= big:
        raise ValueError(f"batch_sizes=(small, big) needs small < big, got small={small}, big={big}")
    if not replacement and big > n:
        raise ValueError(f"batch_sizes[1] (big)={big} is larger than the dataset ({n} examples); "
                         "use a smaller batch or replacement=True")
    return small, big


def _batch_sq_norms(risk: Risk, ds: Dataset, index: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """``|G_B|^2`` for each row of ``index`` (``(S, B)`` example indices): one vmapped gradient per batch."""

    def mean_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return risk.loss(risk.forward(p, x), y)

    batch_grad = vmap(grad(mean_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)
    g = batch_grad(risk.params, ds.inputs[index], ds.targets[index])  # {name: (S, *shape)}
    return risk.spec.flatten(g).square().sum(1)


def _draw(n: int, b: int, samples: int, replacement: bool, gen: torch.Generator) -> torch.Tensor:
    if replacement:
        return torch.randint(n, (samples, b), generator=gen)
    return torch.rand(samples, n, generator=gen).argsort(1)[:, :b]


def _mean_stderr(x: torch.Tensor) -> tuple[float, float]:
    s = x.numel()
    return float(x.mean()), float(x.std() / math.sqrt(s)) if s > 1 else math.inf


def noise_scale(
    model: nn.Module,
    loss: str | Loss | Callable = "auto",
    data: Any = None,
    *,
    method: str = "per_example",
    batch_sizes: tuple[int, int] | None = None,
    n_samples: int = 32,
    replacement: bool = False,
    seed: int = 0,
    chunk_size: int | None = None,
) -> NoiseScale:
    """The simple noise scale ``B_simple = tr(Sigma) / |G|^2`` of ``model`` on ``data``.

    ``method="per_example"``: exact, from ``|G|^2`` (one full-batch gradient) and
    ``tr(Sigma) = mean_i |g_i|^2 - |G|^2`` (per-example squared norms, see
    :func:`~labkit.batchsize.per_example_sq_norms`).

    ``method="two_batch"``: McCandlish et al.'s appendix-A estimators from ``n_samples``
    independent draws of a small and a big batch, ``batch_sizes=(small, big)``, with
    ``x_B = |G_B|^2`` and ``c_B`` as in the module docstring (``c_B = 1/B`` with replacement)::

        tr(Sigma) ~ (x_small - x_big) / (c_small - c_big)
        |G|^2     ~ (c_small x_big - c_big x_small) / (c_small - c_big)

    each unbiased; their means and stderrs are reported. ``seed`` fixes the draws.

    >>> import torch, labkit
    >>> x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> model = torch.nn.Linear(3, 1, bias=False).double()
    >>> ns = noise_scale(model, "mse", (x, x.sum(1, keepdim=True)))
    >>> round(ns.trace_cov / ns.grad_sq_norm - ns.b_simple, 12)
    0.0
    """
    _checks.choice("method", method, METHODS)
    risk = _risk(model, loss, data)
    n = risk.num_examples
    if method == "per_example":
        sigma = GradientCovariance(risk)
        tr, g2_exact = sigma.trace(), float(sigma.mean_gradient.square().sum())
        return NoiseScale(_ratio(tr, g2_exact), tr, g2_exact, method=method, n=n)

    ds = Dataset(*risk.examples(), risk.task)
    if batch_sizes is None:
        raise ValueError("method='two_batch' needs batch_sizes=(small, big), e.g. (8, 128)")
    small, big = _check_batch_sizes(batch_sizes, n, replacement)
    _checks.positive("n_samples", n_samples, integer=True)
    gen = torch.Generator().manual_seed(int(seed))
    idx_s = _draw(n, small, n_samples, replacement, gen).to(ds.inputs.device)
    idx_b = _draw(n, big, n_samples, replacement, gen).to(ds.inputs.device)
    x_s = _batch_sq_norms(risk, ds, idx_s, chunk_size).double()
    x_b = _batch_sq_norms(risk, ds, idx_b, chunk_size).double()
    c_s, c_b = _finite_population(n, small, replacement), _finite_population(n, big, replacement)
    tr_est = (x_s - x_b) / (c_s - c_b)
    g2_est = (c_s * x_b - c_b * x_s) / (c_s - c_b)
    tr, tr_se = _mean_stderr(tr_est)
    g2, g2_se = _mean_stderr(g2_est)
    ratio = _ratio(tr, g2)
    if n_samples > 1:  # delta method for a ratio of means
        cov = torch.cov(torch.stack([tr_est, g2_est]))
        var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n_samples * g2**2)
        b_se = float(var.clamp_min(0).sqrt())
    else:
        b_se = math.inf
    return NoiseScale(ratio, tr, g2, b_se, tr_se, g2_se, method, n, (small, big), n_samples)


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else math.inf


# ---------------------------------------------------------------- B_noise


def b_noise(
    model: nn.Module,
    loss: str | Loss | Callable = "auto",
    data: Any = None,
    *,
    examples: int | None = None,
    seed: int = 0,
    chunk_size: int = 64,
) -> float:
    """``B_noise = tr(H Sigma) / (G^T H G)`` (McCandlish et al. 2018, eq. 2.8) with Hessian-vector products.

    ``tr(H Sigma)`` is composed from the operators (:func:`labkit.curvature.trace_product` of the
    :class:`~labkit.curvature.HessianOperator` and the :class:`~labkit.curvature.GradientCovariance`,
    divisor-``n`` convention, see the module docstring): exact, one HVP per example, ``chunk_size``
    at a time. ``examples=m`` uses ``tr(H Sigma) = tr(H F_m) - G^T H G`` with the empirical Fisher
    ``F_m`` of ``m`` random examples instead (an unbiased estimate; ``seed`` picks them).
    """
    risk = _risk(model, loss, data)
    _checks.positive("chunk_size", chunk_size, integer=True)
    n = risk.num_examples
    H = HessianOperator(risk)
    G = risk.gradient()
    gHg = float(G @ H.matvec(G))
    if examples is None:
        tr_h_sigma = trace_product(H, GradientCovariance(risk), chunk_size=chunk_size)
    else:
        _checks.in_range("examples", examples, 1, n)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:examples]
        tr_h_sigma = trace_product(H, EmpiricalFisher(risk.subset(idx)), chunk_size=chunk_size) - gHg
    return _ratio(tr_h_sigma, gHg)


# ---------------------------------------------------------------- tracking during training


class NoiseScaleTracker(Every):
    """A :func:`labkit.train.fit` callback recording the noise scale every ``every`` steps.

    At each record it measures ``tr(Sigma)`` and ``|G|^2`` at the current parameters on
    the training data (or ``data``) with :func:`noise_scale` and keeps exponential moving
    averages of the two *separately* (bias-corrected, decay ``smoothing``); ``b_simple``
    is the ratio of the averages, as McCandlish et al. recommend, because the ratio of
    averages is far less biased than the average of noisy ratios. ``smoothing=None``
    means 0 (no averaging) for the exact ``"per_example"`` method and 0.9 for
    ``"two_batch"``. ``live`` (e.g. a :class:`labkit.viz.LivePlot`) receives
    ``live.append(step, b_simple=...)`` at each record.
    """

    def __init__(self, every: int = 10, method: str = "per_example", batch_sizes: tuple[int, int] | None = None,
                 n_samples: int = 8, smoothing: float | None = None, data: Any = None, live: Any = None):
        super().__init__(every, live=live)
        self.method = _checks.choice("method", method, METHODS)
        if method == "two_batch" and batch_sizes is None:
            raise ValueError("NoiseScaleTracker(method='two_batch') needs batch_sizes=(small, big)")
        if smoothing is None:
            smoothing = 0.0 if method == "per_example" else 0.9
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.batch_sizes, self.n_samples, self.smoothing, self.data = batch_sizes, n_samples, smoothing, data
        self._ema = [0.0, 0.0]
        self._weight = 0.0

    def measure(self, info: StepInfo) -> dict[str, Any]:
        data = info.data if self.data is None else self.data
        ns = noise_scale(info.model, info.loss_fn, data, method=self.method, batch_sizes=self.batch_sizes,
                         n_samples=self.n_samples, seed=info.step)
        beta = self.smoothing
        self._ema = [beta * self._ema[0] + (1 - beta) * ns.trace_cov,
                     beta * self._ema[1] + (1 - beta) * ns.grad_sq_norm]
        self._weight = beta * self._weight + (1 - beta)
        tr, g2 = self._ema[0] / self._weight, self._ema[1] / self._weight
        return {"b_simple": _ratio(tr, g2), "trace_cov": tr, "grad_sq_norm": g2, "loss": float(info.loss), "raw": ns}

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        return {"b_simple": record["b_simple"]}

    b_simple = property(lambda self: self.series("b_simple"), doc="B_simple (ratio of the averages) at each record.")
    trace_cov = property(lambda self: self.series("trace_cov"), doc="Averaged tr(Sigma) at each record.")
    grad_sq_norm = property(lambda self: self.series("grad_sq_norm"), doc="Averaged |G|^2 at each record.")
    loss = property(lambda self: self.series("loss"), doc="The training loss at each record.")
    raw = property(lambda self: self.series("raw"), doc="The unsmoothed NoiseScale of each record.")

    def figure(self) -> Any:
        """``B_simple`` (and the training loss) against the step, log y."""
        from labkit.viz.theme import figure

        fig = figure("Gradient noise scale during training", "step", "value", log_y=True)
        fig.add_scatter(x=self.steps, y=self.b_simple, name="B_simple = tr(Σ)/|G|²", mode="lines+markers")
        fig.add_scatter(x=self.steps, y=self.loss, name="training loss", mode="lines", line=dict(dash="dot"))
        return fig
