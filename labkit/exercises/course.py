"""An nbgrader course folder from the master notebooks (``labkit assignments build --format nbgrader``).

Each master notebook with exercises becomes one assignment, ``source/<stem>/<stem>.ipynb``, next to an
``nbgrader_config.py`` whose timeouts fit labkit's cells. In the assignment:

* every ``solution`` cell is an nbgrader *solution* cell; its ``# BEGIN SOLUTION`` ... ``# END SOLUTION``
  region is what ``nbgrader generate_assignment`` replaces by ``raise NotImplementedError()`` (a top-level
  region gets a comment naming the variables to assign, since nbgrader's stub does not);
* every check cell (``assert check(id, answer)``) is a locked, autograded *test* cell worth ``points[id]``
  (default 1) that runs ``check(id, answer, graded=True)``: a wrong answer raises ``AssertionError`` carrying
  the verdict and the first hint, which is what nbgrader's gradebook and feedback show;
* a teacher's ``# BEGIN HIDDEN TESTS`` ... ``# END HIDDEN TESTS`` region in a check cell stays (nbgrader hides
  it from students and runs it when grading); ``hidden`` names exercises whose whole check is hidden.

Notebooks without exercises are left out (they have nothing to grade). Files are written deterministically
and atomically, like the student build.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from labkit.exercises.build import (
    BEGIN,
    HIDDEN_BEGIN,
    HIDDEN_END,
    SOLUTION_TAG,
    BuildError,
    assigned_names,
    cell_lines,
    cell_tags,
    cell_text,
    has_solutions,
    hidden_regions,
    notebook_json,
    render,
    strip_assert_check,
)

__all__ = ["CONFIG", "build_course", "course_files", "nbgrader_notebook"]

CONFIG = '''\
"""nbgrader settings for a labkit course (written by `labkit assignments build --format nbgrader`)."""

import os

c = get_config()  # noqa: F821 (nbgrader provides it)

# Grade at labkit's fast size: the checks do not depend on it, and every notebook runs in under a minute
# there (the full size takes minutes per notebook and student). Delete this line to grade at full size.
os.environ.setdefault("LABKIT_FAST", "1")

# nbgrader's defaults (30 s per cell, 4 s of output silence) kill labkit's training and scanning cells.
# The slowest cells take tens of seconds at the fast size on a loaded 2-core machine and minutes at full size.
c.Execute.timeout = 600  # seconds one cell may run
c.Execute.iopub_timeout = 120  # seconds to wait for a cell's output once the kernel says it is done
c.Execute.startup_timeout = 120  # seconds to start a kernel (importing torch on a busy server)
'''


def _check_ids(source: str) -> list[str]:
    """Exercise ids of the ``check("id", ...)`` calls in a cell (in order)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check"
        and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
    ]


def _grade_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _meta(grade_id: str, *, solution: bool, grade: bool, points: float | None = None) -> dict[str, Any]:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def _name_top_level_regions(source: str, where: str) -> str:
    """Before each top-level solution region, a comment naming what to assign (nbgrader's stub only raises)."""
    lines, out = source.split("\n"), []
    for i, line in enumerate(lines):
        if line.strip() == BEGIN and not line[: len(line) - len(line.lstrip())]:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "# END SOLUTION")
            names = assigned_names("\n".join(lines[i + 1 : end]), where, i + 1)
            out.append("# your answer: replace the two lines below by " + "; ".join(f"{n} = ..." for n in names))
        out.append(line)
    return "\n".join(out)


