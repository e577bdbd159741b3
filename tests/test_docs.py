"""The documentation site builds with no warnings, and every public name has a docstring."""

import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
from hooks import public_modules  # noqa: E402


def _public_callables():
    for name in public_modules():
        if name == "cli":  # the command line is documented by its --help
            continue
        module = importlib.import_module(f"labkit.{name}")
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"labkit.{name}.{attr}", obj


def test_every_public_name_has_a_docstring():
    missing = [name for name, obj in _public_callables() if not (inspect.getdoc(obj) or "").strip()]
    assert not missing, f"public names without a docstring: {missing}"


@pytest.mark.slow
def test_docs_build_strict_with_the_executed_tour(tmp_path):
    """The site builds, every notebook is a page, and the tour page (from an executed copy, as CI makes them with
    docs/execute_notebooks.py) shows its figures; the install page never tells anyone to pip install labkit."""
    if shutil.which("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", LABKIT_FAST="1", LABKIT_DOCS_NOTEBOOKS=str(tmp_path / "executed"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "execute_notebooks.py"), str(tmp_path / "executed"),
                          "00_tour"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "api" / "hessian" / "index.html").exists()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / path.stem / "index.html").is_file(), f"{path.name} is not a page"
    tour = (site / "notebooks" / "00_tour" / "index.html").read_text(encoding="utf-8")
    # each figure: a div of a fixed height (a page has no height for 100% to fill) holding plotly's graph div,
    # drawn by Plotly.newPlot with its data inline
    figures = re.findall(r'<div style="height:\d+px; width:100%;">\s*<script>window.PlotlyConfig', tour)
    assert len(figures) >= 3 and tour.count('class="plotly-graph-div"') >= 3, "the tour page shows no figures"
    assert tour.count("Plotly.newPlot(") >= 3 and "application/vnd.jupyter.widget-view+json" not in tour
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="notebooks/00_tour/"' in home and 'href="install/"' in home
    install = re.sub(r"<[^>]+>", "", (site / "install" / "index.html").read_text(encoding="utf-8"))
    assert "git clone https://github.com/labkit-dev/labkit" in install
    assert not re.search(r"pip install (-U )?labkit(?![-\w])", install)
    for page in ("course", "teaching", "errors", "lessons"):
        assert (site / page / "index.html").is_file(), page
    assert not (ROOT / ".cache").exists(), "mkdocs-jupyter's cache belongs in build/"


def test_static_outputs_turn_widgets_into_figures_and_a_note():
    sys.path.insert(0, str(ROOT / "docs"))
    from execute_notebooks import CONTROL, static_outputs

    view = "application/vnd.jupyter.widget-view+json"
    figure = {"data": [{"type": "scatter", "y": [1, 2]}], "layout": {}}
    state = {
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.plotly.v1+json": figure}}]}},
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {"model_name": "FloatSliderModel", "state": {"value": 0.1}},
    }
    nb = {"metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}}, "cells": [
        {"cell_type": "code", "outputs": [{"output_type": "display_data", "metadata": {},
                                           "data": {view: {"model_id": "box"}}}]}]}
    outputs = static_outputs(nb)["cells"][0]["outputs"]
    assert [o["data"]["text/html"] == CONTROL for o in outputs] == [False, True]
    assert 'class="plotly-graph-div"' in outputs[0]["data"]["text/html"]
    assert "widgets" not in nb["metadata"]
