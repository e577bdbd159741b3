"""docs/architecture.md's walk-throughs run as written (each ends in its dense-reference test)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_walkthroughs_are_short():
    assert len(BLOCKS) == 2
    assert all(len(b.strip().splitlines()) < 40 for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_walkthrough_runs(index):
    exec(compile(BLOCKS[index], f"{DOC}#block{index}", "exec"), {"__name__": "walkthrough"})
