"""The exercise core (labkit.exercises._core): verdicts, hints, and diagnoses that never reveal the answer.

Every message a student can see is searched for the expected value (in the
usual printed forms); checks are registered under test-only ids ``core_test.*``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from labkit.exercises import (
    Wrong,
    call_student,
    check,
    exercise,
    expect_close,
    expect_integer,
    hint,
    list_exercises,
)

HIDDEN = np.array([0.7391, -13.57, 4.213])  # distinctive numbers: none is a substring of a tolerance or a shape
_ids = itertools.count()


def renderings(x: float) -> set[str]:
    """The ways a number usually gets printed (a leak would contain one of them)."""
    forms = {repr(x), str(x), f"{x:g}", f"{x:.3g}", f"{x:.4g}", f"{x:.2f}", f"{x:.3f}", f"{x:.2e}"}
    return forms | {f.lstrip("-") for f in forms}


def assert_hidden(text: str, expected=HIDDEN) -> None:
    for x in np.atleast_1d(np.asarray(expected, dtype=float)):
        for form in renderings(float(x)):
            assert form not in text, f"the message reveals the expected value {x} as {form!r}: {text!r}"


def diagnosis(value, expected=HIDDEN, **kw) -> str:
    with pytest.raises(Wrong) as info:
        expect_close(value, expected, **kw)
    message = str(info.value)
    assert_hidden(message, expected)
    return message


# ---------------------------------------------------------------- expect_close diagnoses


def test_right_answers_pass_within_tolerance_in_any_array_type():
    expect_close(HIDDEN * (1 + 1e-8), HIDDEN, rtol=1e-6)
    expect_close(list(HIDDEN), HIDDEN)
    expect_close(torch.tensor(HIDDEN, dtype=torch.float32), HIDDEN, rtol=1e-6)
    expect_close(torch.tensor(HIDDEN, requires_grad=True), HIDDEN)
    expect_close(np.zeros(3) + 1e-9, np.zeros(3), atol=1e-8)
    expect_close(2, 2.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (HIDDEN[:2], "your answer has shape (2,), expected shape (3,)"),
        (HIDDEN.reshape(3, 1), "shape (3, 1), expected shape (3,) (same number of entries: reshape?)"),
        (np.array([np.nan, 1.0, 2.0]), "your answer contains NaN or infinity"),
        (np.array([1.0, np.inf, 2.0]), "your answer contains NaN or infinity"),
        (-HIDDEN, "your answer has the wrong sign"),
        (HIDDEN[[2, 0, 1]], "your answer has the right values in the wrong order"),
        (2 * HIDDEN, "off by a factor of 2: check a factor of 2 or an average vs a sum"),
        (0.5 * HIDDEN, "off by a factor of 0.5: check a factor of 2 or an average vs a sum"),
        (4 * HIDDEN, "off by a factor of 4"),
        (0.25 * HIDDEN, "off by a factor of 0.25"),
        (3 * HIDDEN, "your answer is off by a constant factor (too large): check scaling"),
        (HIDDEN / 7, "your answer is off by a constant factor (too small): check scaling"),
        (HIDDEN + 1e-3, "your answer is not within tolerance (rtol=1e-06); it is too large on average"),
        (HIDDEN - 1e-3, "your answer is not within tolerance (rtol=1e-06); it is too small on average"),
        ("abc", "your answer should be a number or an array of numbers, got str"),
    ],
)
def test_each_wrong_answer_gets_its_specific_diagnosis_without_the_value(value, message):
    assert message in diagnosis(value)


def test_scalar_diagnoses_and_the_what_label():
    assert diagnosis(-0.7391, 0.7391, what="lambda_max") == "lambda_max has the wrong sign"
    assert "lambda_max is off by a factor of 2" in diagnosis(1.4782, 0.7391, what="lambda_max")
    assert "too small" in diagnosis(0.7, 0.7391, rtol=1e-3)
    assert "expected shape ()" in diagnosis([0.7391, 0.7391], 0.7391)


def test_sign_is_diagnosed_before_order_and_scale():
    sym = np.array([1.5, -1.5])  # -sym is also a permutation of sym: the sign message wins
    assert diagnosis(-sym, sym) == "your answer has the wrong sign"


def test_tolerance_message_does_not_depend_on_the_exact_expected_value():
    """Otherwise a student could solve for the answer (e.g. from an 'error = N x the tolerance' figure)."""
    guess = HIDDEN + np.array([0.01, 0.0, 0.0])
    other = HIDDEN + np.array([0.0, 0.0, 1e-3])
    assert diagnosis(guess, HIDDEN, rtol=1e-6) == diagnosis(guess, other, rtol=1e-6)
    assert diagnosis(3.0, 2.5, rtol=1e-6) == diagnosis(3.0, 2.6, rtol=1e-6)


def test_a_scalar_near_miss_is_a_tolerance_miss_not_a_scaling_error():
    assert (
        diagnosis(2.51, 2.5, rtol=1e-3)
        == "your answer is not within tolerance (rtol=0.001); it is too large on average"
    )
    positive = np.abs(HIDDEN)
    assert "too small on average" in diagnosis(positive * 0.99, positive, rtol=1e-3)


def test_none_from_a_student_function_is_named_as_none():
    assert diagnosis(None, 0.7391, what="f(x)") == "f(x) is None: did you forget to return it?"


# ---------------------------------------------------------------- expect_integer


def test_expect_integer():
    expect_integer(7, 7)
    expect_integer(np.int64(7), 7)
    expect_integer(7.0, 7)
    for value, message in [(9, "too high"), (3, "too low"), (7.5, "whole number"), (True, "whole number")]:
        with pytest.raises(Wrong, match=message) as info:
            expect_integer(value, 7, what="the number of outliers")
        assert str(info.value).startswith("the number of outliers")
        assert "7" not in str(info.value).replace("7.5", "")
    with pytest.raises(Wrong, match="should be a whole number, got 'seven'"):
        expect_integer("seven", 7)


# ---------------------------------------------------------------- check(): verdicts


def register(checker, hints=("Look at the definition.", "Write it as a formula.", "Almost the answer.")) -> str:
    id = f"core_test.ex{next(_ids)}"
    exercise(id, title="Test exercise", hints=list(hints))(checker)
    return id


def _value_checker(answer):
    expected = np.random.default_rng(7).normal(size=3)  # computed at check time, never stored
    expect_close(answer, expected, rtol=1e-9, what="the vector")


def _function_checker(fn):
    for seed in range(3):  # several fresh cases
        x = np.random.default_rng(seed).normal(size=4)
        expect_close(call_student(fn, x), np.cumsum(x), rtol=1e-9, what="cumsum(x)")


def test_right_answer_prints_a_tick_and_returns_true(capsys):
    id = register(_value_checker)
    assert check(id, np.random.default_rng(7).normal(size=3)) is True
    assert capsys.readouterr().out == "✅ [Test exercise] correct. Well done!\n"
    fid = register(_function_checker)
    assert check(fid, np.cumsum) is True


def test_wrong_answer_prints_the_diagnosis_and_a_hint_pointer_without_the_value(capsys):
    id = register(_value_checker)
    expected = np.random.default_rng(7).normal(size=3)
    for wrong, message in [(2 * expected, "factor of 2"), (-expected, "wrong sign"), (expected[:2], "shape (2,)")]:
        assert check(id, wrong) is False
        out = capsys.readouterr().out
        assert out.startswith("❌ [Test exercise] the vector ") and message in out
        assert f"Stuck? hint('{id}') reveals a hint (3 available)." in out
        assert_hidden(out, expected)


@pytest.mark.parametrize("missing", [None, ...])
def test_missing_answer_is_reported(missing, capsys):
    assert check(register(_value_checker), missing) is False
    assert "❌ [Test exercise] no answer yet: replace None with your answer" in capsys.readouterr().out


def test_unimplemented_student_function_is_reported(capsys):
    def stub(x):
        raise NotImplementedError("Exercise: write your code here, then run the check cell below")

    assert check(register(_function_checker), stub) is False
    assert "❌ [Test exercise] not implemented yet: write your code where" in capsys.readouterr().out


def test_a_raising_student_function_is_reported_with_its_error_and_line(capsys):
    def broken(x):
        return x @ np.ones(7)  # shape mismatch

    assert check(register(_function_checker), broken) is False
    out = capsys.readouterr().out
    assert "❌ [Test exercise] your function raised ValueError: " in out and "of broken)" in out

    def wrong(x):
        return x.sum() * np.ones_like(x)

    assert check(register(_function_checker), wrong) is False
    assert "cumsum(x) is not within tolerance" in capsys.readouterr().out


def test_not_a_function_and_quiet_mode(capsys):
    id = register(_function_checker)
    assert check(id, 3) is False
    assert "expected a function, got int" in capsys.readouterr().out
    assert check(id, np.cumsum, quiet=True) is True
    assert check(id, 3, quiet=True) is False
    assert capsys.readouterr().out == ""


def test_unknown_id_lists_the_known_ones():
    id = register(_value_checker)
    assert id in list_exercises()
    with pytest.raises(KeyError, match=r"unknown exercise 'core_test\.nope'; known exercises: \[.*" + id):
        check("core_test.nope", 1)


def test_check_never_raises_even_when_a_checker_trips_over_the_answer(capsys):
    def ratio_checker(answer):
        numerator, denominator = answer
        expect_close(numerator / denominator, 2.0)

    assert check(register(ratio_checker), (None, None)) is False
    assert "❌ [Test exercise] the check could not use your answer (TypeError: " in capsys.readouterr().out


# ---------------------------------------------------------------- hints


def test_hints_progress_then_stay_on_the_last_and_explicit_numbers_do_not_advance(capsys):
    id = register(_value_checker)
    assert hint(id) == "Hint 1/3: Look at the definition."
    assert hint(id, 3) == "Hint 3/3: Almost the answer."
    assert hint(id) == "Hint 2/3: Write it as a formula."
    assert hint(id) == "Hint 3/3: Almost the answer."
    assert hint(id) == "Hint 3/3: Almost the answer."
    assert hint(id, 1) == "Hint 1/3: Look at the definition."
    assert capsys.readouterr().out.splitlines()[0] == "Hint 1/3: Look at the definition."


@pytest.mark.parametrize("n", [0, 4, -1])
def test_hint_number_out_of_range_is_a_value_error(n):
    with pytest.raises(ValueError, match=f"hint number must be between 1 and 3, got {n}"):
        hint(register(_value_checker), n)


def test_exercise_without_hints(capsys):
    id = register(_value_checker, hints=())
    assert hint(id) == "No hints for this exercise."
    assert check(id, 0 * HIDDEN) is False
    assert "Stuck?" not in capsys.readouterr().out


def test_known_mistakes_get_their_message_only_when_the_answer_is_wrong():
    mistakes = [(HIDDEN * 3, "you tripled it"), (HIDDEN[:1], "a different shape never matches")]
    assert diagnosis(HIDDEN * 3, mistakes=mistakes) == "you tripled it"
    assert "tripled" not in diagnosis(HIDDEN * 5, mistakes=mistakes)  # the generic diagnosis otherwise
    expect_close(HIDDEN, HIDDEN, mistakes=[(HIDDEN, "a mistake equal to the answer must not fire")])
