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
    """Print versions, the device with its memory and measured matmul rates, and whether live widgets will work
    here; exit 1 if something essential is missing."""
    import torch

    from labkit import machine, threads

    try:
        dev = labkit.device()
        info = machine.describe(dev)
    except (RuntimeError, AssertionError, ValueError) as e:  # LABKIT_DEVICE names a device this torch cannot use
        dev, reason = None, str(e).splitlines()[0][:80]
        info = {"device": os.environ.get("LABKIT_DEVICE", "?"), "name": f"NOT usable: {reason}", "memory": "-",
                "threads": str(torch.get_num_threads())}
    rows = [
        ("labkit", labkit.__version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
        ("device", f"{info['device']} ({info['name']}, {info['memory']})"),
        ("cuda", torch.version.cuda or "none (CPU build)" if not torch.cuda.is_available() else torch.version.cuda),
    ]
    rows += threads.describe()  # cores seen, affinity, quota, the thread count labkit chose and why
    # the dense-matmul rates labkit's benchmarks quote their figures against, measured now on this device
    dtypes = [] if dev is None else [torch.float32, torch.float64] + ([torch.bfloat16] if dev.type == "cuda" else [])
    for dt in dtypes:
        try:
            rate = f"{machine.matmul_rate(dt, dev) / 1e9:,.0f} GFLOP/s"
        except (RuntimeError, TypeError) as e:  # a dtype the device does not do (float64 on mps)
            rate = f"not available ({str(e).splitlines()[0][:60]})"
        rows.append((f"matmul {str(dt).removeprefix('torch.')}", rate))
    if dev is not None and dev.type == "cuda":  # TF32 trades float32 accuracy for speed: say how it is set
        rows.append(("tf32 matmul/cudnn", f"{torch.backends.cuda.matmul.allow_tf32}/{torch.backends.cudnn.allow_tf32}"))
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
        problems.append("JupyterLab is not installed: pip install 'labkit-dynamics[lab]'")
    print()
    if dev is None:
        print(f"device: NOT usable ({reason}): unset LABKIT_DEVICE or name a device this torch build has")
    if problems:
        print("live widgets: NOT ready")
        for p in problems:
            print(f"  - {p}")
    else:
        print("live widgets: ready (JupyterLab + ipywidgets 8 + anywidget)")
    return 1 if problems or dev is None else 0


TOUR = "00_tour.ipynb"


def _checkout_notebooks() -> Path | None:
    """The repository's ``notebooks/`` when labkit runs from a checkout, else None."""
    root = Path(__file__).resolve().parent.parent
    nb = root / "notebooks"
    return nb if (root / "pyproject.toml").is_file() and any(nb.glob("*.ipynb")) else None


WORKING_COPY = "labkit-notebooks"

# JupyterLab settings for labkit's sessions: no "receive news?" pop-up and no update check (the pop-up covers
# the figures' legends on a first visit; a classroom needs neither)
LAB_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def lab_settings(root: Path) -> Path:
    """A JupyterLab application-settings folder holding ``overrides.json`` with :data:`LAB_OVERRIDES` (merged into
    the installation's own overrides, if it has any); written under ``root/.labkit-lab``; returns the folder."""
    import json

    from labkit import _io

    overrides: dict = {}
    try:
        from jupyterlab.commands import get_app_dir

        installed = Path(get_app_dir()) / "settings" / "overrides.json"
        if installed.is_file():
            overrides = json.loads(installed.read_text(encoding="utf-8"))
    except (ImportError, OSError, ValueError):
        pass
    for plugin, values in LAB_OVERRIDES.items():
        overrides[plugin] = {**overrides.get(plugin, {}), **values}
    folder = _io.ensure_folder(Path(root) / ".labkit-lab")
    _io.write_text(folder / "overrides.json", json.dumps(overrides, indent=1, sort_keys=True) + "\n")
    return folder.resolve()


def lab_command(port: int | None, directory: str | None, extra: list[str], *, is_root: bool) -> tuple[list[str], str]:
    """The ``jupyter lab`` command line and the folder it serves (created from the bundled notebooks if needed)."""
    exe = shutil.which("jupyter")
    if exe is None:
        raise FileNotFoundError("JupyterLab is not installed; run: pip install 'labkit-dynamics[lab]'")
    if directory is not None:
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"--dir {directory!r} is not a folder")
    else:  # a working copy, so edits and outputs never go into site-packages or a clone's tracked notebooks
        root = Path(WORKING_COPY)
        origin = "the repository's notebooks/ (they stay clean)" if _checkout_notebooks() else "the bundled notebooks"
        print(f"serving a working copy of {origin} in {root.resolve()}/ (your edits there are kept; "
              "--dir notebooks serves the originals):")
        copy_notebooks(str(root))
    cmd = [exe, "lab", f"--notebook-dir={root.resolve()}", f"--LabApp.app_settings_dir={lab_settings(root)}"]
    if port:
        cmd.append(f"--port={port}")
    if (root / TOUR).is_file() and not any(a.startswith(("--LabApp.default_url", "--ServerApp.default_url"))
                                           for a in extra):
        cmd.append(f"--LabApp.default_url=/lab/tree/{TOUR}")  # open on the tour, as Binder does
    if is_root and "--allow-root" not in extra:
        cmd.append("--allow-root")
        print("running as root (usual in containers): added --allow-root, since JupyterLab refuses root without it")
    return cmd + list(extra), str(root)


