"""benchmarks/bench_notebooks.py: its arguments are checked, and a notebook runs in a fresh kernel in fast mode
without writing the tracked file."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_notebooks.py"


def _load():
    sys.path.insert(0, str(SCRIPT.parent))  # it imports bench_shared's co-tenants
    spec = importlib.util.spec_from_file_location("labkit_bench_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [["--only", "99"], ["--rounds", "0"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as err:
        _load().main(argv)
    assert err.value.code == 2
    assert argv[0] in capsys.readouterr().err


@pytest.mark.slow
def test_one_notebook_runs_and_the_file_is_untouched(tmp_path):
    bench = _load()
    book = ROOT / "notebooks" / "00_tour.ipynb"
    before = book.read_bytes()
    seconds, error = bench.run_notebook(book, timeout=300)
    assert error == "" and 0 < seconds < 300
    assert book.read_bytes() == before
