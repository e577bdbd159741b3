"""The lessons of notebook 02 (the NTK): each experiment returns numbers (for asserts) and a figure (for the reader)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from labkit import _checks, _deprecated
from labkit.models import mlp
from labkit.ntk.analytic import analytic
from labkit.ntk.drift import KernelTracker
from labkit.ntk.dynamics import linearize, predict
from labkit.ntk.empirical import empirical
from labkit.scaling import loglog_slope as slope_and_error
from labkit.train import fit

__all__ = ["PARAMETERIZATIONS", "eigenfunctions", "kernel_change", "kernel_runs", "linearization_gap",
           "loglog_slope", "max_stable_lr", "predict_vs_network", "regression_comparison", "sign_changes",
           "sine_data", "width_convergence"]

DT = torch.float64
PARAMETERIZATIONS = ("ntk", "standard", "mean_field")


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (:func:`labkit.scaling.loglog_slope`, without its error)."""
    return slope_and_error(x, y)[0]


def _net(width: int, depth: int, parameterization: str, seed: int, *, activation: str = "relu",
         bias_std: float = 1.0, readout_bias: bool | None = None) -> torch.nn.Module:
    """A 1-D-input MLP in float64. ``readout_bias=None``: on, except in mean-field.

    In the mean-field parameterisation the readout weights enter as ``1/width`` but a readout bias
    does not, so its constant kernel (1 for every pair of inputs) dominates the NTK at large width
    and hides how the rest of the kernel moves: mean-field networks train without it.
    """
    _checks.choice("parameterization", parameterization, PARAMETERIZATIONS)
    net = mlp(1, [width] * depth, 1, activation, parameterization=parameterization, bias_std=bias_std,
              seed=seed).double()
    if not (parameterization != "mean_field" if readout_bias is None else readout_bias):
        net[-1].bias = None
    return net


