"""Fixtures for the browser tests: one JupyterLab server and one headless Chromium for the whole session.

The server serves a temporary folder holding copies of ``notebooks/`` and of ``fixtures/``; it is stopped
by process id at the end of the session, pass or fail, kernels included (``LabServer.stop``). Screenshots
and one text report per notebook go to ``artifacts/browser/`` (gitignored), printed at the end of the run.
If Chromium or Playwright is missing, every browser test skips with one line saying why.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from labdriver import CHROMIUM, CHROMIUM_ARGS, LabServer, missing, prepare_copy, write_gallery

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTIFACTS = REPO / "artifacts" / "browser"

# Fixture notebooks are inputs of the browser tests, not nbval targets (the broken one must fail there).
collect_ignore_glob = ["fixtures/*.ipynb"]

_REPORTS: list = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/browser/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab(browser_available, tmp_path_factory, artifacts):
    """JupyterLab on 127.0.0.1:<free port>, token disabled, LABKIT_FAST=1, serving copies of the notebooks."""
    root = tmp_path_factory.mktemp("lab") / "served"
    (root / "fixtures").mkdir(parents=True)
    for src in sorted(NOTEBOOKS.glob("*.ipynb")):
        prepare_copy(src, root)
    for other in NOTEBOOKS.iterdir() if NOTEBOOKS.is_dir() else []:  # data or images the notebooks read
        if other.is_file() and other.suffix != ".ipynb":
            shutil.copy(other, root / other.name)
    for src in sorted(FIXTURES.glob("*.ipynb")):
        prepare_copy(src, root / "fixtures")
    server = LabServer(root, artifacts / "jupyterlab.log")
    t0 = time.monotonic()
    try:
        server.start()
        server.startup_seconds = time.monotonic() - t0
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium(browser_available):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium, lab):
    """A fresh browser context per notebook; the notebook's kernel is shut down afterwards."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    try:
        yield context.new_page()
    finally:
        context.close()
        lab.shutdown_kernels()


@pytest.fixture
def record(request):
    """Collect a notebook's Report (for the summary and the gallery, rewritten after every notebook)."""

    def add(report):
        report.nodeid = request.node.nodeid
        _REPORTS.append(report)
        write_gallery(_REPORTS, ARTIFACTS / "gallery.html")

    return add


def pytest_terminal_summary(terminalreporter):
    """Quiet when green (the deliberately broken fixtures' reports and console errors are expected): one line
    pointing to the gallery. When a browser test failed, the full reports of the failed ones."""
    if not _REPORTS:
        return
    tr = terminalreporter
    failed = {r.nodeid for r in tr.stats.get("failed", [])}
    bad = [r for r in _REPORTS if getattr(r, "nodeid", None) in failed]
    if bad:
        tr.section("browser check (headless JupyterLab + Chromium): failed notebooks")
        for report in bad:
            tr.line(report.summary())
    tr.line(f"browser check: {len(_REPORTS)} notebook(s) looked at; figure gallery: {ARTIFACTS / 'gallery.html'}")
