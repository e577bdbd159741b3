"""The signal-propagation exercises: right answers pass, typical wrong ones fail with specific messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labkit.exercises import check


def relu_qmap(q, sw2, sb2):
    return sw2 * q / 2 + sb2


def chi1(dphi, sw2, q):
    z, w = np.polynomial.hermite_e.hermegauss(80)
    return sw2 * np.sum(w * dphi(np.sqrt(q) * z) ** 2) / np.sum(w)


def max_depth(chi_c):
    return math.inf if chi_c >= 1 else -6 / math.log(chi_c)


@pytest.mark.parametrize(("ex", "right"), [("signal.relu_qmap", relu_qmap), ("signal.chi1_quadrature", chi1),
                                           ("signal.max_trainable_depth", max_depth)])
def test_right_answers_pass(ex, right, capsys):
    assert check(ex, right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ex", "wrong", "message"),
    [
        ("signal.relu_qmap", lambda q, sw2, sb2: sw2 * q + sb2, "linear network"),
        ("signal.relu_qmap", lambda q, sw2, sb2: sw2 * q / 2, "sigma_b^2 is missing"),
        ("signal.chi1_quadrature", lambda d, sw2, q: chi1(d, sw2, q) * math.sqrt(2 * math.pi), "sqrt(2 pi)"),
        ("signal.chi1_quadrature", lambda d, sw2, q: chi1(d, sw2, q) / sw2, "sigma_w^2 is missing"),
        ("signal.chi1_quadrature", lambda d, sw2, q: chi1(d, sw2, q**2), "sqrt(q)"),
        ("signal.max_trainable_depth", lambda c: max_depth(c) / 6, "xi_c itself"),
        ("signal.max_trainable_depth", lambda c: -max_depth(c), "sign"),
        ("signal.max_trainable_depth", lambda c: -6 / math.log(c) if c < 1 else 0.0, "math.inf"),
    ],
)
def test_wrong_answers_fail_specifically(ex, wrong, message, capsys):
    assert not check(ex, wrong)
    assert message in capsys.readouterr().out


def test_raising_answers_are_reported(capsys):
    def boom(*args):
        raise ZeroDivisionError("oops")

    assert not check("signal.relu_qmap", boom)
    assert "ZeroDivisionError" in capsys.readouterr().out
