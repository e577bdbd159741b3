"""The README's API tour runs as written (sizes shrunk), so it cannot drift from the code."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_tour_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    code = "\n".join(blocks).replace("steps=300", "steps=20").replace("resolution=64", "resolution=16")
    exec(compile(code, str(README), "exec"), {})


def test_readme_quick_start_is_two_commands():
    text = README.read_text()
    assert 'pip install -e ".[lab]" && labkit lab' in text
    assert 'pip install -e ".[dev]" && pytest' in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]" && pytest' in ci  # CI runs the README's test command verbatim
