"""Gradient instruments: the adaptive-sampling tests, per-layer signal-to-noise, B_simple, B_noise, lambda_max.

All from **one pass** of per-example gradients ``g_i`` (``torch.func.vmap(grad)``, as
:meth:`labkit.risk.Risk.per_example_gradients`, kept as one block per parameter) on a batch of ``B``
examples, with ``g_B = mean_i g_i`` and the sample variance (divisor ``B - 1``, the batch is a sample of the data):

- **norm test** (Byrd, Chin, Nocedal, Wu 2012; Bollapragada, Byrd, Nocedal 2018): the batch is large enough when
  ``sum_i |g_i - g_B|^2 / ((B - 1) B) <= theta^2 |g_B|^2``. Reported, as Cockpit does (Schneider, Dangel,
  Hennig 2021), as the smallest ``theta`` that passes: ``norm_test = sqrt(var / (B |g_B|^2))``.
- **inner-product test** (Bollapragada et al. 2018): the sample variance of ``g_i . g_B`` over ``B``
  ``<= vartheta^2 |g_B|^4``; ``inner_product_test = sqrt(var(g_i . g_B) / (B |g_B|^4))``.
- **orthogonality test** (same paper): the sample variance of the part of ``g_i`` orthogonal to ``g_B``, over
  ``B``, ``<= nu^2 |g_B|^2``; ``orthogonality_test = sqrt(var_perp / (B |g_B|^2))``.
- ``b_simple = tr(S) / |g_B|^2 = B norm_test^2`` (McCandlish et al. 2018; the norm test's suggested batch at
  ``theta = 1``: grow B to ``b_simple / theta^2``), and per layer ``snr[l] = B |g_B,l|^2 / tr(S_l)``, the signal
  over the noise of the batch mean ``tr(S_l) / B`` (above 1: the batch gradient of that layer is mostly signal).
- with ``curvature=True``: ``b_noise = tr(H S) / (g_B^T H g_B)`` (``B`` Hessian-vector products of the centred
  gradients, one batched product) and ``lambda_max`` of the batch Hessian (:func:`labkit.linalg.top_eigenvalues`).

On the whole data set (``batch_size=None``) the sample variance makes ``b_simple`` ``n / (n - 1)`` times
:func:`labkit.batchsize.noise_scale`'s (which treats the data as the distribution, divisor ``n``).
:class:`GradientInstruments` measures all of it every ``k`` steps of :func:`labkit.train.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import grad, vmap

from labkit import _checks, linalg
from labkit.curvature import HessianOperator
from labkit.losses import Loss
from labkit.risk import Risk
from labkit.tracking import Every
from labkit.train import StepInfo

__all__ = ["GradientInstruments", "GradientTests", "gradient_tests", "layer_groups"]


@dataclass(frozen=True)
class GradientTests:
    """One measurement of the gradient instruments on a batch of ``batch_size`` examples (see the module docstring).

    ``norm_test``, ``inner_product_test`` and ``orthogonality_test`` are the smallest ``theta``, ``vartheta``
    and ``nu`` at which each test passes (inf when ``g_B = 0`` but the ``g_i`` differ; NaN, undefined, when all
    ``g_i = 0``); ``sample_var`` is ``tr(S)``; ``b_noise`` and
    ``lambda_max`` are NaN unless measured with ``curvature=True``.
    """

    batch_size: int
    grad_sq_norm: float
    sample_var: float
    norm_test: float
    inner_product_test: float
    orthogonality_test: float
    b_simple: float
    snr: dict[str, float] = field(default_factory=dict)
    b_noise: float = math.nan
    lambda_max: float = math.nan

    def suggested_batch(self, theta: float = 1.0) -> int:
        """The batch the norm test asks for at ``theta``: ``ceil(tr(S) / (theta^2 |g_B|^2))`` (at least 1)."""
        _checks.positive("theta", theta)
        need = self.b_simple / theta**2
        return max(1, math.ceil(need)) if math.isfinite(need) else 2**62

    def as_dict(self) -> dict[str, float]:
        """The scalars, with ``snr/<layer>`` for each layer."""
        out = {k: float(getattr(self, k)) for k in ("batch_size", "grad_sq_norm", "sample_var", "norm_test",
                                                     "inner_product_test", "orthogonality_test", "b_simple",
                                                     "b_noise", "lambda_max")}
        out.update({f"snr/{k}": v for k, v in self.snr.items()})
        return out


def _check_memory(b: int, p: int, dtype: torch.dtype, curvature: bool, max_memory: int) -> None:
    """Refuse up front what would not fit: ``B x P`` per-example gradients (x3 with the Hessian products)."""
    _checks.positive("max_memory", max_memory, integer=True)
    per_example = p * torch.empty((), dtype=dtype).element_size() * (3 if curvature else 1)
    need = b * per_example
    if need > max_memory:
        raise ValueError(f"gradient_tests on {b} examples of {p} parameters would hold about {need / 2**20:.1f} MiB, "
                         f"more than max_memory={max_memory / 2**20:.1f} MiB; about {max_memory // per_example} "
                         "examples fit: measure a smaller batch (GradientInstruments(batch_size=...)) or raise "
                         "max_memory (bytes)")


def layer_groups(names: tuple[str, ...]) -> dict[str, list[int]]:
    """Parameter indices grouped by layer: ``"0.weight"`` and ``"0.bias"`` both belong to layer ``"0"``."""
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n.rsplit(".", 1)[0] if "." in n else n, []).append(i)
    return groups


def _div(a: torch.Tensor | float, b: torch.Tensor | float) -> float:
    """``a / b``; ``inf`` for noise over a zero gradient, NaN (undefined) for 0 / 0."""
    a, b = float(a), float(b)
    return a / b if b != 0 else (math.inf if a > 0 else math.nan)


def _per_example_blocks(risk: Risk, chunk_size: int | None) -> list[torch.Tensor]:
    """Per-example gradients as one ``(B, p_k)`` block per parameter (views: never concatenated to ``(B, P)``,
    which would cost as much as the gradients themselves)."""
    x, y = risk.examples()
    per = vmap(grad(risk.example_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(risk.params, x, y)
    return [per[n].reshape(len(x), -1) for n in risk.spec.names]


def _moments(blocks: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Per block ``g_B`` and ``sum_i g_i^2`` per coordinate, and the projections ``g_i . g_B``: a few passes over
    the gradients; everything else is computed from them in parameter space."""
    means = [g.mean(0) for g in blocks]
    col_sq = [(g * g).sum(0) for g in blocks]  # vector_norm(dim=0) is 3x slower here
    proj = sum(g @ m for g, m in zip(blocks, means))
    return means, col_sq, proj


