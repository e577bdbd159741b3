"""The batch-size exercises: right answers pass, typical wrong ones fail with specific messages."""

from __future__ import annotations

import math

import pytest

from labkit.exercises import check


def b_simple_right(x_small, x_big, b_small, b_big):
    tr = (x_small - x_big) / (1 / b_small - 1 / b_big)
    g2 = (b_big * x_big - b_small * x_small) / (b_big - b_small)
    return tr / g2


def lr_right(lr, k, optimizer):
    return lr * k if optimizer == "sgd" else lr * math.sqrt(k)


def b_crit_right(b1, s1, b2, s2):
    e_min = (s1 - s2) / (1 / b1 - 1 / b2)
    return e_min / (s1 - e_min / b1)


@pytest.mark.parametrize(
    ("ex", "right"),
    [("batchsize.b_simple_two_batch", b_simple_right), ("batchsize.scale_lr_4x", lr_right),
     ("batchsize.b_crit_two_points", b_crit_right)],
)
def test_right_answers_pass(ex, right, capsys):
    assert check(ex, right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ex", "wrong", "message"),
    [
        ("batchsize.b_simple_two_batch", lambda xs, xb, bs, bb: 1 / b_simple_right(xs, xb, bs, bb),
         "noise over signal"),
        ("batchsize.b_simple_two_batch", lambda xs, xb, bs, bb: (xs - xb) / (1 / bs - 1 / bb), "B_simple"),
        ("batchsize.b_simple_two_batch", lambda xs, xb, bs, bb: (1.0, 2.0), "not a tuple"),
        ("batchsize.scale_lr_4x", lambda lr, k, o: lr * k, "linear rule"),
        ("batchsize.scale_lr_4x", lambda lr, k, o: lr * math.sqrt(k), "square-root rule"),
        ("batchsize.scale_lr_4x", lambda lr, k, o: lr / k if o == "sgd" else lr / math.sqrt(k), "not shrink"),
        ("batchsize.b_crit_two_points", lambda b1, s1, b2, s2: 2 * b_crit_right(b1, s1, b2, s2), "factor of 2"),
        ("batchsize.b_crit_two_points", lambda b1, s1, b2, s2: s1 / s2, "B_crit"),
    ],
)
def test_wrong_answers_fail_specifically(ex, wrong, message, capsys):
    assert not check(ex, wrong)
    assert message in capsys.readouterr().out


def test_raising_and_missing_answers_are_reported(capsys):
    def boom(*args):
        raise ZeroDivisionError("oops")

    assert not check("batchsize.b_crit_two_points", boom)
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not check("batchsize.scale_lr_4x", None)
    assert "no answer" in capsys.readouterr().out


@pytest.mark.parametrize("ex", ["batchsize.b_simple_two_batch", "batchsize.scale_lr_4x"])
def test_raising_function_is_reported(ex, capsys):
    def boom(*args):
        raise ValueError("student bug")

    assert check(ex, boom) is False  # reported, nothing escapes
    out = capsys.readouterr().out
    assert "your function raised" in out
    assert "ValueError" in out
