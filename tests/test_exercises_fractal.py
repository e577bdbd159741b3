"""The fractal exercises: right answers pass, specific wrong answers fail with a message, crashes are reported."""

import numpy as np

from labkit.exercises import check
from labkit.fractal.dimension import box_count


def right_lr(h):
    return 2 / np.linalg.eigvalsh(h).max()


def right_boundary(c):
    b = np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, :-1], c[1:, 1:]])
    return b.any(0) & ~b.all(0)


def test_right_answers_pass():
    assert check("fractal.max_stable_lr", right_lr)
    assert check("fractal.boundary", right_boundary)
    assert check("fractal.box_count", box_count)


def test_wrong_answers_fail_with_specific_messages(capsys):
    assert not check("fractal.max_stable_lr", lambda h: 1 / np.linalg.eigvalsh(h).max())
    assert "factor of 0.5" in capsys.readouterr().out
    assert not check("fractal.max_stable_lr", lambda h: 2 / np.linalg.eigvalsh(h).min())
    assert "that is 2 / lambda_min" in capsys.readouterr().out
    assert not check("fractal.boundary", lambda c: c[:-1, :-1] != c[1:, 1:])
    out = capsys.readouterr().out
    assert "missing" in out or "one phase" in out
    assert not check("fractal.boundary", lambda c: c)
    assert "shape" in capsys.readouterr().out
    assert not check("fractal.box_count", lambda m, s: int(m.sum()))
    assert "your count" in capsys.readouterr().out


def test_crashing_and_missing_answers_are_reported(capsys):
    def boom(h):
        raise RuntimeError("oops")

    assert not check("fractal.max_stable_lr", boom)
    assert "RuntimeError" in capsys.readouterr().out
    assert not check("fractal.boundary", None)
    assert "no answer" in capsys.readouterr().out


def test_box_count_wrong_answers_say_which_way(capsys):
    def no_padding(m, s):  # drops the partial boxes at the edges: too few boxes
        h, w = (m.shape[0] // s) * s, (m.shape[1] // s) * s
        return int(m[:h, :w].reshape(h // s, s, w // s, s).any(axis=(1, 3)).sum())

    assert not check("fractal.box_count", no_padding)
    assert "too low" in capsys.readouterr().out
    assert not check("fractal.box_count", lambda m, s: int(m.sum()))  # pixels, not boxes: too many
    assert "too high" in capsys.readouterr().out
    assert not check("fractal.box_count", lambda m, s: 2.5)
    assert "whole number" in capsys.readouterr().out


def test_every_function_exercise_reports_a_raising_student_function(capsys):
    def boom(*args):
        raise ValueError("bad reshape")

    for id in ("fractal.max_stable_lr", "fractal.boundary", "fractal.box_count"):
        assert not check(id, boom)
        out = capsys.readouterr().out
        assert "your function raised ValueError: bad reshape" in out, (id, out)
