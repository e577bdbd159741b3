"""The ``labkit`` command: ``--version``, ``doctor``, ``lab``, ``notebooks`` and instrument subcommands.

Instrument packages add subcommands by exposing a module with
``add_arguments(parser)`` and ``run(args) -> int`` (listed in ``_PLUGINS``);
their heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import labkit

_PLUGINS = {
    "fractal": ("labkit.fractal.cli", "render a trainability-boundary scan headless (npz + PNG)"),
    "assignments": ("labkit.exercises.cli", "build student versions of the exercise notebooks"),
}


def notebooks_dir() -> Path:
    """The bundled notebooks (inside an installed wheel, or the repository's ``notebooks/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_bundled" / "notebooks", here.parent / "notebooks"):
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return candidate
    raise FileNotFoundError("labkit's notebooks were not found; reinstall labkit or use a checkout of the repository")


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def doctor() -> int:
    """Print versions and whether live widgets will work here; exit 1 if something essential is missing."""
    import torch

    rows = [
        ("labkit", labkit.__version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
        ("device", str(labkit.device())),
        ("cuda", torch.version.cuda or "none (CPU build)" if not torch.cuda.is_available() else torch.version.cuda),
        ("torch threads", str(torch.get_num_threads())),
    ]
    for dist in ("numpy", "plotly", "ipywidgets", "anywidget", "jupyterlab", "ipykernel", "tqdm"):
        rows.append((dist, _version(dist)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    problems = []
    if _version("ipywidgets") == "not installed" or not _version("ipywidgets").startswith("8"):
        problems.append("ipywidgets 8 is needed for live controls: pip install 'ipywidgets>=8'")
    if _version("anywidget") == "not installed":
        problems.append("anywidget is needed for plotly FigureWidget (fractal explorer): pip install anywidget")
    kernel = _version("ipykernel")
    if kernel != "not installed":
        major, minor = (int(p) for p in kernel.split(".")[:2])
        if (major, minor) < (7, 1) and major >= 7:
            problems.append(f"ipykernel {kernel} drops output from threads; pip install 'ipykernel>=7.1'")
    if _version("jupyterlab") == "not installed":
        problems.append("JupyterLab is not installed: pip install 'labkit[lab]'")
    print()
    if problems:
        print("live widgets: NOT ready")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("live widgets: ready (JupyterLab + ipywidgets 8 + anywidget)")
    return 0


def lab(port: int | None, directory: str | None) -> int:
    """Start JupyterLab on the notebooks."""
    exe = shutil.which("jupyter")
    if exe is None:
        print("JupyterLab is not installed; run: pip install 'labkit[lab]'", file=sys.stderr)
        return 1
    root = Path(directory) if directory else notebooks_dir()
    cmd = [exe, "lab", f"--notebook-dir={root}"]
    if port:
        cmd.append(f"--port={port}")
    print("starting:", " ".join(cmd))
    return subprocess.call(cmd)


def copy_notebooks(dest: str) -> int:
    """Copy the bundled notebooks (and their README) into ``dest``."""
    src = notebooks_dir()
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix in (".ipynb", ".md"):
            shutil.copy2(f, target / f.name)
            copied += 1
    print(f"copied {copied} files to {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="labkit: a lab bench for training dynamics")
    parser.add_argument("--version", action="version", version=f"labkit {labkit.__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("doctor", help="check the environment (versions, device, live widgets)")
    p = sub.add_parser("lab", help="start JupyterLab on the labkit notebooks")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--dir", default=None, help="folder to open (default: the bundled notebooks)")
    p = sub.add_parser("notebooks", help="copy the bundled notebooks to DEST")
    p.add_argument("dest")
    for name, (module, help_text) in _PLUGINS.items():
        try:
            plugin = importlib.import_module(module)
        except ImportError:
            continue
        p = sub.add_parser(name, help=help_text)
        plugin.add_arguments(p)
        p.set_defaults(_plugin=plugin)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``labkit`` console script."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_plugin", None) is not None:
        return int(args._plugin.run(args) or 0)
    if args.command == "doctor":
        return doctor()
    if args.command == "lab":
        return lab(args.port, args.dir)
    if args.command == "notebooks":
        return copy_notebooks(args.dest)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
