"""Notebook 12's exercises: right answers pass, typical wrong ones fail with specific messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labkit.exercises import check


def norm_test_right(g):
    b = g.shape[0]
    mean = g.mean(0)
    return math.sqrt(((g - mean) ** 2).sum() / (b - 1) / (b * (mean @ mean)))


def next_batch_right(var, g2, theta, b):
    return max(b, math.ceil(var / (theta**2 * g2)))


def trust_right(w, g, eta, wd):
    return eta * float(w.norm()) / (float(g.norm()) + wd * float(w.norm()))


@pytest.mark.parametrize(("ex", "right"), [("batch_practice.norm_test", norm_test_right),
                                           ("batch_practice.next_batch", next_batch_right),
                                           ("batch_practice.trust_ratio", trust_right)])
def test_right_answers_pass(ex, right, capsys):
    assert check(ex, right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ex", "wrong", "message"),
    [
        ("batch_practice.norm_test", lambda g: norm_test_right(g) ** 2, "square root"),
        ("batch_practice.norm_test", lambda g: norm_test_right(g) * math.sqrt(g.shape[0]), "batch *mean*"),
        ("batch_practice.norm_test",
         lambda g: norm_test_right(g) * math.sqrt((g.shape[0] - 1) / g.shape[0]), "divisor B - 1"),
        ("batch_practice.next_batch", lambda v, g2, t, b: math.ceil(v / (t**2 * g2)), "never shrink"),
        ("batch_practice.next_batch", lambda v, g2, t, b: max(b, math.ceil(v / g2)), "next batch"),
        ("batch_practice.trust_ratio", lambda w, g, eta, wd: eta * float(w.norm()) / float(g.norm()), "weight-decay"),
        ("batch_practice.trust_ratio",
         lambda w, g, eta, wd: eta * float(g.norm()) / (float(w.norm()) + wd * float(g.norm())), "upside down"),
    ],
)
def test_wrong_answers_fail_specifically(ex, wrong, message, capsys):
    assert not check(ex, wrong)
    assert message in capsys.readouterr().out


def test_a_wrong_shape_is_reported(capsys):
    assert not check("batch_practice.norm_test", lambda g: np.zeros(3))
    capsys.readouterr()
