"""Every known wrong turn an exercise names (``expect_close(..., mistakes=...)``) is diagnosed when a student
takes it: one wrong answer per mistake, each asserted to fail with its own message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkit.exercises import check


def _ntk_without_bias(W, b, v, x1, x2):
    s1, s2 = v * (x1 @ W.T + b > 0), v * (x2 @ W.T + b > 0)
    h1, h2 = torch.relu(x1 @ W.T + b), torch.relu(x2 @ W.T + b)
    return h1 @ h2.T + (s1 @ s2.T) * (x1 @ x2.T)  # the hidden biases' term s1 s2^T left out


def _chi1_nodes_scaled_by_q(dphi, sw2, q):
    z, w = np.polynomial.hermite_e.hermegauss(80)
    return sw2 * float(np.sum(w * dphi(q * z) ** 2) / np.sum(w))


CASES = [
    ("signal.relu_qmap", lambda q, sw2, sb2: sw2 * q + sb2, "linear network's map"),
    ("signal.relu_qmap", lambda q, sw2, sb2: sw2 * q / 2, "bias variance sigma_b^2 is missing"),
    ("signal.chi1_quadrature", _chi1_nodes_scaled_by_q, "scale the nodes by sqrt(q)"),
    ("hessian.eos_lr", lambda lam, beta: 2 / lam, "with momentum the threshold is not 2/lambda_max"),
    ("optimizers.threshold", lambda lr, opt, beta: 2 / lr if opt == "momentum" else
     {"sgd": 2 / lr, "adam": (2 + 2 * beta) / lr}[opt], "for momentum you gave GD's 2/lr"),
    ("optimizers.threshold", lambda lr, opt, beta: (2 + 2 * beta) / lr, "heavy ball's (2 + 2 beta1)/lr"),
    ("optimizers.threshold", lambda lr, opt, beta: (2 + 2 * beta) / lr if opt == "momentum" else 2 / lr,
     "Adam is heavy ball on the"),
    ("fractal.max_stable_lr", lambda H: 2 / np.linalg.eigvalsh(H).min(), "that is 2 / lambda_min"),
    ("hessian.outliers_7_classes", "6", "is the text '6', not a number: remove the quotes"),
    ("optimizers.ema_rho", lambda rho, kappa: 1 - (1 - rho) * kappa, "first-order approximation"),
    ("optimizers.ema_rho", lambda rho, kappa: rho ** (1 / kappa), "not rho ** (1 / kappa)"),
    ("batchsize.scale_lr_4x", lambda lr, k, opt: lr * (math.sqrt(k) if opt == "sgd" else k), "it is the other one"),
    ("batchsize.scale_lr_4x", lambda lr, k, opt: lr / k, "should grow with the batch, not shrink"),
    ("ntk.two_layer_kernel", _ntk_without_bias, "the contribution of the hidden biases b is missing"),
]


@pytest.mark.parametrize(("ex", "wrong", "message"), CASES, ids=[f"{c[0]}:{c[2][:24]}" for c in CASES])
def test_each_named_mistake_is_diagnosed(ex, wrong, message, capsys):
    assert not check(ex, wrong)
    assert message in capsys.readouterr().out
