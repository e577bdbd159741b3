"""Exercises for notebook 01 (Hessian spectrum): power iteration with HVPs, outlier counts, the EoS step size."""

from __future__ import annotations

import math

import torch

from labkit.exercises._core import Wrong, call_student, exercise, expect_close, expect_integer


def _case(seed: int, dim: int = 60) -> tuple[torch.Tensor, float]:
    """A symmetric matrix with a dominant positive eigenvalue (gap ratio 0.6) and a negative bulk."""
    g = torch.Generator().manual_seed(seed)
    top = 3.0 + 7.0 * float(torch.rand((), generator=g, dtype=torch.float64))
    ev = torch.cat([torch.tensor([top, 0.6 * top], dtype=torch.float64),
                    (torch.rand(dim - 2, generator=g, dtype=torch.float64) - 0.7) * top])
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return (Q * ev) @ Q.T, top


@exercise(
    "hessian.power_iteration",
    title="Top Hessian eigenvalue by power iteration with Hessian-vector products",
    hints=[
        "Start from a random vector, torch.randn(dim, generator=torch.Generator().manual_seed(seed)), "
        "and normalise it.",
        "Repeat: w = hvp(v); v = w / w.norm(). The Rayleigh quotient v @ hvp(v) estimates the eigenvalue.",
        "Return a Python float (or a 0-d tensor), the eigenvalue, not the vector.",
    ],
)
def _power_iteration(fn) -> None:
    for seed in (0, 1, 2):
        A, top = _case(seed)
        calls = []

        def hvp(v: torch.Tensor, A: torch.Tensor = A, calls: list = calls) -> torch.Tensor:
            if not isinstance(v, torch.Tensor) or v.shape != (A.shape[0],):
                raise Wrong(f"hvp takes one vector of shape ({A.shape[0]},), got "
                            f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
            calls.append(1)
            return A @ v.to(A.dtype)

        value = call_student(fn, hvp, A.shape[0], steps=100, seed=seed)
        if isinstance(value, torch.Tensor) and value.numel() > 1:
            raise Wrong("you returned a vector: return the eigenvalue (a number), the Rayleigh quotient v @ hvp(v)")
        if not calls:
            raise Wrong("your function never called hvp: the only access to the Hessian is through hvp(v)")
        if len(calls) > 1000:
            raise Wrong(f"your function called hvp {len(calls)} times for steps=100: use about one call per step")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Wrong(f"return a number, got {type(value).__name__}") from None
        if not math.isfinite(number):
            raise Wrong("your eigenvalue is NaN or infinite: normalise v at every step (v = w / w.norm())")
        expect_close(number, top, rtol=1e-4, what=f"the top eigenvalue (case {seed})")


@exercise(
    "hessian.outliers_7_classes",
    title="How many outliers at initialisation for 7 outputs and cross-entropy (data with 3 classes)?",
    hints=[
        "At a uniform-softmax initialisation the output Hessian is the same for every example: what sets its rank, "
        "the data or the output layer?",
        "The softmax does not change when the same number is added to every logit: "
        "how many directions does the output Hessian diag(p) - p p^T see with 7 outputs?",
    ],
)
def _outliers(answer) -> None:
    from labkit.hessian.probes import outlier_count

    # the physics, measured at check time: 3 data classes, 7 outputs, readout started near zero
    expected = outlier_count(3, 7)[1]
    if isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == 2:
        raise Wrong("2 = (data classes - 1): at initialisation the count is set by the output layer, not the data")
    expect_integer(answer, expected, what="the number of outliers")


@exercise(
    "hessian.eos_lr",
    title="Largest stable learning rate for momentum",
    hints=[
        "For plain gradient descent the edge of stability is lr * lambda_max = 2.",
        "Heavy-ball momentum beta raises the bound to lr * lambda_max = 2 (1 + beta).",
    ],
)
def _eos_lr(fn) -> None:
    for lam, beta in ((50.0, 0.0), (50.0, 0.9), (12.5, 0.5)):
        value = call_student(fn, lam, beta)
        if beta == 0.0:
            expect_close(value, 2 / lam, rtol=1e-6, what=f"the largest stable lr for lambda_max={lam}, beta=0")
        else:
            expect_close(value, 2 * (1 + beta) / lam, rtol=1e-6,
                         what=f"the largest stable lr for lambda_max={lam}, beta={beta}",
                         mistakes=[(2 / lam, "with momentum the threshold is not 2/lambda_max: momentum enlarges it")])
