"""The grokking exercises: right answers pass, typical wrong ones fail with specific messages."""

import numpy as np
import pytest

from labkit.exercises import check, list_exercises


def spectrum_right(E):
    power = (np.abs(np.fft.rfft(E, axis=1)) ** 2).sum(0)[1:]
    return power / power.sum()


def times_right(train_acc, test_acc):
    def first(curve, level):
        hit = np.flatnonzero(np.asarray(curve) >= level)
        return int(hit[0]) if hit.size else None

    return first(train_acc, 0.99), first(test_acc, 0.95)


def test_registered():
    assert {"grokking.fourier_spectrum", "grokking.more_data_groks_sooner", "grokking.t_mem_t_grok"} <= set(
        list_exercises())


@pytest.mark.parametrize(("ex", "right"), [("grokking.fourier_spectrum", spectrum_right),
                                           ("grokking.more_data_groks_sooner", 2),
                                           ("grokking.t_mem_t_grok", times_right)])
def test_right_answers_pass(ex, right, capsys):
    assert check(ex, right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ex", "wrong", "message"),
    [
        ("grokking.fourier_spectrum", lambda E: (np.abs(np.fft.rfft(E, axis=1)) ** 2).sum(0) /
         (np.abs(np.fft.rfft(E, axis=1)) ** 2).sum(), "k = 0"),
        ("grokking.fourier_spectrum", lambda E: (np.abs(np.fft.rfft(E, axis=1)) ** 2).sum(0)[1:], "sum to 1"),
        ("grokking.fourier_spectrum", lambda E: np.abs(np.fft.rfft(E, axis=1)).sum(0)[1:] /
         np.abs(np.fft.rfft(E, axis=1)).sum(0)[1:].sum(), "tolerance"),
        ("grokking.more_data_groks_sooner", 0, "too low"),
        ("grokking.more_data_groks_sooner", "0.8", "index"),
        ("grokking.t_mem_t_grok", lambda tr, te: times_right(tr, te)[::-1], "t_mem"),
        ("grokking.t_mem_t_grok", lambda tr, te: 3, "pair"),
        ("grokking.t_mem_t_grok", lambda tr, te: (times_right(tr, te)[0], len(te) - 1 if
                                                  times_right(tr, te)[1] is None else times_right(tr, te)[1]),
         "None"),
    ],
)
def test_wrong_answers_fail_specifically(ex, wrong, message, capsys):
    assert not check(ex, wrong)
    assert message in capsys.readouterr().out


def test_raising_function_is_reported(capsys):
    def boom(*args):
        raise ValueError("student bug")

    assert check("grokking.fourier_spectrum", boom) is False
    assert "your function raised" in capsys.readouterr().out
