import subprocess
import sys

import pytest

import labkit
from labkit import cli


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"labkit {labkit.__version__}"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "labkit.cli", "--version"], capture_output=True, text=True, check=True)
    assert labkit.__version__ in out.stdout


def test_doctor_reports_versions(capsys):
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    for word in ("python", "torch", "device", "plotly", "ipywidgets", "anywidget", "jupyterlab", "live widgets"):
        assert word in out
    assert code in (0, 1)
    assert ("NOT ready" in out) == (code == 1)


def test_notebooks_copies_bundled_notebooks(tmp_path):
    assert cli.main(["notebooks", str(tmp_path / "nb")]) == 0
    copied = sorted(p.name for p in (tmp_path / "nb").glob("*.ipynb"))
    bundled = sorted(p.name for p in cli.notebooks_dir().glob("*.ipynb"))
    assert copied == bundled and copied


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "doctor" in capsys.readouterr().out


def test_lab_without_jupyter_explains(monkeypatch, capsys):
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    assert cli.main(["lab"]) == 1
    assert "pip install 'labkit[lab]'" in capsys.readouterr().err
