"""Exercise registry, checks and hints: the feedback loop of labkit's classroom notebooks.

An exercise is a checker function registered under an id such as
``"hessian.power_iteration"``. The checker receives the student's answer (a
number, an array or a function), compares it with labkit's reference on fresh
seeded inputs and raises :class:`Wrong` with a specific message when it is not
right. Students call :func:`check` and :func:`hint`; they never see expected
values, because checkers compute them at check time and only describe the
difference (shape, sign, scale, tolerance)::

    @exercise("quadratic.max_lr", title="Largest stable learning rate",
              hints=["Gradient descent on a quadratic multiplies the error by (1 - lr * lambda).",
                     "It diverges when |1 - lr * lambda_max| > 1."])
    def _(answer):
        expect_close(answer, 2 / 5.0, rtol=1e-3, what="the learning rate")
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


class Wrong(Exception):
    """Raised by a checker: the answer is not right; the message says how (never the expected value)."""


class _StudentError(Exception):
    """The student's own code raised; carries a short report."""


@dataclass
class Exercise:
    """One registered exercise."""

    id: str
    title: str
    checker: Callable[[Any], None]
    hints: list[str] = field(default_factory=list)
    shown: int = 0  # hints revealed so far in this session


_REGISTRY: dict[str, Exercise] = {}
_LOADED = False


def exercise(id: str, *, title: str, hints: Sequence[str] = ()) -> Callable[[Callable[[Any], None]], Callable]:
    """Register ``checker(answer)`` under ``id`` (decorator)."""

    def register(checker: Callable[[Any], None]) -> Callable[[Any], None]:
        _REGISTRY[id] = Exercise(id, title, checker, list(hints))
        return checker

    return register


def _load_all() -> None:
    """Import the theme modules that register exercises (once)."""
    global _LOADED
    if _LOADED:
        return
    import importlib
    import os
    import pkgutil

    for info in pkgutil.iter_modules([os.path.dirname(__file__)]):  # this package's folder
        if not info.name.startswith("_") and info.name != "cli":
            importlib.import_module(f"labkit.exercises.{info.name}")
    _LOADED = True


class UnknownExercise(ValueError, KeyError):
    """An exercise id that is not registered (a ValueError, and a KeyError for older callers)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _get(id: str) -> Exercise:
    _load_all()
    if id not in _REGISTRY:
        raise UnknownExercise(f"unknown exercise {id!r}; known exercises: {sorted(_REGISTRY)}")
    return _REGISTRY[id]


def list_exercises() -> list[str]:
    """Ids of all registered exercises."""
    _load_all()
    return sorted(_REGISTRY)


def check(id: str, answer: Any, *, quiet: bool = False) -> bool:
    """Check ``answer`` for exercise ``id``; print a verdict and return True when right.

    Never raises because of the answer: a wrong answer, a missing answer
    (``None`` or an unimplemented function) and a function that crashes are all
    reported as a verdict with a pointer to :func:`hint`.
    """
    ex = _get(id)
    if answer is None or answer is Ellipsis:
        message = "no answer yet: replace None with your answer (or your function) and run this cell again."
        ok = False
    else:
        try:
            ex.checker(answer)
            ok, message = True, "correct. Well done!"
        except Wrong as err:
            ok, message = False, str(err)
        except _StudentError as err:
            ok, message = False, str(err)
        except NotImplementedError:
            ok, message = False, "not implemented yet: write your code where the NotImplementedError is raised."
        except Exception as err:  # a checker tripped over an unexpected answer: report, never crash
            ok, message = False, f"the check could not use your answer ({type(err).__name__}: {err})"
    if not quiet:
        mark = "✅" if ok else "❌"
        tip = "" if ok or not ex.hints else f"\n   Stuck? hint({id!r}) reveals a hint ({len(ex.hints)} available)."
        print(f"{mark} [{ex.title}] {message}{tip}")
    return ok


def hint(id: str, n: int | None = None) -> str:
    """Print hint ``n`` (1-based) of exercise ``id``, or the next one not yet shown; return it."""
    ex = _get(id)
    if not ex.hints:
        text = "No hints for this exercise."
    else:
        if n is None:
            ex.shown = min(ex.shown + 1, len(ex.hints))
            n = ex.shown
        if not 1 <= n <= len(ex.hints):
            raise ValueError(f"hint number must be between 1 and {len(ex.hints)}, got {n}")
        text = f"Hint {n}/{len(ex.hints)}: {ex.hints[n - 1]}"
    print(text)
    return text


# ---------------------------------------------------------------- helpers for checkers


def call_student(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the student's function; turn its exceptions into a readable verdict (not a crash)."""
    if not callable(fn):
        raise Wrong(f"expected a function, got {type(fn).__name__}")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:
        frames = traceback.extract_tb(err.__traceback__)
        where = f" (line {frames[-1].lineno} of {frames[-1].name})" if frames else ""
        raise _StudentError(f"your function raised {type(err).__name__}: {err}{where}") from None