@_deprecated.keyword_only("seed")
def sine_data(n: int = 12, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1-D regression task: ``n`` points of ``sin(2x) + x/2`` on [-2, 2] and a test grid (float64)."""
    _checks.positive("n", n, integer=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(n, generator=g, dtype=DT) * 4 - 2).values.reshape(-1, 1)
    grid = torch.linspace(-3, 3, 121, dtype=DT).reshape(-1, 1)
    return x, torch.sin(2 * x) + x / 2, grid


def width_convergence(x: torch.Tensor, widths: Sequence[int], *, depth: int = 2, activation: str = "relu",
                      seeds: int = 3, weight_std: float = 1.0, bias_std: float = 1.0,
                      reference_depth: int | None = None) -> dict[str, Any]:
    """Relative Frobenius error |Theta_width - Theta_inf| / |Theta_inf| (mean over seeds) and its log-log slope.

    ``reference_depth`` compares with the analytic kernel of another depth (a control: the error then
    stops falling, because that kernel is not the limit of these networks).
    """
    ref_depth = depth if reference_depth is None else reference_depth
    _, theta = analytic(x, depth=ref_depth, activation=activation, weight_std=weight_std, bias_std=bias_std)
    from labkit.history import progress_bar

    errors = []
    for w in progress_bar(None, "widths", iterable=widths):
        errs = []
        for s in range(seeds):
            net = mlp(x.shape[1], [w] * depth, 1, activation, parameterization="ntk", weight_std=weight_std,
                      bias_std=bias_std, seed=1000 * w + s).double()
            errs.append(float((empirical(net, x, method="structured") - theta).norm() / theta.norm()))
        errors.append(float(np.mean(errs)))
    slope = loglog_slope(widths, errors)
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
                          activation: str = "relu", bias_std: float = 1.0, n: int = 12, seed: int = 0,
                          parameterization: str = "ntk", data_seed: int = 0, figure: bool = True) -> dict:
    """Train a network and its linearisation on :func:`sine_data`; compare with the infinite-width prediction.

    ``lr`` is a fraction of the largest stable learning rate ``n / lambda_max`` of the network's
    NTK at initialisation (1 = the edge of stability). The infinite-width curve is the mean over
    initialisations (``f_0 = 0``); the network and its linearisation start from the same random
    function ``f_0``; all use gradient descent on MSE (``predict`` is its gradient flow at
    ``t = steps``). ``gap`` is ``|f_net - f_lin| / |f_lin|`` on the test grid. ``seed`` draws the
    network, ``data_seed`` the training points.
    """
    x, y, grid = sine_data(n, seed=data_seed)
    net = _net(width, depth, parameterization, seed, activation=activation, bias_std=bias_std)
    lin = linearize(net)
    lr = lr * max_stable_lr(net, x)
    hist_net = fit(net, (x, y), loss="mse", lr=lr, steps=steps, progress=False)
    hist_lin = fit(lin, (x, y), loss="mse", lr=lr, steps=steps, progress=False)
    _, k = analytic(torch.cat([x, grid]), depth=depth, activation=activation, bias_std=bias_std)
    m = len(x)
    inf = predict(k[:m, :m], k[m:, :m], y, t=steps, lr=lr)
    with torch.no_grad():
        out = {"grid": grid, "network": net(grid), "linearized": lin(grid), "infinite width": inf}
    out.update(diverged=hist_net.diverged or hist_lin.diverged, lr=lr,
               gap=float((out["network"] - out["linearized"]).norm() / out["linearized"].norm()))
    if not figure:
        return out
    from labkit.viz import theme

    fig = theme.figure(f"width {width}, depth {depth}, lr {lr:g}, {steps} steps", "x", "f(x)")
    for name in ("network", "linearized", "infinite width"):
        fig.add_scatter(x=grid.ravel().numpy(), y=out[name].ravel().numpy(), mode="lines", name=name,
                        line=dict(dash="dot") if name == "linearized" else None)
    fig.add_scatter(x=x.ravel().numpy(), y=y.ravel().numpy(), mode="markers", name="training data",
                    marker=dict(color="black", size=8))
    out["figure"] = fig
    return out


def linearization_gap(widths: Sequence[int], *, parameterization: str = "ntk", steps: int = 80, seeds: int = 3,
                      lr: float = 0.5, depth: int = 1) -> dict[str, Any]:
    """How far a trained network ends from its trained linearisation, per width (mean gap over ``seeds``).

    Lee et al. (2019) bound the difference by ``O(width^-1/2)`` in the NTK parameterisation; in
    mean-field the features move at every width, so the gap does not shrink. Returns ``widths``,
    ``gaps`` (mean of :func:`regression_comparison`'s ``gap``), ``slope`` (log-log) and ``diverged``.
    """
    _checks.choice("parameterization", parameterization, PARAMETERIZATIONS)
    _checks.positive("seeds", seeds, integer=True)
    runs = [[regression_comparison(w, depth, lr, steps, seed=s, parameterization=parameterization, figure=False)
             for s in range(seeds)] for w in widths]
    gaps = [float(np.mean([r["gap"] for r in rs])) for rs in runs]
    return {"widths": list(widths), "gaps": gaps, "slope": loglog_slope(widths, gaps),
            "diverged": any(r["diverged"] for rs in runs for r in rs)}


def kernel_change(widths: Sequence[int], *, parameterization: str = "ntk", lr: float = 0.5, steps: int = 200,
                  depth: int = 1, n: int = 12, seed: int = 0, seeds: int = 1, readout_bias: bool | None = None,
                  live: Any = None, points: int = 20, callbacks: Sequence[Any] = (),
                  progress: bool = True) -> dict[str, Any]:
    """Relative NTK change |K_t - K_0| / |K_0| during ``steps`` of GD on :func:`sine_data`, per width.

    ``parameterization``: ``"ntk"`` (the change falls like ``width^-1/2``: lazy training),
    ``"standard"`` or ``"mean_field"`` (trained without a readout bias, see :func:`_net`; the
    kernel keeps moving at every width: feature learning). ``lr`` is a fraction of each network's
    largest stable learning rate ``n / lambda_max`` (the NTK's scale depends on the width and the
    parameterisation, so a fixed step would diverge or stall), so every network fits its top
    kernel mode at the same speed. ``seeds`` networks per width (seeds ``seed, seed + 1, ...``);
    ``change`` is their mean. The kernel is measured about ``points`` times per run. With ``live``
    (a LivePlot) the first seed of each width streams its curve as ``"<parameterization> w=<width>"``;
    ``callbacks`` go to every ``fit`` (e.g. a Runner's stop callback); ``progress=False`` draws no
    progress bar (required in a background thread). Returns ``widths``, ``change`` (final change
    per width), ``slope`` (log-log, when there are >= 2 widths) and ``curves`` (``(steps, change)``
    of the first seed per width).
    """
    _checks.choice("parameterization", parameterization, PARAMETERIZATIONS)
    _checks.positive("points", points, integer=True)
    _checks.positive("seeds", seeds, integer=True)
    x, y, _ = sine_data(n, seed=0)
    from labkit.history import progress_bar

    finals, curves = [], []
    for w in progress_bar(None, f"{parameterization} widths", progress, iterable=widths):
        per_seed = []
        for s in range(seed, seed + seeds):
            net = _net(w, depth, parameterization, s, readout_bias=readout_bias)
            tracker = KernelTracker(x, every=max(1, steps // points), live=live if s == seed else None,
                                    name=f"{parameterization} w={w}")
            fit(net, (x, y), loss="mse", lr=lr * max_stable_lr(net, x), steps=steps,
                callbacks=[tracker, *callbacks], progress=False)
            per_seed.append(tracker.change[-1])
            if s == seed:
                curves.append((list(tracker.steps), list(tracker.change)))
        finals.append(float(np.mean(per_seed)))
    slope = loglog_slope(widths, finals) if len(widths) >= 2 and min(finals) > 0 else float("nan")
    return {"widths": list(widths), "change": finals, "slope": slope, "curves": curves}


def predict_vs_network(width: int = 1024, *, parameterization: str = "ntk", lr: float = 0.5, steps: int = 200,
                       points: int = 10, n: int = 12, seed: int = 0) -> dict[str, Any]:
    """Train a network by GD and compare its outputs with :func:`ntk.predict` from its initial NTK.

    ``ntk.predict(K0, K0, y, t, lr, f_train=f_0)`` is kernel gradient flow with the network's own
    kernel at initialisation; it is exact for the linearised network and, by Lee et al. (2019), the
    trained network stays within ``O(width^-1/2)`` of it in the NTK parameterisation. ``lr`` is a
    fraction of ``n / lambda_max``. Measured on the training inputs at ``points`` times over the
    run (test points behave the same way; see :func:`regression_comparison`). Returns ``steps``,
    ``network`` and ``kernel`` (outputs, ``(points, n)``), ``error`` (max over times of
    ``|f_net - f_kernel| / |y - f_0|``, the residual the kernel removes) and ``kernel_change``.
    """
    _checks.positive("points", points, integer=True)
    x, y, _ = sine_data(n, seed=0)
    net = _net(width, 1, parameterization, seed)
    k0 = empirical(net, x)
    with torch.no_grad():
        f0 = net(x)
    lr = lr * max_stable_lr(net, x)
    times = np.unique(np.linspace(0, steps, points + 1).round().astype(int))[1:]
    wanted = set(times.tolist())
    outputs: list[torch.Tensor] = []

    def record(info: Any) -> None:  # a callback sees the model after ``info.step`` updates
        if info.step in wanted:
            outputs.append(net(x).detach())

    hist = fit(net, (x, y), loss="mse", lr=lr, steps=steps, callbacks=[record], progress=False)
    with torch.no_grad():
        outputs.append(net(x))  # after the last update
    if len(outputs) != len(times):  # fit stopped early (diverged): no trajectory to compare
        return {"steps": times.tolist(), "error": float("inf"), "kernel_change": float("nan"), "diverged": True,
                "lr": lr}
    f_net = torch.stack(outputs)[..., 0]
    f_ker = predict(k0, k0, y, t=torch.as_tensor(times, dtype=DT), lr=lr, f_train=f0, f_test=f0)[..., 0]
    err = float(((f_net - f_ker).norm(dim=1) / (y - f0).norm()).max())
    change = float((empirical(net, x) - k0).norm() / k0.norm())
    return {"steps": times.tolist(), "network": f_net, "kernel": f_ker, "error": err, "kernel_change": change,
            "diverged": hist.diverged, "lr": lr}


def kernel_runs(live: Any, *, steps: int, lr: float = 0.5, points: int = 100) -> Any:
    """A work function for :class:`labkit.widgets.Runner`: one :func:`kernel_change` run per call, streamed.

    The work reads ``ctx.params["width"]`` and ``ctx.params["parameterization"]``, trains that
    network in the Runner's thread and streams its kernel change into ``live`` as
    ``"<parameterization> w=<width>"``. Completed runs stay on the figure for comparison; a rerun
    replaces its own curve. Returns :func:`kernel_change`'s dict. ``work.finished`` maps a curve
    name to the ``(steps, change)`` of its completed run.
    """
    _checks.positive("steps", steps, integer=True)
    finished: dict[str, tuple[list, list]] = {}

    def work(ctx: Any) -> dict[str, Any]:
        p, w = ctx.params["parameterization"], ctx.params["width"]
        name = f"{p} w={w}"
        if name in live.names:  # a rerun replaces its own curve: redraw the others
            live.clear()
            for other, (xs, ys) in finished.items():
                if other != name:
                    for x_, y_ in zip(xs, ys):
                        live.append(x_, **{other: y_})
        res = kernel_change([w], parameterization=p, lr=lr, steps=steps, points=points, live=live,
                            callbacks=[ctx.callback], progress=False)
        if not ctx.stopped():
            finished[name] = res["curves"][0]
        live.flush()
        return res

    work.finished = finished
    return work


def sign_changes(vectors: torch.Tensor) -> list[int]:
    """Sign changes along each column of ``vectors`` ``(n, k)``: 0 for a constant sign, 1 for one crossing..."""
    return [int((np.diff(np.sign(v)) != 0).sum()) for v in vectors.T.numpy()]


def eigenfunctions(n: int = 41, depth: int = 1, k: int = 4, activation: str = "relu") -> dict[str, Any]:
    """Eigen-decomposition of the infinite-width NTK on a 1-D grid: top-``k`` eigenvectors and eigenvalues."""
    grid = torch.linspace(-2, 2, n, dtype=DT).reshape(-1, 1)
    _, theta = analytic(grid, depth=depth, activation=activation, bias_std=1.0)
    lam, vec = torch.linalg.eigh(theta)
    lam, vec = lam.flip(0), vec.flip(1)
    from labkit.viz import theme

    fig = theme.figure("Top eigenvectors of the NTK (learned first)", "x", "eigenvector")
    for i in range(k):
        fig.add_scatter(x=grid.ravel().numpy(), y=vec[:, i].numpy(), mode="lines",
                        name=f"#{i + 1}: lambda={lam[i]:.3g}")
    return {"grid": grid, "eigenvalues": lam, "eigenvectors": vec[:, :k], "sign_changes": sign_changes(vec[:, :k]),
            "figure": fig}
