"""Student versions of the exercise notebooks: the builder, the CLI, and both versions executed.

Exact expected text on the fixture notebooks in ``tests/fixtures/assignments/``;
malformed markers must raise a :class:`BuildError` naming notebook and cell;
student versions of the fixtures and of every real notebook with exercises are
executed with nbclient and every check cell must print a ❌ verdict (not crash).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from labkit.cli import main
from labkit.exercises.build import STUB, BuildError, build, has_solutions, render, student_notebook, student_source

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "assignments"
NOTEBOOKS = ROOT / "notebooks"
THEMED = ["01_hessian_spectrum", "02_ntk", "03_fractal_boundary", "04_batch_size", "05_signal_propagation",
          "06_normalization", "07_grokking", "08_scaling_laws", "09_large_learning_rates", "10_width_transfer",
          "11_loss_landscape", "12_batch_size_in_practice"]
UNUSABLE = "the check could not use your answer"  # core verdict when a checker raises on an answer
CELL_TIMEOUT = 240  # seconds per cell on a slow 2-core CI machine; a fast-mode notebook runs in < 60 s in total


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- one cell's source


def test_indented_region_becomes_one_stub_line_at_its_indentation():
    src = "def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    y = x\n\n    return y\n    # END SOLUTION\n"
    new, n = student_source(src)
    assert n == 1
    assert new == f"def f(x):\n    '''doc'''\n    {STUB}\n"
    assert STUB == 'raise NotImplementedError("Exercise: write your code here, then run the check cell below")'


def test_deeper_indentation_and_several_regions_in_one_cell():
    src = (
        "class A:\n    def f(self):\n        # BEGIN SOLUTION\n        return 1\n        # END SOLUTION\n\n"
        "def g():\n  # BEGIN SOLUTION\n  return 2\n  # END SOLUTION\nprint(g)"
    )
    new, n = student_source(src)
    assert n == 2
    assert new == f"class A:\n    def f(self):\n        {STUB}\n\ndef g():\n  {STUB}\nprint(g)"


def test_top_level_assignments_become_none_for_each_name_in_order():
    src = (
        "x = 1\n# BEGIN SOLUTION\nlam = 3.0\nlr, steps = 2 / lam, 10\nlam = lam + 1\n"
        "total: float = (lr\n    * steps)\n[a, b] = 1, 2\nc = d = 0\n# END SOLUTION\nprint(lr)"
    )
    new, n = student_source(src)
    assert n == 1
    names = ["lam", "lr", "steps", "total", "a", "b", "c", "d"]
    assert new == "x = 1\n" + "".join(f"{k} = None  # your answer here\n" for k in names) + "print(lr)"


def test_code_outside_regions_is_untouched_and_no_region_means_no_change():
    src = "import numpy as np\nx = np.ones(3)  # BEGIN here is just prose\n"
    assert student_source(src) == (src, 0)


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("x = 1\n# END SOLUTION\n", "line 2 has '# END SOLUTION' without a matching"),
        ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "'# BEGIN SOLUTION' on line 2 has no matching"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "line 2 opens a solution region inside"),
        ("my_prediction = 6  # BEGIN SOLUTION\n", "line 1 has a solution marker that is not alone on its line"),
        ("# BEGIN SOLUTION\nx = 1  # END SOLUTION\n", "line 2 has a solution marker that is not alone"),
        ("# BEGIN SOLUTION\nfor i in range(3):\n    x = i\n# END SOLUTION\n", "line 2 is a For statement"),
        ("y = 0\n# BEGIN SOLUTION\nx = 1\nprint(x)\n# END SOLUTION\n", "line 4 is a Expr statement"),
        ("# BEGIN SOLUTION\nobj.attr = 1\n# END SOLUTION\n", "line 2 assigns to 'obj.attr'"),
        ("# BEGIN SOLUTION\n# END SOLUTION\n", "assigns no name"),
        ("# BEGIN SOLUTION\nx = (1\n# END SOLUTION\n", "does not parse"),
    ],
)
def test_malformed_markers_raise_a_build_error_naming_the_place(src, message):
    with pytest.raises(BuildError, match=re.escape(message)) as info:
        student_source(src, "nb.ipynb, cell 7")
    assert str(info.value).startswith("nb.ipynb, cell 7")


def _nb(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _code(source: str, tags: list[str] | None = None) -> dict:
    meta = {"tags": tags} if tags else {}
    return {"cell_type": "code", "execution_count": 1, "metadata": meta, "outputs": [], "source": source}


def test_solution_cell_without_markers_is_an_error_naming_notebook_and_cell():
    nb = _nb(_code("x = 1"), _code("answer = 42", ["solution"]))
    with pytest.raises(BuildError, match=r"^05_demo\.ipynb, cell 2 is tagged 'solution' but has no"):
        student_notebook(nb, "05_demo.ipynb")


def test_markers_in_an_untagged_cell_are_an_error_so_the_solution_cannot_leak():
    nb = _nb(_code("# BEGIN SOLUTION\nanswer = 42\n# END SOLUTION"))
    with pytest.raises(BuildError, match=r"^demo\.ipynb, cell 1 has solution markers but no 'solution' tag"):
        student_notebook(nb, "demo.ipynb")


def test_assert_check_becomes_check_in_every_form():
    nb = _nb(
        _code("# BEGIN SOLUTION\na = 1\n# END SOLUTION", ["solution"]),
        _code('assert check("t.a", a)'),
        _code('if True:\n    assert check("t.a", a), "message, with a comma"\nassert a == 1'),
        _code('assert check(\n    "t.a",\n    a,\n)  # trailing comment'),
        _code('%time assert check("t.a", a)'),
        _code('λ = a\nassert check("t.λ", λ)  # λ_max, not λ_min'),
    )
    student, regions = student_notebook(nb, "t")
    assert regions == 1
    sources = [_source(c) for c in student["cells"]]
    assert sources[1] == 'check("t.a", a);'  # ";": no "Out[n]: False" under the verdict
    assert sources[2] == 'if True:\n    check("t.a", a)\nassert a == 1'
    assert sources[3] == 'check(\n    "t.a",\n    a,\n);  # trailing comment'
    assert sources[4] == '%time check("t.a", a)'
    assert sources[5] == 'λ = a\ncheck("t.λ", λ);  # λ_max, not λ_min'
    assert student["cells"][0]["metadata"]["tags"] == ["student"]
    assert nb["cells"][0]["metadata"]["tags"] == ["solution"], "the input notebook must not be modified"


# ---------------------------------------------------------------- fixture notebooks, exact output

EXPECTED_EXERCISE_CELLS = {
    5: f'def double(x):\n    """Return 2 x."""\n    {STUB}',
    6: 'check("fixture.double", double);',
    8: (
        "width, height = 3.0, 4.0\narea = None  # your answer here\nperimeter = None  # your answer here\n"
        'print("answers ready")'
    ),
    9: 'check(\n    "fixture.area", area\n)\nhint("fixture.area")',
}


def test_build_fixture_notebooks_exact_text(tmp_path):
    results = build(FIXTURES, tmp_path)
    assert [(r.source.name, r.target.name, r.regions) for r in results] == [
        ("crash_master.ipynb", "crash_master.ipynb", 1),
        ("exercises_master.ipynb", "exercises_master.ipynb", 2),
        ("plain.ipynb", "plain.ipynb", 0),
    ]
    master, student = _load(FIXTURES / "exercises_master.ipynb"), _load(tmp_path / "exercises_master.ipynb")
    assert len(student["cells"]) == len(master["cells"])
    for i, (m, s) in enumerate(zip(master["cells"], student["cells"])):
        assert s["cell_type"] == m["cell_type"] and s["id"] == m["id"]
        assert _source(s) == EXPECTED_EXERCISE_CELLS.get(i, _source(m)), f"cell {i + 1}"
        tags = s["metadata"].get("tags", [])
        assert tags == (["student"] if i in (5, 8) else []), f"cell {i + 1}"
        if s["cell_type"] == "code":
            assert s["outputs"] == [] and s["execution_count"] is None
    for text in ("x + x", "width * height", "BEGIN SOLUTION", "END SOLUTION", "assert check"):
        assert text not in (tmp_path / "exercises_master.ipynb").read_text(), text
    assert student["metadata"] == master["metadata"]
    assert (student["nbformat"], student["nbformat_minor"]) == (4, 5)


def test_notebook_without_solutions_is_copied_minus_outputs(tmp_path):
    build(FIXTURES / "plain.ipynb", tmp_path)
    master, student = _load(FIXTURES / "plain.ipynb"), _load(tmp_path / "plain.ipynb")
    assert master["cells"][1]["outputs"] and master["cells"][1]["execution_count"] == 3
    master["cells"][1]["outputs"], master["cells"][1]["execution_count"] = [], None
    assert student == master  # same cells, sources (the word 'assert check(' in a comment stays), metadata
    assert not has_solutions(student)


def test_build_is_deterministic_sorted_keys_fixed_indent_and_leaves_the_masters_alone(tmp_path):
    before = {p.name: p.read_bytes() for p in FIXTURES.glob("*.ipynb")}
    build(FIXTURES, tmp_path / "a")
    build(FIXTURES, tmp_path / "b")
    for name in before:
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b, name
        text = a.decode("utf-8")
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        assert "\r" not in text
    assert {p.name: p.read_bytes() for p in FIXTURES.glob("*.ipynb")} == before


def test_a_malformed_notebook_stops_the_build_before_anything_is_written(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURES / "plain.ipynb", src / "a_fine.ipynb")
    (src / "b_broken.ipynb").write_text(json.dumps(_nb(_code("x = 1", ["solution"]))))
    with pytest.raises(BuildError, match=r"b_broken\.ipynb, cell 1"):
        build(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        build(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="src must be a notebook or a folder"):
        build(tmp_path / "missing.ipynb", tmp_path / "out")


# ---------------------------------------------------------------- the CLI


def test_cli_build_check_and_errors(tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["assignments", "build", "--src", str(FIXTURES), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exercises_master.ipynb  (2 solution region(s) replaced)" in printed
    assert "plain.ipynb  (no exercises, copied)" in printed
    assert f"wrote 3 student notebook(s) to {out}" in printed
    assert (out / "exercises_master.ipynb").read_bytes() == dict((p.name, t) for p, t, _ in render(FIXTURES))[
        "exercises_master.ipynb"
    ].encode("utf-8")

    assert main(["assignments", "build", "--src", str(FIXTURES), "--out", str(out), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    (out / "plain.ipynb").write_text("{}")
    assert main(["assignments", "build", "--src", str(FIXTURES), "--out", str(out), "--check"]) == 1
    assert f"out of date: {out / 'plain.ipynb'}" in capsys.readouterr().out

    broken = tmp_path / "broken.ipynb"
    broken.write_text(json.dumps(_nb(_code("x = 1", ["solution"]))))
    assert main(["assignments", "build", "--src", str(broken), "--out", str(tmp_path / "o")]) == 1
    assert "error: broken.ipynb, cell 1 is tagged 'solution'" in capsys.readouterr().err
    assert main(["assignments", "build", "--src", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert main(["assignments"]) == 2


def test_cli_defaults_are_the_bundled_notebooks_and_student_folder(tmp_path, monkeypatch, capsys):
    import labkit.cli

    monkeypatch.setattr(labkit.cli, "notebooks_dir", lambda: FIXTURES)
    monkeypatch.chdir(tmp_path)
    assert main(["assignments", "build"]) == 0
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == sorted(p.name for p in FIXTURES.glob("*.ipynb"))
    assert "wrote 3 student notebook(s) to student" in capsys.readouterr().out

    def missing():
        raise FileNotFoundError("labkit's notebooks were not found")

    monkeypatch.setattr(labkit.cli, "notebooks_dir", missing)
    assert main(["assignments", "build"]) == 1
    assert "error: labkit's notebooks were not found" in capsys.readouterr().err


# ---------------------------------------------------------------- executing student versions

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CHECK_CALL = re.compile(r"(?<![\w.])check\(")
_VERDICT = re.compile(r"❌ \[[^\]]+\] (\S.*)")


def execute(path: Path, cwd: Path) -> dict:
    """Run a notebook in a fresh kernel (errors recorded, not raised); return the executed notebook as a dict."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(cwd)}}
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_FAST", "1")  # the kernel inherits it: every size shrinks, as in CI's nbval run
        client.execute()
    return json.loads(nbformat.writes(nb))