def _tests(b: int, means: list[torch.Tensor], col_sq: list[torch.Tensor], proj: torch.Tensor) -> dict[str, float]:
    """The three tests and B_simple from :func:`_moments`."""
    g2 = sum(m.square().sum() for m in means)
    total = sum(c.sum() for c in col_sq)  # sum_i |g_i|^2
    var = (total - b * g2) / (b - 1)  # tr(S) = sum_i |g_i - g_B|^2 / (B - 1)
    var_proj = (proj - g2).square().sum() / (b - 1)  # the mean of g_i . g_B is |g_B|^2
    # |g_i - (g_i.g_B / |g_B|^2) g_B|^2 = |g_i|^2 - (g_i.g_B)^2 / |g_B|^2; its sample mean (the orthogonal parts
    # have mean zero) with the B - 1 correction
    var_perp = (total - proj.square().sum() / g2) / (b - 1) if g2 > 0 else var
    return {"grad_sq_norm": float(g2), "sample_var": float(var),
            "norm_test": _sqrt(_div(var, b * g2)),
            "inner_product_test": _sqrt(_div(var_proj, b * g2**2)),
            "orthogonality_test": _sqrt(_div(var_perp, b * g2)),
            "b_simple": _div(var, g2)}


def _sqrt(x: float) -> float:
    return math.sqrt(max(x, 0.0)) if not math.isnan(x) else math.nan


