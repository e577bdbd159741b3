"""Checkers of labkit.exercises.hessian: right answers pass, wrong ones fail with a specific message."""

import torch

from labkit.exercises import check


def _right(hvp, dim, steps=100, seed=0):
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = v / v.norm()
    for _ in range(steps):
        w = hvp(v)
        v = w / w.norm()
    return float(v @ hvp(v))


def _verdict(capsys, id, answer):
    ok = check(id, answer)
    return ok, capsys.readouterr().out


def test_power_iteration_right_answer_passes(capsys):
    ok, out = _verdict(capsys, "hessian.power_iteration", _right)
    assert ok, out


def test_power_iteration_wrong_answers_are_explained(capsys):
    def vector(hvp, dim, steps=100, seed=0):
        v = torch.ones(dim, dtype=torch.float64)
        for _ in range(steps):
            v = hvp(v) / hvp(v).norm()
        return v

    def unnormalised(hvp, dim, steps=100, seed=0):
        v = torch.ones(dim, dtype=torch.float64)
        for _ in range(steps * 5):
            v = hvp(v)
        return float(v @ hvp(v) / (v @ v))

    def too_few_steps(hvp, dim, steps=100, seed=0):
        return _right(hvp, dim, steps=2, seed=seed)

    def never_calls(hvp, dim, steps=100, seed=0):
        return 1.0

    def raises(hvp, dim, steps=100, seed=0):
        raise RuntimeError("boom")

    for fn, words in [(vector, "returned a vector"), (unnormalised, "NaN or infinite"),
                      (too_few_steps, "not within tolerance"), (never_calls, "never called hvp"),
                      (raises, "RuntimeError: boom")]:
        ok, out = _verdict(capsys, "hessian.power_iteration", fn)
        assert not ok and words in out, (fn.__name__, out)


def test_outlier_prediction(capsys):
    assert _verdict(capsys, "hessian.outliers_7_classes", 6)[0]  # 7 outputs - 1, whatever the 3 data classes
    ok, out = _verdict(capsys, "hessian.outliers_7_classes", 2)  # data classes - 1: the misconception
    assert not ok and "output layer" in out
    ok, out = _verdict(capsys, "hessian.outliers_7_classes", 7)
    assert not ok and "too high" in out
    ok, out = _verdict(capsys, "hessian.outliers_7_classes", "six")
    assert not ok and "whole number" in out


def test_eos_lr(capsys):
    assert _verdict(capsys, "hessian.eos_lr", lambda lam, beta: 2 * (1 + beta) / lam)[0]
    ok, out = _verdict(capsys, "hessian.eos_lr", lambda lam, beta: 2 / lam)
    assert not ok and "momentum enlarges it" in out
    ok, out = _verdict(capsys, "hessian.eos_lr", lambda lam, beta: 1 / lam)
    assert not ok and "factor of 0.5" in out


def test_eos_lr_reports_a_raising_function(capsys):
    def raises(lam, beta):
        raise ZeroDivisionError("oops")

    ok, out = _verdict(capsys, "hessian.eos_lr", raises)
    assert not ok and "your function raised" in out and "ZeroDivisionError: oops" in out
