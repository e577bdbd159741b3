"""A claim's spread over seeds: each seed's measurement, and how many seeds pass the claim's check and fail the
control's.

A claim is evidence when its check holds and the same check fails on a negative control. One seed shows that
once; a population trained over seeds (:func:`labkit.train.fit_many` with ``hparams={"seed": [...]}``, one batched
computation) shows how often, at little extra wall time for small networks. :func:`spread` applies the claim's own
check to every seed's measurement of the claim and of its control, and :class:`Spread` keeps the numbers and says
them in one line.

>>> s = spread("BN spread ~ B^-1/2", [-0.40, -0.46, -0.28, -0.36, -0.51], lambda b: abs(b + 0.5) < 0.15,
...            control=[-0.12, 0.03, 0.12, -0.05, 0.01], what="slope")
>>> s.summary()
'BN spread ~ B^-1/2: 4/5 seeds hold (slope -0.51..-0.28; fails on seed 2); control fails 5/5 (slope -0.12..0.12)'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from labkit import _checks

__all__ = ["Spread", "spread"]


@dataclass(frozen=True)
class Spread:
    """A claim measured on several seeds: ``values[i]`` (the number reported) and ``holds[i]`` (the claim's check)
    on ``seeds[i]``; ``control_values``/``control_holds`` the same check on the negative control (empty when the
    claim has no per-seed control). ``what`` names the number (e.g. ``"slope"``)."""

    claim: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    holds: tuple[bool, ...]
    control_values: tuple[float, ...] = ()
    control_holds: tuple[bool, ...] = ()
    what: str = ""

    @property
    def n_hold(self) -> int:
        """Seeds on which the claim's check holds."""
        return sum(self.holds)

    @property
    def n_control_fails(self) -> int:
        """Seeds on which the same check fails on the control (what a control must do)."""
        return sum(not h for h in self.control_holds)

    def summary(self) -> str:
        """One line: ``"<claim>: 4/5 seeds hold (slope -0.51..-0.28; fails on seed 2); control fails 5/5 (...)"``."""
        n = len(self.seeds)
        failed = [s for s, h in zip(self.seeds, self.holds) if not h]
        line = f"{self.claim}: {self.n_hold}/{n} seeds hold ({_range(self.values, self.what)}{_on('fails', failed)})"
        if self.control_holds:
            passed = [s for s, h in zip(self.seeds, self.control_holds) if h]
            line += (f"; control fails {self.n_control_fails}/{n} ({_range(self.control_values, self.what)}"
                     f"{_on('passes', passed)})")
        return line

    def __str__(self) -> str:
        return self.summary()


def _on(verb: str, seeds: list[int]) -> str:
    """``"; fails on seeds 4, 7"`` (empty when no seed)."""
    return f"; {verb} on seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else ""


def _range(values: Sequence[float], what: str) -> str:
    """``"slope -0.51..-0.28"`` over the finite values, with how many were not finite (diverged, undefined)."""
    finite = [v for v in values if math.isfinite(v)]
    text = (what + " " if what else "") + (f"{min(finite):.3g}..{max(finite):.3g}" if finite else "undefined")
    bad = len(values) - len(finite)
    return text + (f", {bad} not finite" if finite and bad else "")


def spread(claim: str, measured: Sequence[Any], check: Callable[[Any], bool], *, control: Sequence[Any] = (),
           number: Callable[[Any], float] = float, control_number: Callable[[Any], float] | None = None,
           seeds: Sequence[int] | None = None, what: str = "") -> Spread:
    """The claim's ``check`` on each seed's measurement (``measured[i]``, any object the check reads), and the same
    ``check`` on the control's (``control[i]``, same seeds); ``number`` turns a measurement into the number reported
    (default ``float``; ``control_number`` for the control's, default ``number``). ``seeds`` default ``0, 1, ...``."""
    if not isinstance(claim, str) or not claim:
        raise TypeError(f"claim must be a non-empty string naming the claim, got {claim!r}")
    control_number = number if control_number is None else control_number
    if not all(callable(f) for f in (check, number, control_number)):
        raise TypeError(f"check, number and control_number must be callables, got check={check!r}, "
                        f"number={number!r}, control_number={control_number!r}")
    measured, control = list(measured), list(control)
    if not measured:
        raise ValueError("measured is empty: pass one measurement per seed")
    seeds = list(range(len(measured))) if seeds is None else [_checks.seed("seeds", s) for s in seeds]
    if len(seeds) != len(measured) or (control and len(control) != len(measured)):
        raise ValueError(f"measured ({len(measured)}), seeds ({len(seeds)}) and control ({len(control)}, or none) "
                         "must have one entry per seed")
    return Spread(claim, tuple(seeds), tuple(float(number(m)) for m in measured),
                  tuple(bool(check(m)) for m in measured), tuple(float(control_number(c)) for c in control),
                  tuple(bool(check(c)) for c in control), what)
