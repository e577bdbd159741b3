import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_doctor_reports_versions(capsys, monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    for word in ("python", "torch", "device", "plotly", "ipywidgets", "anywidget", "jupyterlab", "live widgets"):
        assert word in out
    rates = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines() if line.startswith("matmul "))
    assert set(rates) == {"matmul float32", "matmul float64"}  # measured on this CPU
    for rate in rates.values():
        assert rate.endswith("GFLOP/s") and float(rate.split()[-2].replace(",", "")) > 0
    assert code in (0, 1)
    assert ("NOT ready" in out) == (code == 1)


def test_doctor_says_when_the_device_cannot_be_used(capsys, monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "cuda:7" if not torch.cuda.is_available() else "cuda:999")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "device: NOT usable" in out and "unset LABKIT_DEVICE" in out and "matmul" not in out


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
    assert "pip install 'labkit-dynamics[lab]'" in capsys.readouterr().err


# ---------------------------------------------------------------- labkit notebooks: never overwrite edits


def test_notebooks_second_run_keeps_edited_files_and_force_replaces_them(tmp_path, capsys):
    dest = tmp_path / "nb"
    assert cli.main(["notebooks", str(dest)]) == 0
    capsys.readouterr()
    tour = dest / "00_tour.ipynb"
    tour.write_text("my edits")
    (dest / "01_hessian_spectrum.ipynb").unlink()
    assert cli.main(["notebooks", str(dest)]) == 0
    out = capsys.readouterr().out
    assert tour.read_text() == "my edits"  # kept
    assert "copied 1 file(s)" in out and "kept 1 file(s)" in out and "00_tour.ipynb" in out and "--force" in out
    assert (dest / "01_hessian_spectrum.ipynb").read_bytes() == (cli.notebooks_dir() / "01_hessian_spectrum.ipynb"
                                                                  ).read_bytes()
    assert cli.main(["notebooks", str(dest), "--force"]) == 0
    out = capsys.readouterr().out
    assert "replacing 1 file(s)" in out and "00_tour.ipynb" in out
    assert tour.read_bytes() == (cli.notebooks_dir() / "00_tour.ipynb").read_bytes()
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]


def test_write_problems_are_one_line_not_a_traceback(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["notebooks", str(tmp_path / "file" / "nb")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labkit notebooks: error:") and "Traceback" not in err


# ---------------------------------------------------------------- labkit lab


@pytest.fixture
def fake_jupyter(monkeypatch):
    monkeypatch.setattr(cli.shutil, "which", lambda name: "/usr/bin/jupyter")


def test_lab_as_root_adds_allow_root_and_says_why(fake_jupyter, capsys):
    cmd, _root = cli.lab_command(None, None, [], is_root=True)
    assert cmd.count("--allow-root") == 1 and "added --allow-root" in capsys.readouterr().out
    assert "--allow-root" not in cli.lab_command(None, None, [], is_root=False)[0]
    cmd, _ = cli.lab_command(None, None, ["--allow-root"], is_root=True)
    assert cmd.count("--allow-root") == 1


def test_lab_passes_arguments_through_and_opens_on_the_tour(fake_jupyter, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(cli.os, "execv", lambda exe, cmd: seen.update(exe=exe, cmd=cmd))
    assert cli.main(["lab", "--port", "9999", "--", "--no-browser", "--ip", "0.0.0.0"]) == 0
    cmd = seen["cmd"]
    assert cmd[:2] == ["/usr/bin/jupyter", "lab"] and cmd[-3:] == ["--no-browser", "--ip", "0.0.0.0"]
    assert "--port=9999" in cmd and f"--LabApp.default_url=/lab/tree/{cli.TOUR}" in cmd
    assert f"--notebook-dir={(tmp_path / cli.WORKING_COPY).resolve()}" in cmd


def test_lab_from_a_checkout_serves_a_working_copy_and_says_where(fake_jupyter, monkeypatch, tmp_path, capsys):
    """JupyterLab's autosave writes outputs into the notebooks it serves: never the tracked ones."""
    monkeypatch.chdir(tmp_path)
    assert cli._checkout_notebooks() is not None  # the tests run from a checkout
    cmd, root = cli.lab_command(None, None, [], is_root=False)
    out = capsys.readouterr().out
    assert f"working copy of the repository's notebooks/ (they stay clean) in {(tmp_path / root).resolve()}" in out
    assert f"--notebook-dir={(tmp_path / root).resolve()}" in cmd
    assert (tmp_path / root / cli.TOUR).read_bytes() == (cli.notebooks_dir() / cli.TOUR).read_bytes()


def test_lab_turns_off_the_news_pop_up_through_overrides(fake_jupyter, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cmd, _root = cli.lab_command(None, None, [], is_root=False)
    folder = next(a for a in cmd if a.startswith("--LabApp.app_settings_dir=")).split("=", 1)[1]
    overrides = json.loads((Path(folder) / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}


def test_lab_outside_a_checkout_serves_a_copy_of_the_bundled_notebooks(fake_jupyter, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "_checkout_notebooks", lambda: None)
    monkeypatch.chdir(tmp_path)
    cmd, root = cli.lab_command(None, None, [], is_root=False)
    assert root == "labkit-notebooks" and (tmp_path / root / cli.TOUR).is_file()
    assert f"--notebook-dir={(tmp_path / root).resolve()}" in cmd
    (tmp_path / root / cli.TOUR).write_text("edited")
    cli.lab_command(None, None, [], is_root=False)
    assert (tmp_path / root / cli.TOUR).read_text() == "edited"  # a second start keeps the student's edits


@pytest.mark.skipif(sys.platform == "win32", reason="exec and SIGTERM are POSIX")
def test_sigterm_leaves_no_jupyter_running(tmp_path):
    """`labkit lab` replaces itself by JupyterLab, so stopping it stops JupyterLab (it used to be orphaned)."""
    import os
    import signal
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "jupyter"
    script.write_text(f'#!/bin/sh\necho $$ "$@" > {tmp_path / "started"}\nexec sleep 120\n')
    script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "lab", "--dir", str(tmp_path), "--", "--no-browser"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        pid, *args = (tmp_path / "started").read_text().split()
        assert "--no-browser" in args
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        deadline = time.monotonic() + 10
        alive = True
        while alive and time.monotonic() < deadline:
            try:
                os.kill(int(pid), 0)
                time.sleep(0.05)
            except ProcessLookupError:
                alive = False
        assert not alive, "jupyter outlived labkit lab"
    finally:
        if proc.poll() is None:
            proc.kill()
