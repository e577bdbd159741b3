"""A finished progress bar in a notebook must not leave a dead widget behind: tqdm closes a ``leave=False`` bar's
widget, the cell's output still names it, and a page reloaded with the kernel alive shows "Error displaying widget:
model not found" there. labkit's bar hides a bar that was shown and keeps its widget alive."""

import pytest

from labkit import history

notebook_tqdm = pytest.importorskip("tqdm.notebook").tqdm


@pytest.fixture
def notebook_bar(monkeypatch):
    """labkit's bar class built on tqdm's notebook bar (what tqdm.auto picks in a kernel)."""
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", notebook_tqdm)
    history._bar_class.cache_clear()
    yield history._bar_class()
    history._bar_class.cache_clear()


def test_a_shown_bar_is_hidden_not_closed(notebook_bar):
    bar = notebook_bar(total=3, leave=False, delay=0)
    bar.update(3)
    bar.close()
    assert bar.container.layout.display == "none"
    assert bar.container.comm is not None, "the bar's widget was closed: a reloaded page cannot draw it"


def test_control_tqdm_closes_the_shown_bar(monkeypatch):
    """The control: tqdm's own notebook bar closes its widget (the reason for the subclass)."""
    bar = notebook_tqdm(total=3, leave=False, delay=0)
    bar.update(3)
    bar.close()
    assert bar.container.comm is None


def test_a_bar_never_shown_is_closed_as_usual(notebook_bar):
    bar = notebook_bar(total=3, leave=False, delay=60)  # never displayed: no output names its widget
    bar.update(3)
    bar.close()
    assert bar.container.comm is None and bar.container.layout.display != "none"


def test_progress_bar_wraps_an_iterable():
    assert list(history.progress_bar(None, "widths", False, iterable=[1, 2, 3])) == [1, 2, 3]
