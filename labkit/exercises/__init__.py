"""Self-checking exercises for the themed notebooks.

Each theme registers its exercises in a module of this package
(``hessian.py``, ``ntk.py``, ``fractal.py``, ``batchsize.py``, ...). In a notebook::

    from labkit.exercises import check, hint
    check("hessian.outlier_count", my_prediction)
    hint("hessian.outlier_count")
"""

from labkit.exercises._core import (
    Exercise,
    Wrong,
    call_student,
    check,
    exercise,
    expect_close,
    expect_integer,
    hint,
    list_exercises,
)

__all__ = [
    "Exercise",
    "Wrong",
    "call_student",
    "check",
    "exercise",
    "expect_close",
    "expect_integer",
    "hint",
    "list_exercises",
]
