"""Every committed notebook follows the conventions (notebooks/README.md); Binder's files are valid.

Executing the notebooks is nbval's job (``pytest notebooks/``); this checks what can be
checked without running them: clean in git, header, setup cell, badges, exercises.
"""

import re
import sys
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb"))
SETUP = '''# Setup: on Colab install labkit (keeping Colab's own torch) and enable its widget manager; \
elsewhere nothing.
import sys
if "google.colab" in sys.modules:
    import subprocess
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                          "labkit-dynamics @ git+https://github.com/labkit-dev/labkit"], capture_output=True, text=True)
    if pip.returncode != 0:
        print(pip.stderr[-1500:])
        raise SystemExit("Installing labkit failed (pip's message is above): check that this runtime can reach "
                         "github.com, then run this cell again.")
    from google.colab import output
    output.enable_custom_widget_manager()
import labkit
FAST = labkit.fast_mode()  # LABKIT_FAST=1 shrinks every size (CI runs each notebook in < 60 s)'''
VENUE = re.compile(r"arXiv|ICLR|NeurIPS|NIPS|ICML|COLT|JMLR|AISTATS|Journal|Proceedings|Conference|Transactions")


def test_there_are_notebooks():
    assert any(p.name == "00_tour.ipynb" for p in NOTEBOOKS)


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def nb(request):
    notebook = nbformat.read(request.param, as_version=4)
    nbformat.validate(notebook)
    notebook.path = request.param
    return notebook


def test_committed_without_outputs_counts_or_widget_state(nb):
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{nb.path.name} cell {i} has outputs: strip them before committing"
            assert cell.execution_count is None, f"{nb.path.name} cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{nb.path.name} stores widget state"


def test_header_cell_has_title_badges_learn_and_papers(nb):
    head = nb.cells[0]
    name = nb.path.name
    assert head.cell_type == "markdown" and head.source.lstrip().startswith("# "), f"{name}: cell 1 needs a title"
    binder = f"https://mybinder.org/v2/gh/labkit-dev/labkit/main?labpath=notebooks%2F{name}"
    colab = f"https://colab.research.google.com/github/labkit-dev/labkit/blob/main/notebooks/{name}"
    assert binder in head.source, f"{name}: Binder badge must link to {binder}"
    assert colab in head.source, f"{name}: Colab badge must link to {colab}"
    assert "badge_logo.svg" in head.source and "colab-badge.svg" in head.source
    assert re.search(r"what you will learn", head.source, re.I), f"{name}: add a 'What you will learn' list"
    assert re.search(r"\b(19|20)\d\d\b", head.source) and VENUE.search(head.source), (
        f"{name}: cite the paper(s) in full (authors, year, title, venue or arXiv id)")


def test_setup_cell_is_exactly_the_standard_one(nb):
    cell = nb.cells[1]
    assert cell.cell_type == "code" and cell.source.strip() == SETUP, (
        f"{nb.path.name}: cell 2 must be exactly the setup cell of notebooks/README.md")


def test_setup_cell_on_colab_stops_with_one_sentence_when_the_install_fails(monkeypatch, capsys):
    """No ModuleNotFoundError two lines later: the cell stops right after pip fails, saying what to do."""
    import subprocess
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: could not reach github.com")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    reached = []
    with pytest.raises(SystemExit, match=r"^Installing labkit failed .* then run this cell again\.$"):
        exec(SETUP.replace("import labkit", "reached.append(True)"), {"reached": reached})
    assert not reached and "could not reach github.com" in capsys.readouterr().out


def test_themed_notebooks_end_with_exercises(nb):
    if nb.path.name == "00_tour.ipynb":
        pytest.skip("the tour has no exercises section")
    md = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and re.search(r"^#+ .*Exercises", c.source,
                                                                                        re.M)]
    assert md, f"{nb.path.name}: end with an 'Exercises' section"
    solutions = [i for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", [])]
    assert 2 <= len(solutions) <= 3, f"{nb.path.name}: 2-3 exercises with a cell tagged 'solution'"
    for i in solutions:
        lines = [line.strip() for line in nb.cells[i].source.splitlines()]
        assert "# BEGIN SOLUTION" in lines and "# END SOLUTION" in lines, (
            f"{nb.path.name} cell {i + 1}: put '# BEGIN SOLUTION' and '# END SOLUTION' on their own lines")
        follow = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
        assert follow is not None and "check(" in follow.source, f"{nb.path.name} cell {i + 2}: check the answer"


# ---------------------------------------------------------------- Binder


def _requirements():
    reqs, options = {}, []
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            r = Requirement(line)
            reqs[r.name.lower()] = r
    return reqs, options


def test_binder_requirements_cover_pyproject_with_cpu_torch_and_the_repo():
    reqs, options = _requirements()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in map(Requirement, project["dependencies"]):
        assert dep.name.lower() in reqs, f"binder/requirements.txt lacks {dep.name} (a labkit dependency)"
        ours = reqs[dep.name.lower()].specifier
        for spec in dep.specifier:  # every lower bound we ask for is at least pyproject's
            if spec.operator == ">=":
                lows = [s.version for s in ours if s.operator in (">=", "==")]
                assert lows and all(SpecifierSet(f">={spec.version}").contains(v) for v in lows), (
                    f"binder pins {dep.name}{ours}, weaker than pyproject's {dep}")
    assert "ipykernel" in reqs and reqs["ipykernel"].specifier.contains("7.1.0")
    assert not reqs["ipykernel"].specifier.contains("7.0.0"), "ipykernel 7.0 broke output from threads"
    assert "jupyterlab" in reqs
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options or (
        "--index-url https://download.pytorch.org/whl/cpu" in options), "torch must come from the CPU wheel index"
    assert "-e ." in options or "." in reqs, "binder must install labkit itself (repo2docker ignores the root)"


def test_binder_runtime_and_default_url():
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.(1[0-9])", runtime), runtime
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(runtime.split("-")[1] + ".0")
    post = ROOT / "binder" / "postBuild"
    text = post.read_text()
    assert text.startswith("#!/bin/bash") and post.stat().st_mode & 0o111, "postBuild must be an executable script"
    assert "/lab/tree/notebooks/00_tour.ipynb" in text
    assert (ROOT / "notebooks" / "00_tour.ipynb").exists()
