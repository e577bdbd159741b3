"""The normalisation exercises: right answers pass, typical wrong ones fail with specific messages."""

from __future__ import annotations

import pytest
import torch

from labkit.exercises import check


def bn(x, eps=1e-5):
    return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps)


@pytest.mark.parametrize(("ex", "right"), [("normalization.batch_norm", bn),
                                           ("normalization.weight_norm_growth", lambda v, lr, g: v + lr**2 * g)])
def test_right_answers_pass(ex, right, capsys):
    assert check(ex, right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ex", "wrong", "message"),
    [
        ("normalization.batch_norm",
         lambda x, eps: (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + eps),
         "layer norm"),
        ("normalization.batch_norm", lambda x, eps: (x - x.mean(0)) / torch.sqrt(x.var(0) + eps), "biased variance"),
        ("normalization.batch_norm", lambda x, eps: x.mean(0), "shape"),
        ("normalization.batch_norm", lambda x, eps: x - x.mean(0), "normalised"),
        ("normalization.weight_norm_growth", lambda v, lr, g: v + lr * g, "lr^2"),
        ("normalization.weight_norm_growth", lambda v, lr, g: v - lr**2 * g, "Pythagoras"),
    ],
)
def test_wrong_answers_fail_specifically(ex, wrong, message, capsys):
    assert not check(ex, wrong)
    assert message in capsys.readouterr().out
