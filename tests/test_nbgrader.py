"""Real nbgrader end to end on a small master notebook: ``labkit assignments build --format nbgrader``, then
``nbgrader generate_assignment``, ``autograde``, ``generate_feedback`` and ``validate``.

Four submissions of one assignment with two exercises (a function and a number): a correct one gets full
points; a wrong function (half the answer) gets zero on that cell with the exercise's hint in the feedback;
a named mistake (2 / lambda_min) gets its own message; the unsolved release fails (``nbgrader validate`` never
says "Success!").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nbgrader")
nbformat = pytest.importorskip("nbformat")

from labkit.exercises.build import BuildError  # noqa: E402
from labkit.exercises.course import CONFIG, build_course, nbgrader_notebook  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "hw1"

RIGHT = "def max_stable_lr(H):\n    return 2.0 / np.linalg.eigvalsh(H).max()"
HALF = "def max_stable_lr(H):\n    return 1.0 / np.linalg.eigvalsh(H).max()"
LAMBDA_MIN = "def max_stable_lr(H):\n    return 2.0 / np.linalg.eigvalsh(H).min()"


def _master() -> dict:
    cells = [
        nbformat.v4.new_markdown_cell("# Homework 1\nTwo exercises."),
        nbformat.v4.new_code_cell("import numpy as np\nfrom labkit.exercises import check, hint"),
        nbformat.v4.new_markdown_cell("Write the largest stable learning rate of GD on 1/2 w^T H w."),
        nbformat.v4.new_code_cell(
            "def max_stable_lr(H):\n    # BEGIN SOLUTION\n    return 2.0 / np.linalg.eigvalsh(H).max()\n"
            "    # END SOLUTION", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell('assert check("fractal.max_stable_lr", max_stable_lr)'),
        nbformat.v4.new_markdown_cell("How many outliers at initialisation with 7 outputs?"),
        nbformat.v4.new_code_cell("# BEGIN SOLUTION\nmy_prediction = 6\n# END SOLUTION",
                                  metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell('assert check("hessian.outliers_7_classes", my_prediction)\n'
                                  "# BEGIN HIDDEN TESTS\nassert isinstance(my_prediction, int)\n# END HIDDEN TESTS"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=300)


def _submit(course: Path, student: str, answers: dict[str, str]) -> None:
    """Copy the released notebook into submitted/<student>/, replacing the cells whose grade_id is given."""
    nb = json.loads((course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(nb))


@pytest.mark.slow
def test_nbgrader_generate_autograde_feedback_validate(tmp_path):
    src = tmp_path / "masters"
    src.mkdir()
    nbformat.write(_master(), src / f"{ASSIGNMENT}.ipynb")
    course = tmp_path / "course"
    build_course(src, course, points={"fractal.max_stable_lr": 2})
    assert (course / "nbgrader_config.py").read_text() == CONFIG

    done = _nbgrader(course, "generate_assignment", ASSIGNMENT)
    assert done.returncode == 0, done.stderr
    release = (course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    for leak in ("eigvalsh(H).max()", "my_prediction = 6", "isinstance(my_prediction"):
        assert leak not in release, leak

    fn, number = "fractal-max_stable_lr-answer", "hessian-outliers_7_classes-answer"
    _submit(course, "right", {fn: RIGHT, number: "my_prediction = 6"})
    _submit(course, "half", {fn: HALF, number: "my_prediction = 6"})
    _submit(course, "lambdamin", {fn: LAMBDA_MIN, number: "my_prediction = 6.0"})
    _submit(course, "unsolved", {})
    done = _nbgrader(course, "autograde", ASSIGNMENT, "--create")
    assert done.returncode == 0, done.stderr

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        def score(student: str, grade_id: str) -> float:
            return gb.find_grade(grade_id, ASSIGNMENT, ASSIGNMENT, student).score

        assert gb.find_submission(ASSIGNMENT, "right").max_score == 3
        assert (score("right", "fractal-max_stable_lr"), score("right", "hessian-outliers_7_classes")) == (2, 1)
        assert (score("half", "fractal-max_stable_lr"), score("half", "hessian-outliers_7_classes")) == (0, 1)
        # 6.0 passes the visible check (a whole number) but not the teacher's hidden test (an int)
        assert (score("lambdamin", "fractal-max_stable_lr"), score("lambdamin", "hessian-outliers_7_classes")) == (0, 0)
        assert gb.find_submission(ASSIGNMENT, "unsolved").score == 0

    done = _nbgrader(course, "generate_feedback", ASSIGNMENT)
    assert done.returncode == 0, done.stderr

    def feedback(student: str) -> str:
        return (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()

    half = feedback("half")
    assert "off by a factor of 0.5" in half
    assert "Hint: Gradient descent on L(w) = 1/2 w^T H w multiplies each eigen-component" in half
    assert "that is 2 / lambda_min" in feedback("lambdamin")
    assert "not implemented yet" in feedback("unsolved")
    assert "Out[" not in feedback("right").replace("Out[ ]", "")  # no "Out[n]: True/False" under a verdict

    done = _nbgrader(course, "validate", str(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    assert "Success!" not in done.stdout and "VALIDATION FAILED" in done.stdout, done.stdout
    done = _nbgrader(course, "validate", str(course / "submitted" / "right" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    assert "Success!" in done.stdout, done.stdout


def test_course_cells_carry_nbgrader_metadata_and_graded_checks():
    nb = nbgrader_notebook(_master(), "hw1.ipynb", points={"fractal.max_stable_lr": 2},
                           hidden={"hessian.outliers_7_classes"})
    meta = [c["metadata"].get("nbgrader") for c in nb["cells"]]
    assert meta[3] == {"grade": False, "grade_id": "fractal-max_stable_lr-answer", "locked": False,
                       "schema_version": 3, "solution": True, "task": False}
    assert meta[4]["grade"] and meta[4]["locked"] and meta[4]["points"] == 2
    assert "".join(nb["cells"][4]["source"]) == "check('fractal.max_stable_lr', max_stable_lr, graded=True);"
    assert "".join(nb["cells"][6]["source"]).startswith("# your answer: replace the two lines below by my_prediction")
    hidden = "".join(nb["cells"][7]["source"])
    assert hidden.count("# BEGIN HIDDEN TESTS") == 1 and "graded=True" in hidden.split("# BEGIN HIDDEN TESTS")[1]
    assert [m is None for m in meta] == [True, True, True, False, False, True, False, False]


def test_student_build_drops_hidden_tests_and_refuses_them_in_solution_cells(tmp_path):
    from labkit.exercises.build import student_notebook

    student, _ = student_notebook(_master(), "hw1.ipynb")
    assert "isinstance" not in json.dumps(student) and "HIDDEN" not in json.dumps(student)
    nb = _master()
    nb.cells[3].source += "\n# BEGIN HIDDEN TESTS\n# END HIDDEN TESTS"
    with pytest.raises(BuildError, match="hidden tests belong in a check cell"):
        student_notebook(nb, "hw1.ipynb")
    nb = _master()
    nb.cells[7].source = nb.cells[7].source.replace("# END HIDDEN TESTS", "")
    with pytest.raises(BuildError, match="has no matching '# END HIDDEN TESTS'"):
        student_notebook(nb, "hw1.ipynb")


def test_cli_nbgrader_format_and_its_errors(tmp_path, capsys):
    from labkit.cli import main

    src = tmp_path / "masters"
    src.mkdir()
    nbformat.write(_master(), src / "hw1.ipynb")
    shutil.copy(ROOT / "tests" / "fixtures" / "assignments" / "plain.ipynb", src / "plain.ipynb")
    assert main(["assignments", "build", "--src", str(src), "--out", str(tmp_path / "c"), "--format", "nbgrader",
                 "--points", "fractal.max_stable_lr=2"]) == 0
    assert sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*.*")) == [
        "nbgrader_config.py", "source/hw1/hw1.ipynb"]  # a notebook without exercises has nothing to grade
    assert "nbgrader generate_assignment hw1" in capsys.readouterr().out
    assert main(["assignments", "build", "--src", str(src), "--out", str(tmp_path / "c"), "--format", "nbgrader",
                 "--points", "fractal.max_stable_lr=2", "--check"]) == 0
    assert main(["assignments", "build", "--src", str(src), "--out", str(tmp_path / "c"), "--format", "nbgrader",
                 "--check"]) == 1  # different points: out of date
    capsys.readouterr()
    assert main(["assignments", "build", "--src", str(src), "--out", str(tmp_path / "d"), "--format", "nbgrader",
                 "--points", "nope.x=1"]) == 1
    assert "name exercises not in these notebooks: ['nope.x']" in capsys.readouterr().err
    assert main(["assignments", "build", "--src", str(src), "--out", str(tmp_path / "d"), "--points", "a=b"]) == 1
    assert "--points and --hidden apply to --format nbgrader only" in capsys.readouterr().err
