"""Executed copies of the notebooks for the documentation site, with every figure as a static page element.

    python docs/execute_notebooks.py build/executed            # every notebook -> build/executed/notebooks/
    python docs/execute_notebooks.py build/executed 00_tour    # some of them
    LABKIT_DOCS_NOTEBOOKS=build/executed mkdocs build         # the site shows the executed copies

Each notebook runs top to bottom (nbclient, fast size unless LABKIT_FAST is set otherwise). A page cannot run
a kernel, so the widgets' outputs are made static: a live figure (an ``ipywidgets.Output`` holding a plotly
figure) becomes that figure as HTML that loads plotly.js from its CDN, and controls (sliders, buttons) are
replaced by one line saying the notebook is interactive. The notebooks in ``notebooks/`` are never written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
CONTROL = "<p><em>(an interactive control: run the notebook in JupyterLab to use it)</em></p>"


def _plotly_html(figure: dict[str, Any]) -> str:
    import plotly.io as pio

    figure = {k: v for k, v in figure.items() if k != "config"}
    height = figure.get("layout", {}).get("height") or 450  # a page has no height for "100%" to fill
    return pio.to_html(figure, include_plotlyjs="cdn", full_html=False, validate=False, default_height=f"{height}px",
                       config={"displaylogo": False})


def _static(output: dict[str, Any], widgets: dict[str, Any]) -> list[dict[str, Any]]:
    """One output made static: plotly as HTML, an Output widget as its own (static) outputs, a control as a note."""
    data = output.get("data", {})
    if PLOTLY in data:
        return [{**output, "data": {"text/html": _plotly_html(data[PLOTLY]), "text/plain": data.get("text/plain", "")}}]
    if WIDGET_VIEW in data:
        return _widget(data[WIDGET_VIEW]["model_id"], widgets, seen=set())
    return [output]


def _widget(model_id: str, widgets: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    model = widgets.get(model_id)
    if model is None or model_id in seen:
        return []
    seen.add(model_id)
    state = model.get("state", {})
    if model.get("model_name") == "OutputModel":
        return [o for inner in state.get("outputs", []) for o in _static(inner, widgets)]
    children = [c.removeprefix("IPY_MODEL_") for c in state.get("children", []) if isinstance(c, str)]
    if children:  # a box: its parts, in order
        parts = [o for child in children for o in _widget(child, widgets, seen)]
        notes = [p for p in parts if p.get("data", {}).get("text/html") == CONTROL]
        return [p for p in parts if p not in notes] + notes[:1]
    if model.get("model_name") in ("HTMLModel", "LabelModel") and state.get("value"):
        html = state["value"] if model["model_name"] == "HTMLModel" else f"<p>{state['value']}</p>"
        return [{"output_type": "display_data", "metadata": {}, "data": {"text/html": html}}]
    return [{"output_type": "display_data", "metadata": {}, "data": {"text/html": CONTROL}}]


def static_outputs(nb: dict[str, Any]) -> dict[str, Any]:
    """The notebook with its widget outputs replaced by static ones (see the module docstring); the widget state
    is dropped from the metadata."""
    widgets = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = [o for out in cell.get("outputs", []) for o in _static(out, widgets)]
    return nb


def execute(path: Path, out: Path, timeout: int = 600) -> Path:
    """Run one notebook (in its own folder), make its outputs static, write it to ``out``; return the path."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                   store_widget_state=True).execute()
    target = out / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    nb = static_outputs(json.loads(nbformat.writes(nb)))
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    tmp.replace(target)
    return target


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    os.environ.setdefault("LABKIT_FAST", "1")
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype"  # figures as plotly JSON, made into HTML here (no require.js)
    out, names = Path(argv[0]) / "notebooks", argv[1:]
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if names:
        paths = [p for p in paths if p.stem in names or p.name in names]
    for path in paths:
        start = time.perf_counter()
        execute(path, out)
        print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s -> {out / path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
