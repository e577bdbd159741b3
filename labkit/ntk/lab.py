"""Experiments of notebook 02: each returns numbers (for asserts) and a figure (for the reader)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from labkit import _checks
from labkit.models import mlp
from labkit.ntk.analytic import analytic
from labkit.ntk.dynamics import linearize, predict
from labkit.ntk.empirical import empirical
from labkit.ntk.tracking import KernelTracker
from labkit.train import fit

__all__ = ["eigenfunctions", "kernel_change", "max_stable_lr", "regression_comparison", "sine_data",
           "width_convergence"]

DT = torch.float64


def sine_data(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1-D regression task: ``n`` points of ``sin(2x) + x/2`` on [-2, 2] and a test grid (float64)."""
    _checks.positive("n", n, integer=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(n, generator=g, dtype=DT) * 4 - 2).values.reshape(-1, 1)
    grid = torch.linspace(-3, 3, 121, dtype=DT).reshape(-1, 1)
    return x, torch.sin(2 * x) + x / 2, grid


def width_convergence(x: torch.Tensor, widths: Sequence[int], *, depth: int = 2, activation: str = "relu",
                      seeds: int = 3, weight_std: float = 1.0, bias_std: float = 1.0) -> dict[str, Any]:
    """Relative Frobenius error |Theta_width - Theta_inf| / |Theta_inf| (mean over seeds) and its log-log slope."""
    _, theta = analytic(x, depth=depth, activation=activation, weight_std=weight_std, bias_std=bias_std)
    from tqdm.auto import tqdm

    errors = []
    for w in tqdm(widths, desc="widths", delay=2.0, leave=False):
        errs = []
        for s in range(seeds):
            net = mlp(x.shape[1], [w] * depth, 1, activation, parameterization="ntk", weight_std=weight_std,
                      bias_std=bias_std, seed=1000 * w + s).double()
            errs.append(float((empirical(net, x, method="structured") - theta).norm() / theta.norm()))
        errors.append(float(np.mean(errs)))
    slope = float(np.polyfit(np.log(widths), np.log(errors), 1)[0])
    from labkit.viz import theme

    fig = theme.figure(f"Empirical NTK -> analytic NTK (depth {depth}, {activation})", "width",
                       "relative error", log_x=True, log_y=True)
    fig.add_scatter(x=list(widths), y=errors, mode="lines+markers", name=f"measured (slope {slope:.2f})")
    ref = [errors[0] * math.sqrt(widths[0] / w) for w in widths]
    fig.add_scatter(x=list(widths), y=ref, mode="lines", name="width^-1/2",
                    line=dict(dash="dash", color=theme.REFERENCE))
    return {"widths": list(widths), "errors": errors, "slope": slope, "analytic": theta, "figure": fig}


def max_stable_lr(net: torch.nn.Module, x: torch.Tensor) -> float:
    """``n / lambda_max(Theta)``: gradient descent on labkit's MSE diverges above it (``2 lr lambda / n > 2``)."""
    k = empirical(net, x)
    return float(len(x) / torch.linalg.eigvalsh(k)[-1])


def regression_comparison(width: int = 256, depth: int = 1, lr: float = 0.5, steps: int = 300, *,
                          activation: str = "relu", bias_std: float = 1.0, n: int = 12, seed: int = 0) -> dict:
    """Train a network and its linearisation on :func:`sine_data`; compare with the infinite-width prediction.

    ``lr`` is a fraction of the largest stable learning rate ``n / lambda_max`` of the network's
    NTK at initialisation (1 = the edge of stability). The infinite-width curve is the mean over
    initialisations (``f_0 = 0``); the network and its linearisation start from the same random
    function ``f_0``; all use gradient descent on MSE (``predict`` is its gradient flow at
    ``t = steps``).
    """
    x, y, grid = sine_data(n, seed)
    net = mlp(1, [width] * depth, 1, activation, parameterization="ntk", bias_std=bias_std, seed=seed).double()
    lin = linearize(net)
    lr = lr * max_stable_lr(net, x)
    hist_net = fit(net, (x, y), loss="mse", lr=lr, steps=steps, progress=False)
    hist_lin = fit(lin, (x, y), loss="mse", lr=lr, steps=steps, progress=False)
    _, k = analytic(torch.cat([x, grid]), depth=depth, activation=activation, bias_std=bias_std)
    m = len(x)
    inf = predict(k[:m, :m], k[m:, :m], y, t=steps, lr=lr)
    with torch.no_grad():
        out = {"grid": grid, "network": net(grid), "linearized": lin(grid), "infinite width": inf}
    from labkit.viz import theme

    fig = theme.figure(f"width {width}, depth {depth}, lr {lr:g}, {steps} steps", "x", "f(x)")
    for name in ("network", "linearized", "infinite width"):
        fig.add_scatter(x=grid.ravel().numpy(), y=out[name].ravel().numpy(), mode="lines", name=name,
                        line=dict(dash="dot") if name == "linearized" else None)
    fig.add_scatter(x=x.ravel().numpy(), y=y.ravel().numpy(), mode="markers", name="training data",
                    marker=dict(color="black", size=8))
    out.update(figure=fig, diverged=hist_net.diverged or hist_lin.diverged, lr=lr,
               gap=float((out["network"] - out["linearized"]).norm() / out["linearized"].norm()))
    return out