def lab(port: int | None, directory: str | None, extra: list[str] | None = None) -> int:
    """Start JupyterLab on the notebooks, replacing this process (so signals reach JupyterLab directly)."""
    extra = list(extra or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    try:
        cmd, _root = lab_command(port, directory, extra, is_root=is_root)
    except FileNotFoundError as err:
        print(f"labkit lab: {err}", file=sys.stderr)
        return 1
    print("starting:", " ".join(cmd), flush=True)
    sys.stderr.flush()
    if os.name != "posix":  # pragma: no cover (Windows has no exec; Ctrl-C reaches the child's console)
        return subprocess.call(cmd)
    os.execv(cmd[0], cmd)  # exec: SIGTERM/SIGINT go to JupyterLab itself, nothing is left orphaned
    return 0  # reached only when execv is replaced (tests)


def copy_notebooks(dest: str, force: bool = False) -> int:
    """Copy the bundled notebooks (and their README) into ``dest``; never overwrite without ``force``.

    Files already in ``dest`` are kept (a student may have edited them) and listed; with ``force`` they are
    replaced, after listing which. Each copy is atomic.
    """
    from labkit import _io

    src = notebooks_dir()
    target = _io.ensure_folder(dest)
    files = [f for f in sorted(src.iterdir()) if f.is_file() and f.suffix in (".ipynb", ".md")]
    existing = [f for f in files if (target / f.name).exists()]
    same = [f for f in existing if (target / f.name).read_bytes() == f.read_bytes()]
    changed = [f for f in existing if f not in same]
    if changed and force:
        print(f"--force: replacing {len(changed)} file(s) that differ from the bundled version: "
              + ", ".join(f.name for f in changed))
    copied = 0
    for f in files:
        if f in same or (f in changed and not force):
            continue
        _io.copy_file(f, target / f.name)
        copied += 1
    print(f"copied {copied} file(s) to {target}")
    if same:
        print(f"{len(same)} file(s) already up to date")
    if changed and not force:
        print(f"kept {len(changed)} file(s) that differ from the bundled version (your edits?): "
              + ", ".join(f.name for f in changed) + "; use --force to replace them")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="labkit: a lab bench for training dynamics")
    parser.add_argument("--version", action="version", version=f"labkit {labkit.__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("doctor", help="check the environment (versions, device and its matmul rates, live widgets)")
    p = sub.add_parser("lab", help="start JupyterLab on the labkit notebooks (opens the tour)",
                       description="Start JupyterLab on the labkit notebooks, open on the tour. As root it adds "
                       "--allow-root. Arguments after -- go to jupyter lab: labkit lab -- --no-browser --ip 0.0.0.0")
    p.add_argument("--port", type=int, default=None, help="port for JupyterLab (default: its own, 8888 or next free)")
    p.add_argument("--dir", default=None, help="folder to open (default: a working copy of the notebooks in "
                   "./labkit-notebooks, made on first use and kept)")
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="after --: arguments for jupyter lab")
    p = sub.add_parser("notebooks", help="copy the bundled notebooks to DEST (keeps files already there)")
    p.add_argument("dest")
    p.add_argument("--force", action="store_true", help="replace files that differ from the bundled version")
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
    try:
        if getattr(args, "_plugin", None) is not None:
            return int(args._plugin.run(args) or 0)
        if args.command == "doctor":
            return doctor()
        if args.command == "lab":
            return lab(args.port, args.dir, args.jupyter_args)
        if args.command == "notebooks":
            return copy_notebooks(args.dest, args.force)
    except OSError as err:  # a missing folder, a permission problem: one line, no traceback
        print(f"labkit {args.command}: error: {err}", file=sys.stderr)
        return 1
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
