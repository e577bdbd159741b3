"""Every notebook, as a reader sees it: headless JupyterLab + Chromium, Run All, then look at the page.

For each ``notebooks/*.ipynb`` (found at collection time): no error output, every widget rendered, every
plotly figure holding drawn data, the main live figure changing while a run started from the page is in
progress and after it (see labdriver.py for the convention), and every widget and figure back after a page
reload with the kernel alive. The fixture notebooks prove the check itself:
the good ones pass, the deliberately broken one fails for each of its faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from known_problems import KNOWN_PROBLEMS
from labdriver import check_notebook, missing

if missing():  # one skip line for the whole module
    pytest.skip(f"browser tests skipped: {missing()}", allow_module_level=True)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_in_browser(name, page, lab, artifacts, record):
    report = check_notebook(page, lab, lab.root / name, artifacts)
    record(report)
    known = KNOWN_PROBLEMS.get(name, {})
    unknown = [p for p in report.problems if not any(needle in p for needle in known)]
    assert not unknown, report.summary()
    if known:
        assert report.problems, f"{name} is fixed: remove its entry from tests/browser/known_problems.py"
        pytest.xfail("; ".join(dict.fromkeys(known.values())))


@pytest.mark.parametrize("name", ["live_slider.ipynb", "live_button.ipynb"])
def test_good_fixture_passes(name, page, lab, artifacts, record):
    report = check_notebook(page, lab, lab.root / "fixtures" / name, artifacts)
    record(report)
    assert not report.problems, report.summary()
    assert report.figures and all(f["points"] > 0 for f in report.figures)
    assert report.live["partial"] >= 1, report.live


def test_broken_fixture_fails_for_each_fault(page, lab, artifacts, record):
    """The test of the test: a figure never updated, a widget that cannot render, an error, a skipped cell."""
    report = check_notebook(page, lab, lab.root / "fixtures" / "broken.ipynb", artifacts)
    record(report)
    text = "\n".join(report.problems)
    expected = {
        "empty figure": "has no traces: empty axes",
        "unrendered widget": "not rendered",
        "error output": "raised RuntimeError: deliberately broken fixture",
        "cell never run": "was not executed",
        "figure not live": "the figure never changed",
    }
    missing = [fault for fault, needle in expected.items() if needle not in text]
    assert not missing, f"the browser check missed {missing}:\n{report.summary()}"


def test_unreadable_fixture_fails_for_each_defect(page, lab, artifacts, record):
    """The test of the new checks: an over-wide log axis, overlapping labels, a warning output must each be
    named; the readable figure and the cell tagged expected-warning must not be."""
    report = check_notebook(page, lab, lab.root / "fixtures" / "unreadable.ipynb", artifacts, live=False)
    record(report)
    text = "\n".join(report.problems)
    expected = {
        "over-wide log axis": "(cell 3, 'over-wide log axis'): x-axis 'batch size' (log) shows",
        "overlapping annotations": "annotation 'perfect scaling' overlaps annotation 'diminishing returns'",
        "annotation over tick labels": "annotation 'B_crit here' overlaps tick label",
        "warning output": "cell 5 printed to stderr",
    }
    missed = [fault for fault, needle in expected.items() if needle not in text]
    assert not missed, f"the browser check missed {missed}:\n{report.summary()}"
    assert "cell 6" not in text and "cell 7" not in text, report.summary()  # tagged warning, readable figure
    assert len(report.gallery) == 3 and all(g["png"] and g["png"].stat().st_size > 1000 for g in report.gallery)


def test_reload_fixture_fails_for_the_widget_that_does_not_come_back(page, lab, artifacts, record):
    """The reload pass: a widget whose model the kernel closed cannot be drawn by a reloaded page (cell 2's
    second view); the slider still alive, the static figure and a finished labkit progress bar (cell 4: tqdm
    closes a finished bar's widget, labkit hides it) come back (no other problem)."""
    report = check_notebook(page, lab, lab.root / "fixtures" / "reload.ipynb", artifacts, live=False)
    record(report)
    assert report.problems == ["after a page reload: widget in cell 2 not rendered: "
                               "'Error displaying widget: model not found'"], report.summary()