def exercise_problems(nb: dict) -> list[str]:
    """What is wrong with an executed student notebook (empty list: fine).

    Cells before the first exercise must not error; every check cell must print
    at least one ❌ verdict with a message, no ✅ (a stub must never pass), no
    "could not use your answer" (a checker that trips over a stub), and no
    error; no cell may fail with a traceback from inside labkit.exercises.
    """
    problems = []
    cells = nb["cells"]
    first = next((i for i, c in enumerate(cells) if "student" in c["metadata"].get("tags", [])), None)
    if first is None:
        return ["no cell is tagged 'student': is this a student version?"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        outputs = cell.get("outputs", [])
        errors = [o for o in outputs if o["output_type"] == "error"]
        text = "".join(
            "".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "")
            for o in outputs
            if o["output_type"] == "stream"
        )
        where = f"cell {i + 1}"
        for err in errors:
            trace = _ANSI.sub("", "\n".join(err.get("traceback", [])))
            summary = f"{err['ename']}: {err['evalue']}"
            if i < first:
                problems.append(f"{where} (before the first exercise) raised {summary}\n{trace[-800:]}")
            elif "labkit/exercises" in trace.replace("\\", "/"):
                problems.append(f"{where} crashed inside labkit.exercises: {summary}\n{trace[-1500:]}")
        is_check = i > first and _CHECK_CALL.search(_source(cell)) and "student" not in cell["metadata"].get("tags", [])
        if not is_check:
            continue
        if errors:
            problems.append(f"{where} (check cell) raised {errors[0]['ename']}: {errors[0]['evalue']}")
        if "✅" in text:
            problems.append(f"{where} (check cell): a student stub passed the check: {text.strip()!r}")
        verdicts = _VERDICT.findall(text)
        if not verdicts and not errors and "✅" not in text:
            problems.append(f"{where} (check cell) printed no ❌ verdict: {text.strip()!r}")
        problems += [f"{where} (check cell): empty verdict message" for v in verdicts if len(v.strip()) < 10]
        problems += [
            f"{where} (check cell): the checker tripped over the student stub: {v.strip()}"
            for v in verdicts
            if v.startswith(UNUSABLE)
        ]
    return problems


