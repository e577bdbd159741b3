"""Student versions of the exercise notebooks: strip the solutions, keep everything else.

Solutions live in the master notebooks (the ones in ``notebooks/``, tested with
nbval) inside code cells tagged ``solution``, between the comment lines
``# BEGIN SOLUTION`` and ``# END SOLUTION``. The student version replaces each
region by a stub:

* an indented region (the body of a ``def``) becomes one line
  ``raise NotImplementedError("Exercise: ...")`` at the region's indentation;
* a top-level region of assignments ``NAME = expr`` becomes
  ``NAME = None  # your answer here`` for each assigned name.

The cell's ``solution`` tag becomes ``student``; ``assert check(...)`` becomes
``check(...)`` so a student's failing check prints a verdict instead of
raising; outputs and execution counts are cleared. The JSON is written with
sorted keys and a fixed indent, so building twice gives byte-identical files
that can be committed or regenerated (``labkit assignments build``).

Malformed markers (an unpaired ``BEGIN``/``END``, a marker sharing a line
with code, a ``solution`` cell without markers, markers in an untagged cell, a
top-level region that is not assignments) raise :class:`BuildError` naming the
notebook and the cell, so a solution can never leak silently.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STUB",
    "BuildError",
    "BuildResult",
    "build",
    "has_solutions",
    "render",
    "stale",
    "student_notebook",
    "student_source",
]

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: write your code here, then run the check cell below")'
ANSWER = "None  # your answer here"
SOLUTION_TAG, STUDENT_TAG = "solution", "student"
_MARKER = re.compile(r"#\s*(BEGIN|END)\s+SOLUTION\b")
_ASSERT_CHECK = re.compile(r"\bassert\s+check\(")
HIDDEN_BEGIN, HIDDEN_END = "# BEGIN HIDDEN TESTS", "# END HIDDEN TESTS"
_HIDDEN = re.compile(r"#\s*(BEGIN|END)\s+HIDDEN\s+TESTS\b")


class BuildError(ValueError):
    """A master notebook's solution markers are malformed (the message names the notebook and cell)."""


@dataclass(frozen=True)
class BuildResult:
    """One written student notebook: where it came from, where it went, how many regions were stubbed."""

    source: Path
    target: Path
    regions: int


def cell_text(source: str | list[str]) -> str:
    return "".join(source) if isinstance(source, list) else source


def cell_lines(text: str) -> list[str]:
    """nbformat's on-disk form of a multi-line string: a list of lines that keep their newline."""
    return text.splitlines(keepends=True)


def cell_tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def assigned_names(region: str, where: str, offset: int) -> list[str]:
    """Names assigned by a top-level region (cell line ``offset + 1`` is its first); error unless all assignments."""
    try:
        tree = ast.parse(region)
    except SyntaxError as err:
        raise BuildError(
            f"{where}: the solution region does not parse ({err.msg}, line {offset + (err.lineno or 1)})"
        ) from None
    names: list[str] = []

    def add(target: ast.expr, stmt: ast.stmt) -> None:
        if isinstance(target, ast.Name):
            if target.id not in names:
                names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                add(elt, stmt)
        else:
            raise BuildError(
                f"{where}: top-level solution line {offset + stmt.lineno} assigns to {ast.unparse(target)!r}; "
                "only plain names (NAME = expr) can be replaced by NAME = None"
            )

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                add(target, stmt)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            add(stmt.target, stmt)
        else:
            raise BuildError(
                f"{where}: a top-level solution region may only contain assignments NAME = expr, but line "
                f"{offset + stmt.lineno} is a {type(stmt).__name__} statement; put the computation inside a function "
                "(an indented region) or into the assigned expression"
            )
    if not names:
        raise BuildError(f"{where}: the top-level solution region assigns no name")
    return names


