"""A plotly ``FigureWidget`` that survives a browser reload.

plotly sends a ``FigureWidget``'s changes to the page as messages (``restyle``, ``relayout``, ``addTraces``)
and never updates the widget's synced state (``_widget_data``, ``_widget_layout``), which keeps the figure
it was created with. A page reloaded with the kernel alive rebuilds every widget from its state, so the
figure came back as it was at creation: empty, for a figure filled by a later scan. Here the state a page
asks for always carries the current data and layout, so a reloaded page draws the current figure.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["figure_widget"]


@cache
def _widget_class() -> type:
    import plotly.graph_objects as go

    class ReloadableFigureWidget(go.FigureWidget):
        """``go.FigureWidget`` whose synced state is the current figure (see the module docstring)."""

        def get_state(self, key: Any = None, drop_defaults: bool = False) -> dict[str, Any]:
            state = super().get_state(key, drop_defaults)
            for name, attr in (("_widget_data", "_data"), ("_widget_layout", "_layout")):
                current = self.__dict__.get(attr)  # None while plotly is still constructing the figure
                if name in state and current is not None:
                    to_json = self.trait_metadata(name, "to_json") or (lambda value, _widget: value)
                    state[name] = to_json(current, self)
            return state

    return ReloadableFigureWidget


def figure_widget(figure: Any = None, **kwargs: Any) -> Any:
    """A ``go.FigureWidget`` (same arguments) that a reloaded page redraws with its current data."""
    return _widget_class()(figure, **kwargs)
