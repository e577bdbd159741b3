"""Where is this code running? Colab, Binder, VS Code, a Jupyter kernel, IPython or plain Python.

Live figures and widget panels pick how to draw from this (see
:class:`labkit.viz.LivePlot`): a Jupyter front end gets live widgets, Colab
gets self-contained HTML figures (its plotly support inside widgets is
unreliable), plain Python gets a static figure at the end.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Literal

__all__ = ["Environment", "environment", "in_kernel", "ipython", "on_main_thread"]

Environment = Literal["colab", "binder", "vscode", "jupyter", "ipython", "plain"]


def ipython() -> Any:
    """The running IPython shell, or None in plain Python."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def in_kernel() -> bool:
    """True inside a Jupyter kernel (a front end can show widgets), False in a terminal or script."""
    ip = ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def on_main_thread() -> bool:
    """True on the thread that runs notebook cells (only it may ``display``)."""
    return threading.current_thread() is threading.main_thread()


def environment() -> Environment:
    """The kind of front end: ``"colab"``, ``"binder"``, ``"vscode"``, ``"jupyter"``, ``"ipython"`` or ``"plain"``.

    ``LABKIT_ENV`` overrides the detection (useful for testing a fallback).
    """
    forced = os.environ.get("LABKIT_ENV", "").strip().lower()
    if forced:
        allowed = ("colab", "binder", "vscode", "jupyter", "ipython", "plain")
        if forced not in allowed:
            raise ValueError(f"LABKIT_ENV={forced!r} is not supported; choose one of {list(allowed)}")
        return forced  # type: ignore[return-value]
    if "google.colab" in sys.modules:
        return "colab"
    if ipython() is None:
        return "plain"
    if not in_kernel():
        return "ipython"
    if any(k.startswith("BINDER_") for k in os.environ):
        return "binder"
    if "VSCODE_PID" in os.environ or "VSCODE_CWD" in os.environ:
        return "vscode"
    return "jupyter"