def student_source(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace every solution region of one cell's source; return ``(new source, number of regions)``."""
    lines = source.split("\n")
    out: list[str] = []
    regions = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == END:
            raise BuildError(f"{where}: line {i + 1} has {END!r} without a matching {BEGIN!r} before it")
        if stripped != BEGIN:
            if _MARKER.search(line):
                raise BuildError(
                    f"{where}: line {i + 1} has a solution marker that is not alone on its line: {line.strip()!r}; "
                    f"put {BEGIN!r} and {END!r} on lines of their own"
                )
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        end = i + 1
        while end < len(lines) and lines[end].strip() != END:
            if lines[end].strip() == BEGIN:
                raise BuildError(f"{where}: line {end + 1} opens a solution region inside another (line {i + 1})")
            if _MARKER.search(lines[end]):
                raise BuildError(f"{where}: line {end + 1} has a solution marker that is not alone on its line")
            end += 1
        if end == len(lines):
            raise BuildError(f"{where}: {BEGIN!r} on line {i + 1} has no matching {END!r}")
        body = lines[i + 1 : end]
        if indent:
            out.append(indent + STUB)
        else:
            out.extend(f"{name} = {ANSWER}" for name in assigned_names("\n".join(body), where, i + 1))
        regions += 1
        i = end + 1
    return "\n".join(out), regions


def hidden_regions(source: str, where: str = "cell") -> list[tuple[int, int]]:
    """``(first, last)`` line indices of each ``# BEGIN HIDDEN TESTS`` ... ``# END HIDDEN TESTS`` region, checked.

    Hidden tests are a teacher's extra checks in a check cell: nbgrader runs them only when grading, and the
    student version drops them.
    """
    regions, start = [], None
    for i, line in enumerate(source.split("\n")):
        match = _HIDDEN.search(line)
        if match is None:
            continue
        if line.strip() not in (HIDDEN_BEGIN, HIDDEN_END):
            raise BuildError(f"{where}: line {i + 1} has a hidden-tests marker that is not alone on its line")
        if match.group(1) == "BEGIN":
            if start is not None:
                raise BuildError(f"{where}: line {i + 1} opens hidden tests inside another region (line {start + 1})")
            start = i
        else:
            if start is None:
                raise BuildError(f"{where}: line {i + 1} has {HIDDEN_END!r} without a matching {HIDDEN_BEGIN!r}")
            regions.append((start, i))
            start = None
    if start is not None:
        raise BuildError(f"{where}: {HIDDEN_BEGIN!r} on line {start + 1} has no matching {HIDDEN_END!r}")
    return regions


def _strip_hidden(source: str, where: str) -> str:
    lines = source.split("\n")
    for first, last in reversed(hidden_regions(source, where)):
        del lines[first : last + 1]
    return "\n".join(lines)


def strip_assert_check(source: str, graded: bool = False) -> str:
    """``assert check(id, answer)[, msg]`` -> ``check(id, answer)``: a failing check prints, it does not raise.

    With ``graded`` the call becomes ``check(id, answer, graded=True)`` (a wrong answer raises the verdict as an
    ``AssertionError``: the check cells of an nbgrader assignment, :mod:`labkit.exercises.course`).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (magics): fall back to the plain textual rule
        if graded:
            raise BuildError(f"a check cell with IPython syntax cannot be graded: {source!r}") from None
        return _ASSERT_CHECK.sub("check(", source)
    lines = source.split("\n")
    asserts = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Call)
        and isinstance(node.test.func, ast.Name)
        and node.test.func.id == "check"
    ]
    last_statement = tree.body[-1] if tree.body else None
    for node in sorted(asserts, key=lambda n: n.lineno, reverse=True):
        first, last = node.lineno - 1, node.end_lineno - 1
        # ast offsets count UTF-8 bytes, not characters
        head = lines[first].encode()[: node.col_offset].decode()
        tail = lines[last].encode()[node.end_col_offset :].decode()
        call = ast.get_source_segment(source, node.test)
        if graded:
            node.test.keywords.append(ast.keyword("graded", ast.Constant(True)))
            call = ast.unparse(node.test)
        if node is last_statement:  # the cell's value: ";" keeps "Out[n]: False" from showing under the verdict
            call += ";"
        lines[first : last + 1] = (head + call + tail).split("\n")
    return "\n".join(lines)


def has_solutions(nb: dict[str, Any]) -> bool:
    """Whether a notebook (parsed JSON) has any cell tagged ``solution``."""
    return any(SOLUTION_TAG in cell_tags(cell) for cell in nb.get("cells", []))


def student_notebook(nb: dict[str, Any], name: str = "notebook") -> tuple[dict[str, Any], int]:
    """The student version of a parsed notebook; returns ``(notebook, number of stubbed regions)``.

    The input is not modified. A notebook without ``solution`` cells comes back
    unchanged except for cleared outputs.
    """
    nb = json.loads(json.dumps(nb))
    exercises = has_solutions(nb)
    regions = 0
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        source = cell_text(cell.get("source", ""))
        where = f"{name}, cell {index + 1}"
        tags = cell_tags(cell)
        if SOLUTION_TAG in tags:
            if _HIDDEN.search(source):
                raise BuildError(f"{where}: hidden tests belong in a check cell, not in a {SOLUTION_TAG!r} cell")
            new, count = student_source(source, where)
            if count == 0:
                raise BuildError(f"{where} is tagged {SOLUTION_TAG!r} but has no {BEGIN!r} ... {END!r} region")
            regions += count
            cell["metadata"]["tags"] = [STUDENT_TAG if t == SOLUTION_TAG else t for t in tags]
            source = new
        elif _MARKER.search(source):
            raise BuildError(f"{where} has solution markers but no {SOLUTION_TAG!r} tag: the solution would leak")
        else:
            source = _strip_hidden(source, where)
        if exercises:
            source = strip_assert_check(source)
        cell["source"] = cell_lines(source)
    return nb, regions


def notebook_json(nb: dict[str, Any]) -> str:
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def render(src: str | Path) -> list[tuple[Path, str, int]]:
    """Student versions of ``src`` (a notebook or a folder of notebooks) as ``(source path, JSON text, regions)``."""
    src = Path(src)
    if src.is_dir():
        sources = sorted(src.glob("*.ipynb"))
    elif src.suffix == ".ipynb" and src.is_file():
        sources = [src]
    else:
        raise FileNotFoundError(f"src must be a notebook or a folder of notebooks, got {str(src)!r}")
    if not sources:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {str(src)!r}")
    built = []
    for path in sources:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise BuildError(f"{path.name} is not a valid notebook: {err}") from None
        student, regions = student_notebook(nb, path.name)
        built.append((path, notebook_json(student), regions))
    return built


def _holds_solutions(path: Path) -> bool:
    """Whether the file at ``path`` looks like a master: a ``solution`` cell or a solution marker in code."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True  # unreadable: do not risk it
    try:
        nb = json.loads(text)
    except json.JSONDecodeError:
        return bool(_MARKER.search(text))
    if not isinstance(nb, dict):
        return False
    return has_solutions(nb) or any(
        cell.get("cell_type") == "code" and _MARKER.search(cell_text(cell.get("source", "")))
        for cell in nb.get("cells", [])
    )


def _check_destination(src: Path, out: Path, targets: list[Path]) -> None:
    """Refuse an ``out`` that is, or lies inside, the source folder, and any target that holds solutions."""
    src_dir = (src if src.is_dir() else src.parent).resolve()
    out_dir = out.resolve()
    if out_dir == src_dir or src_dir in out_dir.parents:
        where = "the same folder as" if out_dir == src_dir else "inside"
        raise BuildError(
            f"out={str(out)!r} is {where} the source folder {str(src_dir)!r}: the student versions would replace "
            "or sit among the masters with their solutions; choose a separate folder, e.g. --out student"
        )
    masters = [t for t in targets if t.exists() and _holds_solutions(t)]
    if masters:
        raise BuildError(
            f"refusing to overwrite {', '.join(str(t) for t in masters)}: it holds solution markers or a "
            f"{SOLUTION_TAG!r} cell (a master notebook, not a student version); move it or choose another --out"
        )


def build(src: str | Path, out: str | Path) -> list[BuildResult]:
    """Write the student version of ``src`` (a notebook or a folder of notebooks) into the folder ``out``.

    Every notebook is converted and every destination checked before anything is written, so a malformed
    notebook or a refused destination leaves ``out`` untouched. ``out`` may not be the source folder or lie
    inside it, and a file in ``out`` that holds solution markers is never overwritten (:class:`BuildError`).
    Each file is written atomically. Returns one :class:`BuildResult` per notebook, in file-name order.
    """
    from labkit._io import ensure_folder, write_text

    built, src, out = render(src), Path(src), Path(out)
    if out.exists() and not out.is_dir():
        raise BuildError(f"out={str(out)!r} is a file; give a folder for the student notebooks")
    _check_destination(src, out, [out / path.name for path, _, _ in built])
    ensure_folder(out)
    results = []
    for path, text, regions in built:
        target = write_text(out / path.name, text)
        results.append(BuildResult(path, target, regions))
    return results


def stale(src: str | Path, out: str | Path) -> list[Path]:
    """Student notebooks in ``out`` that are missing or differ from a fresh build of ``src`` (nothing is written)."""
    out = Path(out)
    return [
        out / path.name
        for path, text, _ in render(src)
        if not (out / path.name).is_file() or (out / path.name).read_text(encoding="utf-8") != text
    ]
