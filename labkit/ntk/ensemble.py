"""Trained ensembles in one call: N networks of one width trained by full-batch GD on MSE, their test outputs over time.

Lee et al. 2019 ("Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient
Descent") predict the distribution of such an ensemble at every training time from two kernels
(:func:`labkit.ntk.posterior.gd_ensemble`). :func:`train_ensemble` measures it: the members train
together in one :func:`labkit.train.fit_many` call (seeds ``seed, seed + 1, ...``), and a callback
reads every member's outputs on the test points at the requested steps (one batched forward pass).
It also keeps each member's initial outputs, so a prediction can be coupled to the same draws
(:meth:`Ensemble.linearized`): common random numbers remove the ensemble's sampling noise from a
comparison with the theory.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from labkit import _checks
from labkit.models import mlp
from labkit.train import fit_many

__all__ = ["Ensemble", "train_ensemble"]


@dataclass(frozen=True)
class Ensemble:
    """Outputs of ``members`` networks on ``n`` training and ``m`` test points.

    ``steps`` (T,); ``outputs`` ``(T, members, m, O)`` at those steps; ``initial_test``
    ``(members, m, O)`` and ``initial_train`` ``(members, n, O)`` at step 0; ``diverged``: members
    whose loss became non-finite (their outputs are NaN).
    """

    steps: list[int]
    outputs: torch.Tensor
    initial_train: torch.Tensor
    initial_test: torch.Tensor
    diverged: int
    width: int
    parameterization: str

    @property
    def mean(self) -> torch.Tensor:
        """Ensemble mean ``(T, m, O)`` over the members that did not diverge."""
        return self.outputs.nanmean(1)

    @property
    def covariance(self) -> torch.Tensor:
        """Ensemble covariance ``(T, m, m)`` over members (unbiased), pooled over the output columns."""
        f = self.outputs  # (T, M, m, O)
        keep = torch.isfinite(f).all(-1).all(-1).all(0)  # members that stayed finite
        f = f[:, keep]
        c = f - f.mean(1, keepdim=True)
        return torch.einsum("tiao,tibo->tab", c, c) / ((f.shape[1] - 1) * f.shape[-1])

    def linearized(self, ntk: torch.Tensor, y_train: torch.Tensor, *, lr: float) -> torch.Tensor:
        """Each member's infinite-width linearised prediction from its own initial function: ``(T, members, m, O)``.

        ``g_t = f_0(x*) + Theta_*X T(t) (y - f_0(X))`` with the NTK ``ntk`` on ``[train; test]`` and
        discrete-GD filters, so that ``g`` over the members is a sample of the NTK-GD ensemble drawn with
        the same initial functions as the trained networks.
        """
        from labkit.ntk.posterior import gd_ensemble

        n = self.initial_train.shape[1]
        # the mean of gd_ensemble is Theta_*X T(t) applied to its targets: apply it to every member's residual
        resid = (y_train.reshape(n, -1)[None] - self.initial_train).permute(1, 0, 2)  # (n, M, O)
        flat = resid.reshape(n, -1)
        zero = torch.zeros_like(ntk)
        pred = gd_ensemble(zero, ntk, flat, t=list(self.steps), lr=lr, discrete=True).mean  # (T, m, M O)
        moved = pred.reshape(len(self.steps), -1, *self.initial_test.shape[::2]).transpose(1, 2)
        return self.initial_test[None] + moved


def _record(model: nn.Module, x_test: torch.Tensor, wanted: set[int], store: dict[int, torch.Tensor]):
    base = copy.deepcopy(model).to("meta")
    forward = vmap(lambda p: functional_call(base, p, (x_test,)))

    def on_step(info) -> None:  # fit_many's callback sees the stacked parameters after ``info.step`` updates
        if info.step in wanted:
            with torch.no_grad():
                store[info.step] = forward(info.params)

    return on_step


def train_ensemble(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, *, width: int,
                   depth: int = 1, activation: str = "relu", members: int = 32, steps: Sequence[int] = (100,),
                   lr: float = 0.1, parameterization: str = "ntk", weight_std: float | None = None,
                   bias_std: float = 0.1, seed: int = 0, progress: bool = True,
                   max_memory: int = 1 << 30) -> Ensemble:
    """Train ``members`` MLPs ``d -> [width] * depth -> O`` by full-batch GD on MSE; outputs on ``x_test`` at ``steps``.

    Networks are :func:`labkit.models.mlp` in float64 with the given ``parameterization`` (``"ntk"``, whose
    infinite-width limit :func:`labkit.ntk.analytic` computes with the same ``weight_std`` / ``bias_std``,
    or ``"mean_field"``, trained without a readout bias as in notebook 02). ``lr`` is the step of
    :func:`labkit.train.fit_many` (labkit's MSE, no 1/2): the time unit of ``gd_ensemble(..., lr=lr)``.
    ``max_memory`` bounds the stacked training state (``fit_many``'s refusal).
    """
    for name, x in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test)):
        _checks.tensor(name, x)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"x_train and x_test must be (n, d) and (m, d) with the same d, got {tuple(x_train.shape)} "
                         f"and {tuple(x_test.shape)}")
    if y_train.shape[0] != x_train.shape[0]:
        raise ValueError(f"y_train has {y_train.shape[0]} rows but x_train has {x_train.shape[0]}")
    _checks.positive("width", width, integer=True)
    _checks.positive("members", members, integer=True)
    if members < 2:
        raise ValueError(f"members must be >= 2 (an ensemble covariance needs two), got {members}")
    _checks.choice("parameterization", parameterization, ["ntk", "mean_field"])
    steps = sorted({int(_checks.positive("steps", s, integer=True, allow_zero=True)) for s in steps})
    y = y_train.reshape(len(y_train), -1).double()
    x, xt = x_train.double(), x_test.double()
    d, o = x.shape[1], y.shape[1]

    def make(s: int) -> nn.Module:
        net = mlp(d, [width] * depth, o, activation, parameterization=parameterization, weight_std=weight_std,
                  bias_std=bias_std, seed=s).double()
        if parameterization == "mean_field":
            net[-1].bias = None  # its constant kernel would dominate at large width (see notebook 02)
        return net

    store: dict[int, torch.Tensor] = {}
    wanted = set(steps) | {0}
    seeds = [seed + i for i in range(members)]
    probe = make(seeds[0])
    record = _record(probe, torch.cat([x, xt]), wanted, store)
    hist = fit_many(make, (x, y), hparams={"seed": seeds}, loss="mse", optimizer="sgd", lr=lr,
                    steps=max(steps) + 1, eval_every=max(steps) + 2, callbacks=[record], progress=progress,
                    max_memory=max_memory)
    n = len(x)
    nan = torch.full((members, n + len(xt), o), float("nan"), dtype=torch.float64)
    at = torch.stack([store.get(s, nan) for s in steps])  # (T, M, n + m, O); a run stopped early leaves NaN
    dead = torch.tensor([h.diverged for h in hist])
    at[:, dead] = float("nan")  # fit_many freezes a diverged member at zero: record it as undefined
    return Ensemble(steps, at[:, :, n:], store[0][:, :n], store[0][:, n:], sum(h.diverged for h in hist), width,
                    parameterization)
