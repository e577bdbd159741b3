"""Checkers of labkit.exercises.width: right answers pass, wrong ones fail with a specific message."""

import numpy as np

from labkit.exercises import check


def _verdict(capsys, id, answer):
    ok = check(id, answer)
    return ok, capsys.readouterr().out


def test_mup_lr_multipliers(capsys):
    right = lambda m, opt: (m, 1.0, 1 / m) if opt == "sgd" else (1.0, 1 / m, 1 / m)  # noqa: E731
    assert _verdict(capsys, "width.mup_lr_multipliers", right)[0]
    swapped = lambda m, opt: right(m, "adam" if opt == "sgd" else "sgd")  # noqa: E731
    ok, out = _verdict(capsys, "width.mup_lr_multipliers", swapped)
    assert not ok and "multipliers for" in out
    ok, out = _verdict(capsys, "width.mup_lr_multipliers", lambda m, opt: 1.0)
    assert not ok and "three numbers" in out


def test_slope(capsys):
    assert _verdict(capsys, "width.slope", lambda w, v: np.polyfit(np.log(w), np.log(v), 1)[0])[0]
    ok, out = _verdict(capsys, "width.slope", lambda w, v: np.polyfit(w, v, 1)[0])
    assert not ok and "log-log" in out
