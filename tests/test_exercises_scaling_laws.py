"""The scaling-law exercises: right answers pass, typical wrong ones fail with specific messages."""

import numpy as np
import pytest

from labkit.exercises import check, list_exercises


def best_size_right(curves, budget):
    best, best_loss = None, np.inf
    for size, (compute, loss) in curves.items():
        within = compute <= budget
        if within.any() and loss[within][-1] < best_loss:
            best, best_loss = size, loss[within][-1]
    return best


def test_registered():
    assert {"scaling_laws.loglog_slope", "scaling_laws.variance_limited", "scaling_laws.frontier_point"} <= set(
        list_exercises())


@pytest.mark.parametrize(("ex", "right"), [
    ("scaling_laws.loglog_slope", lambda n, l_: np.polyfit(np.log(n), np.log(l_), 1)[0]),
    ("scaling_laws.variance_limited", lambda l_inf, n, d: l_inf * (1 + n / (d - n - 1))),
    ("scaling_laws.frontier_point", best_size_right),
])
def test_right_answers_pass(ex, right, capsys):
    assert check(ex, right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ex", "wrong", "message"),
    [
        ("scaling_laws.loglog_slope", lambda n, l_: -np.polyfit(np.log(n), np.log(l_), 1)[0], "sign"),
        ("scaling_laws.loglog_slope", lambda n, l_: np.polyfit(np.log10(n), np.log(l_), 1)[0], "log"),
        ("scaling_laws.variance_limited", lambda l_inf, n, d: l_inf * n / (d - n - 1), "excess only"),
        ("scaling_laws.variance_limited", lambda l_inf, n, d: l_inf * (1 + n / d), "D - N - 1"),
        ("scaling_laws.frontier_point", lambda curves, budget: max(curves), "another size"),
        ("scaling_laws.frontier_point", lambda curves, budget: min(curves), "another size"),
    ],
)
def test_wrong_answers_fail_specifically(ex, wrong, message, capsys):
    assert not check(ex, wrong)
    assert message in capsys.readouterr().out


def test_missing_answer_is_reported(capsys):
    assert not check("scaling_laws.variance_limited", None)
    assert "no answer" in capsys.readouterr().out
