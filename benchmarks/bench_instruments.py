"""Gradient-test instruments: labkit against Cockpit, values (float64) and per-step overhead, in one run.

Run: ``python benchmarks/bench_instruments.py`` (``--quick`` for a smoke run). Cockpit
(``cockpit-for-pytorch``, needs ``backpack-for-pytorch``) is used when it imports; install both with
``pip install --no-deps cockpit-for-pytorch backpack-for-pytorch einops unfoldNd json-tricks`` plus
``matplotlib pandas seaborn`` (a plain ``pip install cockpit-for-pytorch`` pulls a CUDA torch through
torchvision, which the instruments do not need). Without it the values are compared against Cockpit's
published formulas (written out below from its documentation: the smallest theta / vartheta / nu that
passes, with BackPACK's per-sample gradients of the *mean* loss, i.e. ``g_i / B``).

1. Values: the norm, inner-product and orthogonality tests of a tanh MLP 8-32-32-3 (cross-entropy,
   float64) on one batch of 64, labkit vs Cockpit (target: equal to 1e-6).
2. Overhead per training step (MLP 64-128-128-10 on the 8x8 digits, float32, batch 128, all three tests every
   step): a plain SGD step (the baseline, measured in the same run), labkit's ``gradient_tests`` on the step's
   batch after it, and Cockpit's three quantities in its ``with cockpit(...)`` backward. Target: labkit's
   overhead lower than Cockpit's.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import torch
from torch import nn

import labkit
from labkit.batchsize import gradient_tests

KEYS = ("norm_test", "inner_product_test", "orthogonality_test")


def cockpit_available() -> str | None:
    """None when Cockpit imports, else the error as one line."""
    try:
        import cockpit  # noqa: F401
        from backpack import extend  # noqa: F401
    except Exception as err:  # an ImportError, or a failure inside the package on this torch
        return f"{type(err).__name__}: {err}"
    return None


def published_formulas(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Cockpit's three tests from its documented formulas, on BackPACK-style gradients of the mean loss."""
    params = list(model.parameters())
    b = len(x)
    rows = []
    for i in range(b):  # d(mean loss)/d(theta) restricted to example i: g_i / B
        li = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]) / b
        rows.append(torch.cat([t.reshape(-1) for t in torch.autograd.grad(li, params)]))
    bg = torch.stack(rows)
    grad = bg.sum(0)
    g2 = grad @ grad
    batch_l2 = bg.square().sum(1)
    dot = bg @ bg.T
    var_l1 = (b**2 * batch_l2.sum() - b * g2) / (b - 1)
    proj = b * dot.sum(1)
    var_proj = ((proj**2).sum() - b * g2**2) / (b - 1)
    var_perp = (b**2 * batch_l2.sum() - (proj**2 / g2).sum()) / (b - 1)
    return {"norm_test": float((var_l1 / b / g2).sqrt()), "inner_product_test": float((var_proj / b / g2**2).sqrt()),
            "orthogonality_test": float((var_perp / b / g2).sqrt())}


def cockpit_values(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    from backpack import extend
    from cockpit import Cockpit
    from cockpit.quantities import InnerTest, NormTest, OrthoTest
    from cockpit.utils.schedules import linear

    model = extend(model)
    lossfunc = extend(nn.CrossEntropyLoss())
    quantities = [NormTest(linear(1)), InnerTest(linear(1)), OrthoTest(linear(1))]
    cp = Cockpit(list(model.parameters()), quantities=quantities)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = lossfunc(model(x), y)
    losses = nn.functional.cross_entropy(model(x), y, reduction="none")
    with warnings.catch_warnings():  # BackPACK's full backward hook on an input that needs no gradient
        warnings.simplefilter("ignore", UserWarning)
        with cp(0, info={"batch_size": len(x), "individual_losses": losses, "loss": loss, "optimizer": opt}):
            loss.backward(create_graph=cp.create_graph(0))
    out = cp.get_output()[0]  # {step: {quantity: value}}
    return {"norm_test": out["NormTest"], "inner_product_test": out["InnerTest"],
            "orthogonality_test": out["OrthoTest"]}


def value_rows(why_not: str | None) -> list[tuple[str, float, float, float]]:
    torch.manual_seed(0)
    x = torch.randn(64, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    ours = gradient_tests(model, "cross_entropy", (x, y))
    theirs = published_formulas(model, x, y) if why_not else cockpit_values(model, x, y)
    return [(k, getattr(ours, k), theirs[k], abs(getattr(ours, k) - theirs[k]) / abs(theirs[k])) for k in KEYS]


def overhead_rows(steps: int, why_not: str | None) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    ds = labkit.data.digits(flat=True)
    x_all, y_all = ds.inputs.float(), ds.targets
    batches = [torch.randperm(len(x_all), generator=torch.Generator().manual_seed(t))[:128] for t in range(steps + 2)]

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def run(kind: str) -> float:
        model = make()
        lossfunc = nn.CrossEntropyLoss()
        cp = None
        if kind == "cockpit":
            from backpack import extend
            from cockpit import Cockpit
            from cockpit.quantities import InnerTest, NormTest, OrthoTest
            from cockpit.utils.schedules import linear

            model, lossfunc = extend(model), extend(lossfunc)
            cp = Cockpit(list(model.parameters()), quantities=[NormTest(linear(1)), InnerTest(linear(1)),
                                                                OrthoTest(linear(1))])
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        times = []
        for t, idx in enumerate(batches):
            x, y = x_all[idx], y_all[idx]
            start = time.perf_counter()
            opt.zero_grad()
            loss = lossfunc(model(x), y)
            if cp is not None:
                losses = nn.functional.cross_entropy(model(x), y, reduction="none")
                with cp(t, info={"batch_size": len(x), "individual_losses": losses, "loss": loss, "optimizer": opt}):
                    loss.backward(create_graph=cp.create_graph(t))
            else:
                loss.backward()
                if kind == "labkit":
                    gradient_tests(model, "cross_entropy", (x, y))
            opt.step()
            times.append(time.perf_counter() - start)
        times = sorted(times[2:])  # first steps set up; the lower half is the least disturbed by co-tenants
        return sum(times[: max(1, len(times) // 2)]) / max(1, len(times) // 2)

    rows = [("plain SGD step (baseline)", run("plain")), ("labkit gradient_tests", run("labkit"))]
    if why_not is None:
        rows.append(("Cockpit NormTest+InnerTest+OrthoTest", run("cockpit")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Full backward hook")
    why_not = cockpit_available()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print(f"torch {torch.__version__}, 1 thread, load average {load:.2f}")
    print("Cockpit: " + ("imported" if why_not is None else f"not available ({why_not}); its published formulas "
                         "are used for the values"))
    print(f"\n{'test (float64, batch 64)':24s} {'labkit':>14s} {'Cockpit' if why_not is None else 'formula':>14s} "
          f"{'rel. diff':>10s}")
    for k, a, b, d in value_rows(why_not):
        print(f"{k:24s} {a:14.10f} {b:14.10f} {d:10.1e}")
    rows = overhead_rows(8 if args.quick else 60, why_not)
    base = rows[0][1]
    print(f"\n{'per step (batch 128, float32)':40s} {'seconds':>9s} {'overhead':>9s}")
    for name, t in rows:
        print(f"{name:40s} {t:9.5f} {(t - base) / base:8.2f}x")


if __name__ == "__main__":
    main()
