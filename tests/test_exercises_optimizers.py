"""Checkers of labkit.exercises.optimizers: right answers pass, wrong ones fail with a specific message."""

import torch

from labkit.exercises import check


def _verdict(capsys, id, answer):
    ok = check(id, answer)
    return ok, capsys.readouterr().out


def test_threshold(capsys):
    def right(lr, optimizer, beta):
        return 2 / lr if optimizer == "sgd" else (2 + 2 * beta) / lr * (1 / (1 - beta) if optimizer == "adam" else 1)

    assert _verdict(capsys, "optimizers.threshold", right)[0]
    ok, out = _verdict(capsys, "optimizers.threshold", lambda lr, o, b: 2 / lr if o == "sgd" else (2 + 2 * b) / lr)
    assert not ok and "effective step is lr (1 - beta1)" in out
    ok, out = _verdict(capsys, "optimizers.threshold", lambda lr, o, b: 2 / lr)
    assert not ok and "momentum raises the threshold" in out


def test_preconditioned_sharpness(capsys):
    def right(H, v_hat, eps):
        s = 1 / (v_hat.sqrt() + eps).sqrt()
        return float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :]).max())

    assert _verdict(capsys, "optimizers.preconditioned_sharpness", right)[0]
    ok, out = _verdict(capsys, "optimizers.preconditioned_sharpness", lambda H, v, e: torch.linalg.eigvalsh(H).max())
    assert not ok and "raw sharpness" in out

    def both_sides(H, v_hat, eps):
        s = 1 / (v_hat.sqrt() + eps)
        return float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :]).max())

    ok, out = _verdict(capsys, "optimizers.preconditioned_sharpness", both_sides)
    assert not ok and "P^-1/2" in out


def test_ema_rho(capsys):
    assert _verdict(capsys, "optimizers.ema_rho", lambda rho, k: rho**k)[0]
    ok, out = _verdict(capsys, "optimizers.ema_rho", lambda rho, k: 1 - (1 - rho) * k)
    assert not ok and "first-order" in out
    ok, out = _verdict(capsys, "optimizers.ema_rho", lambda rho, k: rho ** (1 / k))
    assert not ok and "forget more" in out
