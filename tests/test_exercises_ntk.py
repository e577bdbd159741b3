"""Checkers of the NTK exercises: right answers pass, typical wrong answers fail with specific messages."""

import torch

from labkit.exercises import check


def right_kernel(W, b, v, x1, x2):
    pre1, pre2 = x1 @ W.T + b, x2 @ W.T + b
    h1, h2 = torch.relu(pre1), torch.relu(pre2)
    s1, s2 = v * (pre1 > 0), v * (pre2 > 0)
    return h1 @ h2.T + (s1 @ s2.T) * (x1 @ x2.T + 1)


def test_two_layer_kernel(capsys):
    assert check("ntk.two_layer_kernel", right_kernel)
    assert "correct" in capsys.readouterr().out

    def no_bias(W, b, v, x1, x2):
        pre1, pre2 = x1 @ W.T + b, x2 @ W.T + b
        s1, s2 = v * (pre1 > 0), v * (pre2 > 0)
        return torch.relu(pre1) @ torch.relu(pre2).T + (s1 @ s2.T) * (x1 @ x2.T)

    assert not check("ntk.two_layer_kernel", no_bias)
    assert "hidden biases b" in capsys.readouterr().out

    def no_readout(W, b, v, x1, x2):
        return right_kernel(W, b, v, x1, x2) - torch.relu(x1 @ W.T + b) @ torch.relu(x2 @ W.T + b).T

    assert not check("ntk.two_layer_kernel", no_readout)
    assert "readout weights v" in capsys.readouterr().out

    assert not check("ntk.two_layer_kernel", lambda W, b, v, x1, x2: 2 * right_kernel(W, b, v, x1, x2))
    assert "factor of 2" in capsys.readouterr().out

    assert not check("ntk.two_layer_kernel", lambda W, b, v, x1, x2: right_kernel(W, b, v, x1, x2).T)
    assert "shape" in capsys.readouterr().out

    def crashes(W, b, v, x1, x2):
        return W @ x1  # wrong shapes: the student's own error is reported
    assert not check("ntk.two_layer_kernel", crashes)
    assert "your function raised RuntimeError" in capsys.readouterr().out


def test_decay_steps(capsys):
    assert check("ntk.decay_steps", lambda lam, n, lr: n / (2 * lr * lam))
    assert "correct" in capsys.readouterr().out
    assert not check("ntk.decay_steps", lambda lam, n, lr: n / (lr * lam))
    assert "factor of 2" in capsys.readouterr().out
    assert not check("ntk.decay_steps", lambda lam, n, lr: 1 / (lr * lam))
    assert "does not depend on n" in capsys.readouterr().out
    assert not check("ntk.decay_steps", None)
    assert "no answer yet" in capsys.readouterr().out


def test_decay_steps_accepts_exact_discrete_gd(capsys):
    """Discrete GD multiplies the residual by 1 - 2 lr lam / n per step: -1 / log of that is also right."""
    import math

    assert check("ntk.decay_steps", lambda lam, n, lr: -1 / math.log(1 - 2 * lr * lam / n))
    assert "correct" in capsys.readouterr().out
    # the discrete formula with the factor 2 dropped is still wrong
    assert not check("ntk.decay_steps", lambda lam, n, lr: -1 / math.log(1 - lr * lam / n))
    # one formula for some cases and the other for the rest is not an answer
    mixed = lambda lam, n, lr: n / (2 * lr * lam) if lam > 1 else -1 / math.log(1 - 2 * lr * lam / n)  # noqa: E731
    assert not check("ntk.decay_steps", mixed)
    assert "mix" in capsys.readouterr().out


def _raises(*args):
    raise ValueError("student bug")


def test_decay_steps_reports_raising_function(capsys):
    assert check("ntk.decay_steps", _raises) is False  # returns, nothing escapes
    out = capsys.readouterr().out
    assert "your function raised ValueError: student bug" in out


def test_kernel_regression(capsys):
    assert check("ntk.kernel_regression", lambda k, kx, y: kx @ torch.linalg.solve(k, y))
    assert "correct" in capsys.readouterr().out
    assert not check("ntk.kernel_regression", lambda k, kx, y: kx @ y)  # forgot the inverse kernel
    assert "your test predictions is not within tolerance" in capsys.readouterr().out
    assert not check("ntk.kernel_regression", lambda k, kx, y: y[: kx.shape[0]])
    assert "repeat the training targets" in capsys.readouterr().out
    assert not check("ntk.kernel_regression", lambda k, kx, y: (kx @ torch.linalg.solve(k, y)).T)
    assert "shape" in capsys.readouterr().out

    def not_done(k, kx, y):
        raise NotImplementedError

    assert not check("ntk.kernel_regression", not_done)
    assert "not implemented" in capsys.readouterr().out


def test_kernel_regression_reports_raising_function(capsys):
    assert check("ntk.kernel_regression", _raises) is False
    assert "your function raised ValueError: student bug" in capsys.readouterr().out


def right_posterior(k, kx, kxx, y, noise):
    a = torch.linalg.solve(k + noise * torch.eye(len(k), dtype=k.dtype), kx.T).T
    return a @ y, kxx - a @ kx.T


def test_gp_posterior(capsys):
    assert check("ntk.gp_posterior", right_posterior)
    assert "correct" in capsys.readouterr().out
    assert not check("ntk.gp_posterior", lambda k, kx, kxx, y, noise: (right_posterior(k, kx, kxx, y, noise)[0], kxx))
    assert "prior covariance" in capsys.readouterr().out
    assert not check("ntk.gp_posterior", lambda k, kx, kxx, y, noise: right_posterior(k, kx, kxx, y, 1e-12))
    assert "ignores the noise" in capsys.readouterr().out

    def explained(k, kx, kxx, y, noise):
        mean, cov = right_posterior(k, kx, kxx, y, noise)
        return mean, kxx - cov

    assert not check("ntk.gp_posterior", explained)
    assert "prior minus it" in capsys.readouterr().out
    assert not check("ntk.gp_posterior", lambda k, kx, kxx, y, noise: right_posterior(k, kx, kxx, y, noise)[0])
    assert "pair" in capsys.readouterr().out


def right_coverage(mean, var, y, level):
    z = 2**0.5 * torch.erfinv(torch.tensor(level, dtype=torch.float64))
    return float(((y - mean).abs() <= z * var.sqrt()).double().mean())


def test_coverage(capsys):
    assert check("ntk.coverage", right_coverage)
    assert "correct" in capsys.readouterr().out
    assert not check("ntk.coverage", lambda m, v, y, level: float(((y - m).abs() <= v.sqrt()).double().mean()))
    assert "one-standard-deviation" in capsys.readouterr().out
    z90 = 1.6448536269514722
    assert not check("ntk.coverage", lambda m, v, y, level: float(((y - m).abs() <= z90 * v).double().mean()))
    assert "variance" in capsys.readouterr().out
    assert not check("ntk.coverage", lambda mean, var, y, level: level)
    assert "not within tolerance" in capsys.readouterr().out