def _as_array(value: Any, what: str) -> np.ndarray:
    if value is None:
        raise Wrong(f"{what} is None: did you forget to return it?")
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be a number or an array of numbers, got {type(value).__name__}") from None
    return arr


def expect_close(
    value: Any, expected: Any, *, rtol: float = 1e-6, atol: float = 0.0, what: str = "your answer",
    mistakes: Sequence[tuple[Any, str]] = (),
) -> None:
    """Raise :class:`Wrong` unless ``value`` matches ``expected`` within tolerance.

    The message diagnoses shape, non-finite values, sign and scale (e.g. "off by
    a factor of about 2") without printing the expected value. ``mistakes`` are
    ``(wrong answer, what it means)`` pairs, the exercise's known wrong turns: a
    value that is not the answer but matches one of them (same tolerance) gets its
    message. A mistake that happens to equal the answer never fires.
    """
    got, want = _as_array(value, what), _as_array(expected, "expected")
    if got.shape != want.shape:
        if got.size == want.size:
            raise Wrong(f"{what} has shape {got.shape}, expected shape {want.shape} (same number of entries: reshape?)")
        raise Wrong(f"{what} has shape {got.shape}, expected shape {want.shape}")
    if not np.all(np.isfinite(got)):
        raise Wrong(f"{what} contains NaN or infinity")
    if np.allclose(got, want, rtol=rtol, atol=atol):
        return
    for wrong, message in mistakes:
        w = _as_array(wrong, "a known mistake")
        if w.shape == got.shape and np.allclose(got, w, rtol=rtol, atol=atol):
            raise Wrong(message)
    g, w = got.ravel(), want.ravel()
    if np.allclose(-g, w, rtol=rtol, atol=atol):
        raise Wrong(f"{what} has the wrong sign")
    if want.size > 1 and np.allclose(np.sort(g), np.sort(w), rtol=rtol, atol=atol):
        raise Wrong(f"{what} has the right values in the wrong order")
    nz = np.abs(w) > 1e-300
    if np.any(nz) and np.all(np.abs(g[nz]) > 0):
        ratio = g[nz] / w[nz]
        if np.allclose(ratio, ratio[0], rtol=1e-3) and ratio[0] > 0 and abs(ratio[0] - 1) > 0.1:
            r = ratio[0]
            for k in (2, 0.5, 4, 0.25):
                if math.isclose(r, k, rel_tol=1e-2):
                    raise Wrong(f"{what} is off by a factor of {k:g}: check a factor of 2 or an average vs a sum")
            raise Wrong(f"{what} is off by a constant factor ({'too large' if r > 1 else 'too small'}): check scaling")
    direction = "too large" if np.mean(g - w) > 0 else "too small"
    raise Wrong(f"{what} is not within tolerance (rtol={rtol:g}); it is {direction} on average")


def expect_integer(value: Any, expected: int, *, what: str = "your answer") -> None:
    """Raise :class:`Wrong` unless ``value`` is the integer ``expected`` (says higher/lower)."""
    if isinstance(value, bool) or (not isinstance(value, (int, np.integer)) and not (
        isinstance(value, float) and value.is_integer()
    )):
        raise Wrong(f"{what} should be a whole number, got {value!r}")
    if int(value) != int(expected):
        raise Wrong(f"{what} is {'too high' if int(value) > expected else 'too low'}")
