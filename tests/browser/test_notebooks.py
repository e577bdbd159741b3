"""Every notebook, as a reader sees it: headless JupyterLab + Chromium, Run All, then look at the page.

For each ``notebooks/*.ipynb`` (found at collection time): no error output, every widget rendered, every
plotly figure holding drawn data, and the main live figure changing while a run started from the page is in
progress and after it (see labdriver.py for the convention). The fixture notebooks prove the check itself:
the good ones pass, the deliberately broken one fails for each of its faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labdriver import check_notebook, missing

if missing():  # one skip line for the whole module
    pytest.skip(f"browser tests skipped: {missing()}", allow_module_level=True)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_in_browser(name, page, lab, artifacts, record):
    report = check_notebook(page, lab, lab.root / name, artifacts)
    record(report)
    assert not report.problems, report.summary()


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
