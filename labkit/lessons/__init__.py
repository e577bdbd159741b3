"""Lesson code: the experiments and figures the notebooks run, out of the library's namespaces.

Each module serves one notebook theme and builds only on the library (it sits above the probes and
experiments, below viz's users): :mod:`labkit.lessons.edge` (the edge-of-stability demo run, notebooks 00, 01,
09), :mod:`labkit.lessons.ntk` and :mod:`labkit.lessons.uncertainty` (notebook 02's experiments),
:mod:`labkit.lessons.landscape` (notebook 11's claims), :mod:`labkit.lessons.regime` (notebook 10's regime map).
Import the module: ``from labkit.lessons import ntk``.
"""

from labkit._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {}, submodules=["edge", "landscape", "ntk", "regime", "uncertainty"])