def kernel_change(widths: Sequence[int], *, parameterization: str = "ntk", lr: float = 0.5, steps: int = 200,
                  depth: int = 1, n: int = 12, seed: int = 0, live: Any = None, points: int = 20,
                  callbacks: Sequence[Any] = (), progress: bool = True) -> dict[str, list]:
    """Relative NTK change |K_t - K_0| / |K_0| during ``steps`` of GD on :func:`sine_data`, per width.

    ``lr`` is a fraction of each network's largest stable learning rate ``n / lambda_max`` (the
    standard parameterisation's NTK grows like the width, so a fixed step would diverge), so
    every network fits its top kernel mode at the same speed. The kernel is measured about
    ``points`` times per run. With ``live`` (a LivePlot) each width streams its curve as
    ``"<parameterization> w=<width>"``; ``callbacks`` go to every ``fit`` (e.g. a Runner's stop
    callback); ``progress=False`` draws no progress bar (required in a background thread).
    Returns ``widths``, ``change`` (final change per width) and ``curves`` (``(steps, change)`` per width).
    """
    _checks.choice("parameterization", parameterization, ["ntk", "standard"])
    _checks.positive("points", points, integer=True)
    x, y, _ = sine_data(n, seed)
    from tqdm.auto import tqdm

    finals, curves = [], []
    for w in tqdm(widths, desc=f"{parameterization} widths", delay=2.0, leave=False, disable=not progress):
        net = mlp(1, [w] * depth, 1, "relu", parameterization=parameterization, bias_std=1.0, seed=seed).double()
        tracker = KernelTracker(x, every=max(1, steps // points), live=live, name=f"{parameterization} w={w}")
        fit(net, (x, y), loss="mse", lr=lr * max_stable_lr(net, x), steps=steps,
            callbacks=[tracker, *callbacks], progress=False)
        finals.append(tracker.change[-1])
        curves.append((list(tracker.steps), list(tracker.change)))
    return {"widths": list(widths), "change": finals, "curves": curves}


def eigenfunctions(n: int = 41, depth: int = 1, k: int = 4, activation: str = "relu") -> dict[str, Any]:
    """Eigen-decomposition of the infinite-width NTK on a 1-D grid: top-``k`` eigenvectors and eigenvalues."""
    grid = torch.linspace(-2, 2, n, dtype=DT).reshape(-1, 1)
    _, theta = analytic(grid, depth=depth, activation=activation, bias_std=1.0)
    lam, vec = torch.linalg.eigh(theta)
    lam, vec = lam.flip(0), vec.flip(1)
    sign_changes = [int((np.diff(np.sign(vec[:, i].numpy())) != 0).sum()) for i in range(k)]
    from labkit.viz import theme

    fig = theme.figure("Top eigenvectors of the NTK (learned first)", "x", "eigenvector")
    for i in range(k):
        fig.add_scatter(x=grid.ravel().numpy(), y=vec[:, i].numpy(), mode="lines",
                        name=f"#{i + 1}: lambda={lam[i]:.3g}")
    return {"grid": grid, "eigenvalues": lam, "eigenvectors": vec[:, :k], "sign_changes": sign_changes,
            "figure": fig}
