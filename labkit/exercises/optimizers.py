"""Exercises of notebook 09 (large learning rates): each optimiser's edge, Adam's preconditioned sharpness, EMA."""

from __future__ import annotations

import torch

from labkit import edge, trajectory
from labkit.exercises._core import call_student, exercise, expect_close


@exercise(
    "optimizers.threshold",
    title="The edge-of-stability threshold of GD, heavy ball and Adam",
    hints=[
        "On a quadratic with curvature lam, GD p -= lr g is stable iff lr lam < 2.",
        "Heavy ball m = beta m + g, p -= lr m: iff lr lam < 2 + 2 beta.",
        "Adam with P frozen is heavy ball on P^-1/2 H P^-1/2 with momentum beta1 and an EMA of the gradient: "
        "m = beta1 m + (1 - beta1) g, an effective step lr (1 - beta1). Threshold (2 + 2 beta1) / ((1 - beta1) lr).",
    ],
)
def _threshold(fn) -> None:
    for lr in (0.1, 0.003):
        for optimizer, beta in (("sgd", 0.0), ("momentum", 0.9), ("momentum", 0.5), ("adam", 0.9), ("adam", 0.8)):
            got = call_student(fn, lr, optimizer, beta)
            want = edge.threshold(lr, optimizer, beta=beta)
            mistakes = [(2 / lr, f"for {optimizer} you gave GD's 2/lr: "
                         + ("momentum raises the threshold" if optimizer == "momentum" else
                            "Adam is heavy ball on the preconditioned curvature, with effective step lr (1 - beta1)"))]
            if optimizer == "adam":
                mistakes.insert(0, ((2 + 2 * beta) / lr, "for adam you gave heavy ball's (2 + 2 beta1)/lr: Adam's m "
                                    "averages the gradient with weight (1 - beta1), so its effective step is "
                                    "lr (1 - beta1)"))
            expect_close(got, want, rtol=1e-9, what=f"the threshold of {optimizer} (beta={beta}) at lr={lr}",
                         mistakes=mistakes)


@exercise(
    "optimizers.preconditioned_sharpness",
    title="The sharpness Adam sees",
    hints=[
        "Adam divides the step by P = sqrt(v_hat) + eps, elementwise.",
        "The curvature along its steps is that of P^-1/2 H P^-1/2: scale rows and columns of H by P^-1/2.",
        "s = 1 / (v_hat.sqrt() + eps).sqrt(); torch.linalg.eigvalsh(s[:, None] * H * s[None, :]).max()",
    ],
)
def _preconditioned(fn) -> None:
    g = torch.Generator().manual_seed(5)
    for n in (4, 12):
        A = torch.randn(n, n, generator=g, dtype=torch.float64)
        H = A @ A.T / n
        v_hat = torch.rand(n, generator=g, dtype=torch.float64) ** 4 * 10
        P = v_hat.sqrt() + 1e-8
        S = torch.diag(P.rsqrt())
        want = float(torch.linalg.eigvalsh(S @ H @ S).max())
        got = call_student(fn, H.clone(), v_hat.clone(), 1e-8)
        Sv = torch.diag(1 / (v_hat + 1e-8).sqrt())
        expect_close(got, want, rtol=1e-6, what=f"the preconditioned sharpness ({n} parameters)", mistakes=[
            (float(torch.linalg.eigvalsh(H).max()),
             "that is the raw sharpness of H: precondition it by P = sqrt(v_hat) + eps first"),
            (float(torch.linalg.eigvalsh(Sv @ H @ Sv).max()),
             "you scaled by P^-1 on both sides (P^-1 H P^-1): use P^-1/2, i.e. 1/sqrt(sqrt(v_hat)+eps)")])


@exercise(
    "optimizers.ema_rho",
    title="The EMA decay for a larger batch",
    hints=[
        "An EMA with decay rho forgets with weight rho per step; a step at a kappa-times larger batch is worth "
        "kappa of the old steps.",
        "Busbridge et al.: rho -> rho ** kappa (so the EMA forgets the same amount per example).",
    ],
)
def _ema_rho(fn) -> None:
    for rho, kappa in ((0.99, 2), (0.999, 8), (0.9, 4), (0.9999, 64)):
        got = call_student(fn, rho, kappa)
        want = trajectory.ema_scaling(rho, kappa)
        expect_close(got, want, rtol=1e-9, what=f"rho for kappa={kappa} (rho={rho})", mistakes=[
            (1 - (1 - rho) * kappa, "1 - kappa (1 - rho) is only the first-order approximation of the rule (and "
                                    "goes negative for large kappa): use rho ** kappa"),
            (rho ** (1 / kappa), "a larger batch takes fewer steps, so each step must forget more: rho ** kappa, "
                                 "not rho ** (1 / kappa)")])