def nbgrader_notebook(
    nb: dict[str, Any], name: str = "notebook", *, points: dict[str, float] | None = None,
    hidden: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The nbgrader source version of a master notebook (parsed JSON); the input is not modified.

    ``points`` maps exercise ids to their points (default 1); exercise ids in ``hidden`` (or ``"all"``) have
    their whole check hidden from students. Raises :class:`BuildError` for a malformed master.
    """
    points = dict(points or {})
    from labkit.exercises.build import student_notebook

    student_notebook(nb, name)  # validates every marker; the same master must also build for students
    nb = json.loads(json.dumps(nb))
    cells = nb.get("cells", [])
    used: set[str] = set()

    def unique(grade_id: str) -> str:
        base, n = grade_id, 2
        while grade_id in used:
            grade_id, n = f"{base}-{n}", n + 1
        used.add(grade_id)
        return grade_id

    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        source, where = cell_text(cell.get("source", "")), f"{name}, cell {index + 1}"
        if SOLUTION_TAG in cell_tags(cell):
            following = next((ids for c in cells[index + 1 :] if (ids := _check_ids(cell_text(c.get("source", ""))))),
                             [f"cell{index + 1}"])
            cell["metadata"]["nbgrader"] = _meta(unique(_grade_id(following[0]) + "-answer"), solution=True,
                                                 grade=False)
            source = _name_top_level_regions(source, where)
        elif ids := _check_ids(source):
            source = strip_assert_check(source, graded=True)
            if set(ids) & set(hidden) or "all" in hidden:
                body = "\n".join(line for line in source.split("\n") if line.strip() not in (HIDDEN_BEGIN, HIDDEN_END))
                source = (f"# hidden tests: the grader checks your answer here; check({ids[0]!r}, ...) checks it now\n"
                          f"{HIDDEN_BEGIN}\n{body}\n{HIDDEN_END}")
            hidden_regions(source, where)
            cell["metadata"]["nbgrader"] = _meta(unique(_grade_id(ids[0])), solution=False, grade=True,
                                                 points=sum(points.get(i, 1) for i in ids))
        cell["source"] = cell_lines(source)
    return nb


def course_files(
    src: str | Path, *, points: dict[str, float] | None = None, hidden: set[str] | frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """The files of an nbgrader course folder as ``(relative path, text)``, the config first."""
    files = [("nbgrader_config.py", CONFIG)]
    for path, _, _ in render(src):  # render validates every master first
        nb = json.loads(path.read_text(encoding="utf-8"))
        if has_solutions(nb):
            files.append((f"source/{path.stem}/{path.name}",
                          notebook_json(nbgrader_notebook(nb, path.name, points=points, hidden=hidden))))
    if len(files) == 1:
        raise BuildError(f"no notebook in {str(src)!r} has exercises (cells tagged {SOLUTION_TAG!r}): nothing to grade")
    unknown = (set(points or {}) | set(hidden)) - {"all"} - {i for _, text in files[1:] for i in _ids_in(text)}
    if unknown:
        raise BuildError(f"--points/--hidden name exercises not in these notebooks: {sorted(unknown)}")
    return files


def _ids_in(text: str) -> list[str]:
    nb = json.loads(text)
    return [i for c in nb["cells"] if c["cell_type"] == "code" for i in _check_ids(cell_text(c["source"]))]


def build_course(
    src: str | Path, out: str | Path, *, points: dict[str, float] | None = None,
    hidden: set[str] | frozenset[str] = frozenset(),
) -> list[Path]:
    """Write an nbgrader course folder for the masters in ``src`` into ``out``; return the written paths.

    Then, in ``out``: ``nbgrader generate_assignment <stem>``, ``nbgrader release_assignment``,
    ``nbgrader collect``, ``nbgrader autograde <stem>``, ``nbgrader generate_feedback <stem>``.
    """
    from labkit._io import ensure_folder, write_text

    files, out = course_files(src, points=points, hidden=hidden), Path(out)
    src_dir = Path(src).resolve() if Path(src).is_dir() else Path(src).resolve().parent
    if out.resolve() == src_dir or src_dir in out.resolve().parents:
        raise BuildError(f"out={str(out)!r} is inside the source folder {str(src_dir)!r}; choose a separate folder")
    written = []
    for rel, text in files:
        ensure_folder((out / rel).parent)
        written.append(write_text(out / rel, text))
    return written