def gradient_tests(
    model: nn.Module | Risk,
    loss: str | Loss | Callable = "auto",
    data: Any = None,
    *,
    curvature: bool = False,
    chunk_size: int | None = None,
    tol: float = 1e-6,
    max_memory: int = 1 << 30,
) -> GradientTests:
    """Every instrument on ``data`` (the batch) at ``model``'s parameters, from one per-example-gradient pass.

    ``model`` may be a :class:`~labkit.risk.Risk` (then ``data`` is None). ``curvature`` adds ``b_noise``
    (one batched Hessian product of the ``B`` centred gradients) and ``lambda_max`` (Lanczos to ``tol``).
    ``max_memory`` (bytes, default 1 GiB) bounds the ``B x P`` gradients (three such blocks with
    ``curvature``): a larger request is refused before anything is computed.
    """
    risk = model if isinstance(model, Risk) else Risk(model, loss, data)
    if isinstance(model, Risk) and data is not None:
        raise ValueError("pass either a Risk or (model, loss, data), not both")
    b = risk.num_examples
    if b < 2:
        raise ValueError(f"the gradient tests need a batch of at least 2 examples (a sample variance), got {b}")
    _check_memory(b, risk.spec.numel, risk.spec.dtype, curvature, max_memory)
    if chunk_size is not None:
        _checks.positive("chunk_size", chunk_size, integer=True)
    blocks = _per_example_blocks(risk, chunk_size)
    means, sqs, proj = _moments(blocks)
    values = _tests(b, means, sqs, proj)
    snr = {}
    for name, idx in layer_groups(risk.spec.names).items():
        signal = sum(float(means[i].square().sum()) for i in idx)  # |g_B,l|^2
        total = sum(float(sqs[i].sum()) for i in idx)  # sum_i |g_i,l|^2
        snr[name] = _div(b * signal, (total - b * signal) / (b - 1))
    b_noise = lam = math.nan
    if curvature:
        H = HessianOperator(risk)
        g, mean = torch.cat(blocks, 1), torch.cat(means)
        centred = g - mean
        hc = H.matmat(torch.cat([centred, mean[:, None].T]).T)  # (P, B + 1): one batched product
        tr_hs = float((centred.T * hc[:, :b]).sum()) / (b - 1)
        b_noise = _div(tr_hs, mean @ hc[:, b])
        lam = float(linalg.top_eigenvalues(H, k=1, tol=tol).values[0])
    return GradientTests(b, snr=snr, b_noise=b_noise, lambda_max=lam, **values)


class GradientInstruments(Every):
    """A :func:`labkit.train.fit` tracker: :func:`gradient_tests` every ``every`` steps.

    Each record measures a batch of ``batch_size`` examples drawn from the training data (or ``data``) without
    replacement (``seed`` + step picks it; ``batch_size=None``: all of it), at the parameters before that
    step's update. ``curvature`` adds ``b_noise`` and ``lambda_max``. Records are :meth:`GradientTests.as_dict`
    plus ``loss`` and ``raw`` (the :class:`GradientTests`); ``live`` receives the three tests, ``b_simple``
    and (with curvature) ``b_noise`` and ``lambda_max``.
    """

    LIVE = ("norm_test", "inner_product_test", "orthogonality_test", "b_simple", "b_noise", "lambda_max")

    def __init__(self, every: int = 10, *, batch_size: int | None = None, curvature: bool = False, data: Any = None,
                 seed: int = 0, chunk_size: int | None = None, live: Any = None, final: bool = False):
        super().__init__(every, live=live, final=final)
        if batch_size is not None:
            _checks.positive("batch_size", batch_size, integer=True)
            if batch_size < 2:
                raise ValueError(f"batch_size must be at least 2 (a sample variance), got {batch_size}")
        self.batch_size, self.curvature, self.data, self.seed, self.chunk_size = (batch_size, bool(curvature), data,
                                                                                  int(seed), chunk_size)

    def measure(self, info: StepInfo) -> dict[str, Any]:
        risk = Risk(info.model, info.loss_fn, info.data if self.data is None else self.data)
        if self.batch_size is not None and self.batch_size < risk.num_examples:
            gen = torch.Generator().manual_seed(self.seed + int(info.step))
            risk = risk.subset(torch.randperm(risk.num_examples, generator=gen)[: self.batch_size])
        tests = gradient_tests(risk, curvature=self.curvature, chunk_size=self.chunk_size)
        return {**tests.as_dict(), "loss": float(info.loss), "raw": tests}

    def live_values(self, record: dict[str, Any]) -> dict[str, float]:
        return {k: record[k] for k in self.LIVE if math.isfinite(record[k])}

    norm_test = property(lambda self: self.series("norm_test"), doc="Smallest passing theta, per record.")
    inner_product_test = property(lambda self: self.series("inner_product_test"), doc="Smallest passing vartheta.")
    orthogonality_test = property(lambda self: self.series("orthogonality_test"), doc="Smallest passing nu.")
    b_simple = property(lambda self: self.series("b_simple"), doc="tr(S) / |g_B|^2 per record.")
    b_noise = property(lambda self: self.series("b_noise"), doc="tr(H S) / g_B^T H g_B per record (curvature).")
    lambda_max = property(lambda self: self.series("lambda_max"), doc="Top Hessian eigenvalue per record.")
    loss = property(lambda self: self.series("loss"), doc="The training loss at each record.")