def _error_output(ename: str, path: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": "boom", "traceback": [f"File \x1b[0;32m{path}:3\x1b[0m"]}


def test_exercise_problems_flags_each_kind_of_failure():
    def cell(source, outputs=(), tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "outputs": list(outputs), "source": source}

    def stream(text):
        return {"output_type": "stream", "name": "stdout", "text": text}

    good = [
        cell("x = 1"),
        cell("def f():\n    raise NotImplementedError", tags=["student"]),
        cell('check("a.b", f)', [stream("❌ [T] not implemented yet: write your code.\n")]),
    ]
    assert exercise_problems(_nb(*good)) == []
    bad = [
        cell("x = 1", [_error_output("ValueError", "/site/labkit/hessian.py")]),
        cell("y = None", tags=["student"]),
        cell('check("a.b", y)', [_error_output("TypeError", "/work/labkit/exercises/_core.py")]),
        cell('check("a.c", y)', [stream("✅ [T] correct. Well done!\n")]),
        cell('check("a.d", y)', [stream("nothing\n")]),
        cell('check("a.e", y)', [stream(f"❌ [T] {UNUSABLE} (TypeError: bad operand)\n")]),
        cell("plot(f())", [_error_output("KeyError", "C:\\labkit\\exercises\\ntk.py")]),
        cell("plot(f())", [_error_output("NotImplementedError", "<ipython-input-3>")]),
    ]
    problems = exercise_problems(_nb(*bad))
    assert problems[0] == "cell 1 (before the first exercise) raised ValueError: boom\nFile /site/labkit/hessian.py:3"
    assert problems[1].startswith("cell 3 crashed inside labkit.exercises: TypeError: boom")
    assert problems[2] == "cell 3 (check cell) raised TypeError: boom"
    assert problems[3].startswith("cell 4 (check cell): a student stub passed the check")
    assert problems[4].startswith("cell 5 (check cell) printed no ❌ verdict")
    assert (
        problems[5]
        == f"cell 6 (check cell): the checker tripped over the student stub: {UNUSABLE} (TypeError: bad operand)"
    )
    assert problems[6].startswith("cell 7 crashed inside labkit.exercises: KeyError")
    assert len(problems) == 7  # a student stub raising NotImplementedError in a later cell is fine
    assert exercise_problems(_nb(cell("x = 1"))) == ["no cell is tagged 'student': is this a student version?"]


@pytest.mark.slow
def test_fixture_student_version_runs_and_every_check_reports(tmp_path):
    build(FIXTURES / "exercises_master.ipynb", tmp_path)
    nb = execute(tmp_path / "exercises_master.ipynb", FIXTURES)
    assert exercise_problems(nb) == []
    outs = ["".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    printed = "\n".join(outs)
    assert "❌ [Double every entry] not implemented yet" in printed
    assert "❌ [Area of a 3 x 4 rectangle] no answer yet" in printed
    assert "Hint 1/1: Width times height." in printed
    assert "12" not in printed  # the expected area never appears


@pytest.mark.slow
def test_fixture_solution_version_passes_every_check_and_a_crashing_checker_is_caught(tmp_path):
    nb = execute(FIXTURES / "exercises_master.ipynb", FIXTURES)
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"] if o["output_type"] == "error"]
    assert errors == []
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert printed.count("✅") == 2 and "❌" not in printed

    build(FIXTURES / "crash_master.ipynb", tmp_path)
    problems = exercise_problems(execute(tmp_path / "crash_master.ipynb", FIXTURES))
    assert problems == [
        "cell 5 (check cell): the checker tripped over the student stub: the check could not use your answer "
        "(TypeError: unsupported operand type(s) for /: 'NoneType' and 'NoneType')"
    ]


def _notebooks_with_exercises() -> list[Path]:
    return [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if has_solutions(_load(p))]


def test_every_real_notebook_builds():
    """All bundled notebooks convert (malformed markers would fail here, fast, before any execution)."""
    if not any(NOTEBOOKS.glob("*.ipynb")):
        pytest.skip("no notebooks yet")
    for path, text, regions in render(NOTEBOOKS):
        assert ("BEGIN SOLUTION" in text) is False, path.name
        assert regions == 0 or '"student"' in text, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", _notebooks_with_exercises(), ids=lambda p: p.stem)
def test_student_version_of_real_notebook_runs_and_checks_report(path, tmp_path):
    """Every cell before the exercises runs; every check on a student stub prints ❌ with a message."""
    build(path, tmp_path)
    problems = exercise_problems(execute(tmp_path / path.name, NOTEBOOKS))
    assert problems == [], f"{path.name} student version:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", THEMED)
def test_themed_notebook_has_at_least_two_registered_exercises(name):
    """Issue 9 acceptance: every themed notebook ends with >= 2 exercises whose checkers are registered."""
    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.exists():
        pytest.skip(f"{path.name} has not landed yet")
    from labkit.exercises import list_exercises

    cells = _load(path)["cells"]
    ids = {
        m for c in cells if c["cell_type"] == "code" for m in re.findall(r"check\(\s*['\"]([\w.]+)['\"]", _source(c))
    }
    solutions = sum("solution" in c["metadata"].get("tags", []) for c in cells)
    assert solutions >= 2 and len(ids) >= 2, f"{path.name}: {solutions} solution cells, check ids {sorted(ids)}"
    assert ids <= set(list_exercises()), f"{path.name}: unregistered ids {sorted(ids - set(list_exercises()))}"


def test_every_registered_exercise_reports_stubs_and_never_passes_junk(capsys):
    """For each theme's exercises: stubs get a clear verdict (not a checker error), junk answers never pass,
    and a student function that raises is reported with its error (for every exercise that takes a function)."""
    import numpy as np

    from labkit.exercises import check, list_exercises

    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise: write your code here, then run the check cell below")

    def raises(*args, **kwargs):
        raise ZeroDivisionError("student bug")

    def returns(value):
        return lambda *args, **kwargs: value

    junk = [0.0, -1.0, 1e30, float("nan"), "abc", (None, None), [], np.zeros(3), returns(None), returns(0.0)]
    junk += [returns(np.ones(2)), returns("abc")]
    problems = []
    for id in list_exercises():
        if id.startswith("core_test."):
            continue
        for answer in (None, stub, (None, None)):
            if check(id, answer):
                problems.append(f"{id}: the stub {answer!r} passed")
            out = capsys.readouterr().out
            if answer is stub and UNUSABLE in out:
                problems.append(f"{id}: a NotImplementedError stub tripped the checker: {out.strip()}")
        for answer in junk:
            if check(id, answer, quiet=True):
                problems.append(f"{id}: the junk answer {answer!r} passed")
        capsys.readouterr()
        check(id, 3.0)
        if "expected a function" in capsys.readouterr().out:  # a function exercise: a raising function is reported
            check(id, raises)
            out = capsys.readouterr().out
            if "your function raised ZeroDivisionError: student bug (line" not in out:
                problems.append(f"{id}: a raising student function is not reported as such: {out.strip()}")
    assert problems == []


# ---------------------------------------------------------------- never destroy the masters


def _masters(tmp_path):
    src = tmp_path / "masters"
    shutil.copytree(FIXTURES, src)
    return src, {p.name: p.read_bytes() for p in src.iterdir()}


@pytest.mark.parametrize("out", [".", "sub", "sub/deeper"])
def test_out_equal_to_or_inside_src_is_refused_and_nothing_is_written(tmp_path, capsys, out):
    src, before = _masters(tmp_path)
    target = src / out
    assert main(["assignments", "build", "--src", str(src), "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert "source folder" in err and ("same folder" in err or "inside" in err)
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before
    assert not (src / "sub").exists()
    with pytest.raises(BuildError, match="source folder"):
        build(src / "exercises_master.ipynb", src)  # a single notebook into its own folder


def test_a_file_with_solution_markers_is_never_overwritten(tmp_path, capsys):
    src, before = _masters(tmp_path)
    out = tmp_path / "handout"
    out.mkdir()
    shutil.copy(src / "exercises_master.ipynb", out / "exercises_master.ipynb")  # a master left in the handout
    assert main(["assignments", "build", "--src", str(src), "--out", str(out)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (out / "exercises_master.ipynb").read_bytes() == before["exercises_master.ipynb"]
    assert sorted(p.name for p in out.iterdir()) == ["exercises_master.ipynb"]  # nothing else written either
    (out / "exercises_master.ipynb").unlink()
    assert main(["assignments", "build", "--src", str(src), "--out", str(out)]) == 0
    assert main(["assignments", "build", "--src", str(src), "--out", str(out)]) == 0  # its own output: rebuilt
