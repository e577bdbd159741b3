"""labkit.population.spread: a claim's check over seeds, its control's, the one-line summary, and the pytest hook
(root conftest.py) that lists every recorded spread in the terminal summary."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labkit.population.spread import Spread, spread

ROOT = Path(__file__).resolve().parent.parent


def near_half(b):
    return abs(b + 0.5) < 0.15


def test_counts_the_claims_check_and_the_same_check_on_the_control():
    s = spread("BN ~ B^-1/2", [-0.40, -0.46, -0.28, -0.36, -0.51], near_half, control=[-0.1, 0.0, 0.1, -0.45, 0.05],
               what="slope")
    assert s.holds == (True, True, False, True, True) and s.n_hold == 4
    assert s.control_holds == (False, False, False, True, False) and s.n_control_fails == 4
    assert s.summary() == ("BN ~ B^-1/2: 4/5 seeds hold (slope -0.51..-0.28; fails on seed 2); control fails 4/5 "
                           "(slope -0.45..0.1; passes on seed 3)")
    assert str(s) == s.summary()


def test_measurements_can_be_records_and_seeds_are_named():
    runs = [{"spike": True, "ratio": 1.06}, {"spike": True, "ratio": 1.2}, {"spike": False, "ratio": float("nan")}]
    s = spread("catapult at the edge", runs, lambda r: r["spike"] and abs(r["ratio"] - 1) <= 0.1,
               number=lambda r: r["ratio"], seeds=[3, 4, 7], what="ratio")
    assert s.seeds == (3, 4, 7) and s.holds == (True, False, False) and s.control_holds == ()
    assert s.summary() == "catapult at the edge: 1/3 seeds hold (ratio 1.06..1.2, 1 not finite; fails on seeds 4, 7)"
    allnan = spread("x", [float("nan")], lambda v: v > 0)
    assert allnan.summary() == "x: 0/1 seeds hold (undefined; fails on seed 0)"


def test_every_seed_holds_and_every_control_fails():
    s = spread("flat", [0.1, 0.2], lambda v: v < 0.25, control=[0.6, 0.7])
    assert s == Spread("flat", (0, 1), (0.1, 0.2), (True, True), (0.6, 0.7), (False, False))
    assert s.summary() == "flat: 2/2 seeds hold (0.1..0.2); control fails 2/2 (0.6..0.7)"


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(claim="", measured=[1.0]), TypeError, "claim"),
    (dict(claim="c", measured=[]), ValueError, "measured is empty"),
    (dict(claim="c", measured=[1.0, 2.0], seeds=[0]), ValueError, "one entry per seed"),
    (dict(claim="c", measured=[1.0, 2.0], control=[1.0]), ValueError, "one entry per seed"),
    (dict(claim="c", measured=[1.0], seeds=[-1]), ValueError, "seeds must be >= 0"),
    (dict(claim="c", measured=[1.0], check=None), TypeError, "check"),
])
def test_bad_input_names_the_argument(kwargs, error, words):
    kwargs = {"check": lambda v: v > 0, **kwargs}
    with pytest.raises(error, match=words):
        spread(kwargs.pop("claim"), kwargs.pop("measured"), kwargs.pop("check"), **kwargs)


def test_the_terminal_summary_lists_recorded_spreads_and_writes_no_file(tmp_path):
    """The root conftest's ``record_spread`` fixture and ``pytest_terminal_summary``, run on a planted test file.
    Control: a test that records nothing adds no section."""
    (tmp_path / "test_planted.py").write_text(textwrap.dedent("""
        from labkit.population.spread import spread

        def test_with(record_spread):
            record_spread(spread("planted claim", [1.0, 2.0], lambda v: v > 1.5))

        def test_without():
            pass
    """))
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": path}

    def run(*select):
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "conftest",
               "-c", os.devnull, "--rootdir", str(tmp_path), *select]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)

    out = run("test_planted.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "seed spread" in out.stdout
    assert "test_planted.py::test_with: planted claim: 1/2 seeds hold (1..2; fails on seed 0)" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_planted.py"]  # nothing written
    quiet = run("test_planted.py::test_without")
    assert quiet.returncode == 0 and "seed spread" not in quiet.stdout
