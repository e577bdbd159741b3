"""Drive a real JupyterLab page in headless Chromium and report what a reader would see.

Used by the browser tests (``tests/browser``). Three pieces:

- :class:`LabServer`: ``jupyter lab`` on 127.0.0.1, a free port, token disabled, in a temporary
  directory of notebook copies, ``LABKIT_FAST=1``; :meth:`LabServer.stop` shuts down every kernel and
  then the server by process id (SIGTERM, then SIGKILL), including any kernel that outlived the server.
- :func:`check_notebook`: open a notebook, Run All, wait for the kernel to go idle, then inspect the
  DOM: error outputs, widget views that never rendered ("Error displaying widget" / "Loading
  widget..."), plotly figures without drawn data; then the *live check*: press the notebook's Run
  button (or move its first slider with the keyboard) and sample the main figure's data every 50 ms
  in the page, requiring several distinct states while the run is in progress and a changed final one.
- :class:`Report`: every problem as one readable line, timings, the screenshot path.

Convention for "the main live control / figure" (no notebook needs editing for it): the first button
whose label starts with Run / Train / Start / Scan (labkit.widgets' Run button), else the first slider;
the figure is the first plotly figure after that control in the same cell, else the next one in the
notebook. A cell tagged ``browser-live`` restricts the search to that cell.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")  # Debian's chromium; override for other systems
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
LIVE_TAG = "browser-live"
WARN_TAG = "expected-warning"  # a cell whose stderr / warning output is part of the lesson

# Bounded waits (seconds). Generous for a shared 2-core machine, never unbounded.
SERVER_START_TIMEOUT = 90
PAGE_LOAD_TIMEOUT = 90
RUN_ALL_TIMEOUT = 240  # a notebook must finish in < 60 s in fast mode; 4x slack for a loaded machine
WIDGET_RENDER_TIMEOUT = 30
LIVE_START_TIMEOUT = 30  # the figure must start changing this soon after the click / key press
LIVE_TIMEOUT = 90
LIVE_SETTLE = 4.0  # a run counts as finished when the figure has not changed for this long


def missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found (apt-get install chromium)"
    for module in ("playwright", "jupyterlab"):
        if importlib.util.find_spec(module) is None:
            return f"python package {module!r} not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (walks /proc; no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _kill(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM ``pids``, wait up to ``timeout``, SIGKILL the survivors."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


class LabServer:
    """A JupyterLab server on a free local port serving ``root`` (notebook copies live there)."""

    def __init__(self, root: Path, log_path: Path):
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.kernel_pids: set[int] = set()

    def start(self) -> LabServer:
        home = self.root.parent / "jupyter-home"
        settings = home / "settings"
        note = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = dict(
            os.environ,
            LABKIT_FAST="1",
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_DATA_DIR=str(home / "data"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            IPYTHONDIR=str(home / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1",
        )
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
            f"--port={self.port}", "--port-retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
            f"--ServerApp.root_dir={self.root}", "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
        ]  # fmt: skip
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}; log: {self.log_path}\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                self.api("GET", "/api/status")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT} s; log: "
                                       f"{self.log_path}") from None
                time.sleep(0.3)

    def api(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def remember_kernels(self) -> None:
        """Record the pids of the server's current children, so stop() can kill orphans by pid."""
        if self.proc is not None:
            self.kernel_pids.update(_children(self.proc.pid))

    def shutdown_kernels(self) -> None:
        """Ask the server to shut every kernel down (frees ~0.5 GB each between notebooks)."""
        self.remember_kernels()
        with contextlib.suppress(Exception):
            for kernel in self.api("GET", "/api/kernels"):
                with contextlib.suppress(Exception):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)

    def stop(self) -> None:
        """Stop kernels and server by process id; safe to call twice, never raises."""
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.shutdown_kernels()
        pids = sorted(set(_children(self.proc.pid)) | self.kernel_pids)
        _kill([self.proc.pid])
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        _kill([p for p in pids if _alive(p)])
        self.proc = None
        with contextlib.suppress(Exception):
            self._log.close()


def prepare_copy(src: Path, dest_dir: Path) -> Path:
    """Copy a notebook into the served folder; add a python3 kernelspec when it has none (else JupyterLab
    stops at a "Select Kernel" dialog). Returns the copy's path."""
    nb = nbformat.read(src, as_version=4)
    dest = dest_dir / src.name
    if "kernelspec" not in nb.metadata:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nbformat.write(nb, dest)
    else:
        shutil.copyfile(src, dest)
    return dest


@dataclass
class Report:
    """What the browser saw for one notebook. ``problems`` empty means the notebook passed."""

    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    figures: list[dict] = field(default_factory=list)
    widgets: dict = field(default_factory=dict)
    live: dict = field(default_factory=dict)
    run_all_live: list[dict] = field(default_factory=list)
    screenshot: Path | None = None
    console_errors: list[str] = field(default_factory=list)
    gallery: list[dict] = field(default_factory=list)  # one entry per figure: cell, title, png, problems
    figure_checks: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.name}: {'PASS' if not self.problems else 'FAIL'}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        if self.screenshot:
            lines.append(f"  screenshot: {self.screenshot}")
        lines += [f"  browser console error: {e}" for e in self.console_errors[:5]]
        return "\n".join(lines)


JS_DIR = Path(__file__).with_name("inspect.js")


def _js(name: str) -> str:
    """One function from inspect.js, as an expression Playwright can evaluate."""
    source = JS_DIR.read_text()
    return f"(arg) => {{ {source}\n return {name}(arg); }}"


def check_notebook(page, server: LabServer, path: Path, artifacts: Path, live: bool = True,
                   reload: bool = True) -> Report:
    """Open ``path`` (a copy inside ``server.root``) in ``page``, run it all, inspect it, then (``reload``)
    reload the page with the kernel alive and inspect it again; never raises for notebook faults (they become
    ``Report.problems``), only for a broken harness."""
    report = Report(path.name)
    page.on("console", lambda m: m.type == "error" and report.console_errors.append(m.text[:300]))
    page.on("pageerror", lambda e: report.console_errors.append(f"uncaught: {str(e)[:300]}"))
    t0 = time.monotonic()
    rel = path.relative_to(server.root).as_posix()
    page.goto(f"{server.url}/lab/tree/{rel}?reset", timeout=PAGE_LOAD_TIMEOUT * 1000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=PAGE_LOAD_TIMEOUT * 1000)
    page.wait_for_function(_js("kernelReady"), timeout=PAGE_LOAD_TIMEOUT * 1000, polling=250)
    report.timings["open"] = time.monotonic() - t0
    with contextlib.suppress(Exception):  # collapse the file browser: the notebook gets the page's width
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click(timeout=5_000)

    t1 = time.monotonic()
    page.evaluate(_js("startRunAllSampler"))
    _run_all(page)
    finished = _wait_idle(page, RUN_ALL_TIMEOUT)
    report.run_all_live = page.evaluate(_js("stopRunAllSampler"))
    live_cells = [f"cell {f['cell']} ({f['states']} states)" for f in report.run_all_live if f["states"] >= 2]
    report.notes.append("figures that updated while their cell was running (Run All): "
                        + (", ".join(live_cells) or "none"))
    server.remember_kernels()
    report.timings["run_all"] = time.monotonic() - t1
    if not finished:
        report.problems.append(f"Run All did not finish within {RUN_ALL_TIMEOUT} s (a cell still shows [*] or the "
                               "kernel stayed busy)")

    t2 = time.monotonic()
    with contextlib.suppress(Exception):  # give widget views and figures time to render; judged just below
        page.wait_for_function(_js("pageSettled"), timeout=WIDGET_RENDER_TIMEOUT * 1000, polling=250)
    state = page.evaluate(_js("inspectNotebook"))
    report.timings["render"] = time.monotonic() - t2
    report.figures, report.widgets = state["figures"], state["widgets"]
    _judge_static(report, state, finished)
    _judge_figures(report, page.evaluate(_js("figureChecks")))
    _check_saved_outputs(page, path, report)

    if live:
        t3 = time.monotonic()
        _live_check(page, path, report)
        report.timings["live"] = time.monotonic() - t3
    _judge_stderr(page, path, report)
    t4 = time.monotonic()  # before the reload: a reloaded page shows static figures as plotly's PNG snapshots
    _photograph_figures(page, path, report, artifacts)
    report.timings["gallery"] = time.monotonic() - t4
    if reload:
        t5 = time.monotonic()
        _reload_check(page, report)
        report.timings["reload"] = time.monotonic() - t5
    report.screenshot = _screenshot(page, artifacts / f"{path.stem}.png")
    report.timings["total"] = time.monotonic() - t0
    (artifacts / f"{path.stem}.txt").write_text(report.summary() + "\n")
    return report


def _reload_check(page, report: Report) -> None:
    """A reader reloads the page while the kernel runs on: every widget view and figure must come back from the
    kernel's widget state (a figure filled after it was displayed comes back empty when that state is stale)."""
    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" when something is unsaved
    before = page.evaluate(_js("inspectNotebook"))
    page.reload(timeout=PAGE_LOAD_TIMEOUT * 1000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=PAGE_LOAD_TIMEOUT * 1000)
    page.wait_for_function(_js("kernelReady"), timeout=PAGE_LOAD_TIMEOUT * 1000, polling=250)
    size = page.viewport_size  # JupyterLab renders only the cells in view: show the whole notebook at once
    deadline = time.monotonic() + WIDGET_RENDER_TIMEOUT  # views render one by one: wait for all (bounded)
    while True:
        height = page.evaluate(_js("notebookHeight"))
        page.set_viewport_size({"width": size["width"], "height": int(min(max(height, size["height"]), 16000))})
        page.evaluate("() => document.querySelectorAll('.jp-Notebook .jp-Cell').forEach(c => c.scrollIntoView())")
        with contextlib.suppress(Exception):
            page.wait_for_function(_js("pageSettled"), timeout=WIDGET_RENDER_TIMEOUT * 1000, polling=250)
        after = page.evaluate(_js("inspectNotebook"))
        if len(after["figures"]) + after["snapshots"] >= len(before["figures"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    page.set_viewport_size(size)
    seen = Report(report.name)
    _judge_static(seen, {**after, "unexecuted": []}, finished=True)
    report.problems += [f"after a page reload: {p}" for p in seen.problems]
    # a static figure comes back as plotly's PNG snapshot (the graph is built when the mouse enters it): drawn
    lost = len(before["figures"]) - len(after["figures"]) - after["snapshots"]
    if lost > 0:
        report.problems.append(f"after a page reload: {lost} of {len(before['figures'])} plotly figure(s) not drawn "
                               f"again within {WIDGET_RENDER_TIMEOUT} s")
    report.notes.append(f"after a page reload: {len(after['figures'])} plotly figure(s), {after['snapshots']} static "
                        f"figure(s) shown as plotly's snapshot image, {after['widgets']['views']} widget view(s)")


def _run_all(page) -> None:
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled)", has_text="Run All Cells").first.click()


def _wait_idle(page, timeout: float) -> bool:
    """Wait until every code cell has run (or the run stopped at an error) and the kernel is idle for 1 s."""
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        if page.evaluate(_js("runFinished")):
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.0:
                return True
        else:
            idle_since = None
        time.sleep(0.25)
    return False


def _judge_static(report: Report, state: dict, finished: bool) -> None:
    for cell in state["unexecuted"]:
        if finished:
            report.problems.append(f"cell {cell} was not executed (Run All stopped before it)")
    for w in state["widgets"]["broken"]:
        report.problems.append(f"widget in cell {w['cell']} not rendered: {w['text']!r}")
    if not state["figures"] and state["widgets"]["views"] == 0:
        report.notes.append("no plotly figure and no widget in the page")
    for f in state["figures"]:
        where = f"plotly figure {f['index']} (cell {f['cell']})"
        if not f["traces"]:
            report.problems.append(f"{where} has no traces: empty axes")
        elif f["points"] == 0:
            report.problems.append(f"{where} has {len(f['traces'])} trace(s) but no finite data points: empty axes")
        elif f["svgTypesOnly"] and f["marks"] == 0:
            report.problems.append(f"{where} holds {f['points']} points but drew no marks in the SVG")
        if f["width"] == 0 or f["height"] == 0:
            report.problems.append(f"{where} has zero size ({f['width']}x{f['height']} px)")
    report.notes.append(f"{len(state['figures'])} plotly figure(s), {state['widgets']['views']} widget view(s), "
                        f"{state['widgets']['controls']} control(s)")


def _judge_figures(report: Report, checks: list[dict]) -> None:
    """Axis ranges against the data, overlapping or clipped text: each a problem naming figure and cell."""
    for f in checks:
        where = f"plotly figure {f['index']} (cell {f['cell']}{', ' + repr(f['title']) if f['title'] else ''})"
        report.problems += [f"{where}: {p}" for p in f["axes"] + f["text"]]
    report.figure_checks = checks


def _cell_tags(path: Path) -> dict[int, list[str]]:
    nb = _read_saved(path)
    return {i: list(c.get("metadata", {}).get("tags", [])) for i, c in enumerate(nb.cells, 1)}


def _judge_stderr(page, path: Path, report: Report) -> None:
    """Any stderr output (a warning, a traceback printed by a library) fails, unless its cell is tagged
    ``expected-warning``: from the saved file (exact, Run All) and from the page (Output widgets, live runs)."""
    tags = _cell_tags(path)
    seen: dict[int, str] = {}
    nb = _read_saved(path)
    for i, cell in enumerate(nb.cells, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr" and out.get("text", "").strip():
                seen.setdefault(i, out["text"].strip())
    for e in page.evaluate(_js("stderrOutputs")):
        seen.setdefault(e["cell"], e["text"])
    for cell, text in sorted(seen.items()):
        if WARN_TAG in tags.get(cell, []):
            report.notes.append(f"cell {cell} (tagged {WARN_TAG}) printed to stderr: {text[:120]!r}")
        else:
            report.problems.append(f"cell {cell} printed to stderr (warning output a reader sees; tag the cell "
                                   f"'{WARN_TAG}' if intended): {' '.join(text.split())[:240]!r}")


def _photograph_figures(page, path: Path, report: Report, artifacts: Path) -> None:
    """One PNG per figure, scrolled into view, for the gallery (a person looks through it before a release)."""
    nb = _read_saved(path)
    figures = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .js-plotly-plot")
    checks = {f["index"]: f for f in report.figure_checks}
    folder = artifacts / "figures"
    folder.mkdir(exist_ok=True)
    for i in range(figures.count()):
        info = checks.get(i + 1, {"cell": 0, "title": "", "axes": [], "text": []})
        png = folder / f"{path.stem}-{i + 1:02d}.png"
        try:
            figures.nth(i).scroll_into_view_if_needed(timeout=10_000)
            time.sleep(0.3)  # plotly relayouts a figure that enters the viewport
            figures.nth(i).screenshot(path=str(png), timeout=20_000)
        except Exception as err:  # a missing picture is noted, never a crash of the harness
            report.notes.append(f"could not photograph figure {i + 1}: {str(err).splitlines()[0][:120]}")
            png = None
        cell = info["cell"]
        source = nb.cells[cell - 1].source if 0 < cell <= len(nb.cells) else ""
        code = [ln for ln in source.splitlines() if ln.strip() and not ln.startswith("# NBVAL")][:4]
        report.gallery.append({"notebook": path.name, "figure": i + 1, "cell": cell, "title": info["title"],
                               "png": png, "code": "\n".join(code), "problems": info["axes"] + info["text"]})


def write_gallery(reports: list[Report], dest: Path) -> Path:
    """``gallery.html``: every figure's screenshot with its notebook, cell, title, the code that drew it and
    the problems the check found, for a person to look through."""
    import html

    rows = []
    for r in reports:
        status = "PASS" if not r.problems else f"FAIL ({len(r.problems)} problem(s))"
        rows.append(f"<h2 id='{html.escape(r.name)}'>{html.escape(r.name)} <small>{status}</small></h2>")
        if r.problems:
            rows.append("<ul class='bad'>" + "".join(f"<li>{html.escape(p)}</li>" for p in r.problems) + "</ul>")
        for g in r.gallery:
            img = (f"<img src='{html.escape(g['png'].relative_to(dest.parent).as_posix())}' loading='lazy'>"
                   if g["png"] else "<p>(no screenshot)</p>")
            probs = "".join(f"<li>{html.escape(p)}</li>" for p in g["problems"])
            rows.append(f"<figure>{img}<figcaption><b>{html.escape(g['title'] or '(untitled figure)')}</b><br>"
                        f"{html.escape(g['notebook'])}, cell {g['cell']}, figure {g['figure']}"
                        f"<pre>{html.escape(g['code'])}</pre>"
                        + (f"<ul class='bad'>{probs}</ul>" if probs else "") + "</figcaption></figure>")
    index = " &middot; ".join(f"<a href='#{html.escape(r.name)}'>{html.escape(r.name)}</a>" for r in reports)
    dest.write_text(
        "<!doctype html><meta charset='utf-8'><title>labkit figure gallery</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}figure{border-top:1px solid #ccc;"
        "margin:1.5em 0;padding-top:1em}img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;"
        "padding:.4em;white-space:pre-wrap}.bad{color:#b2182b}</style>"
        "<h1>labkit: every figure as a reader sees it</h1><p>Headless JupyterLab, Run All in fast mode, then the "
        f"live section. {index}</p>" + "\n".join(rows))
    return dest


def _read_saved(path: Path, timeout: float = 20.0):
    """The notebook the page saved; the server may still be writing it (empty or partial file): retry."""
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(0.3)
        try:
            return nbformat.read(path, as_version=4)
        except ValueError:  # NotJSONError, JSONDecodeError: not fully written yet
            if time.monotonic() > deadline:
                raise


def _check_saved_outputs(page, path: Path, report: Report) -> None:
    """Save from the page (as a reader would), then read the file: error outputs are exact there, and the
    saved notebook must not carry widget state."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.click(position={"x": 2, "y": 2})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 20
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.2)
    if path.stat().st_mtime_ns == before:
        report.notes.append("could not save the notebook from the page; error outputs judged from the DOM only")
        return
    nb = _read_saved(path)
    for i, cell in enumerate(nb.cells, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                report.problems.append(f"cell {i} raised {out.get('ename')}: {str(out.get('evalue'))[:200]}")
    if "widgets" in nb.metadata:
        report.problems.append("the saved notebook stores widget state (metadata.widgets)")
    report.notes.append(f"saved executed notebook: {path.stat().st_size / 1024:.0f} KB")


def _live_cell(path: Path) -> int | None:
    """Index (among all cells) of the cell tagged ``browser-live``, if any."""
    nb = _read_saved(path)
    for i, cell in enumerate(nb.cells):
        if LIVE_TAG in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def _live_check(page, path: Path, report: Report) -> None:
    target = page.evaluate(_js("findLiveTarget"), {"cell": _live_cell(path)})
    report.live = {"target": target}
    if target is None:
        report.problems.append("live check: no Run/Train/Start/Scan button and no slider found in the page "
                               f"(tag a cell '{LIVE_TAG}' to choose)")
        return
    if target["figure"] is None:
        report.problems.append(f"live check: no plotly figure after the {target['kind']} in cell {target['cell']}")
        return
    page.evaluate(_js("startSampler"), target)
    control = page.locator(f"[data-lk-live-control='{target['token']}']")
    control.scroll_into_view_if_needed(timeout=10_000)
    if target["kind"] == "button":
        control.click(timeout=10_000)
    else:  # slider: keyboard on the noUiSlider handle, as a reader would
        control.focus(timeout=10_000)
        page.keyboard.press("ArrowRight" if target["canIncrease"] else "ArrowLeft")
    t0 = time.monotonic()
    while time.monotonic() - t0 < LIVE_TIMEOUT:
        time.sleep(0.5)
        s = page.evaluate(_js("samplerState"))
        if s["changes"] > 0 and s["sinceChange"] > LIVE_SETTLE * 1000:
            break
        if s["changes"] == 0 and time.monotonic() - t0 > LIVE_START_TIMEOUT:
            break
    s = page.evaluate(_js("stopSampler"))
    report.live.update(s)
    settled = s["sinceChange"] > LIVE_SETTLE * 1000
    what = f"live check ({target['kind']} {target['label']!r} in cell {target['cell']} -> figure {target['figure']})"
    report.notes.append(f"{what}: control area after the run: {s['controlText']!r}")
    if s["changes"] == 0:
        report.problems.append(f"{what}: the figure never changed within {LIVE_START_TIMEOUT} s "
                               f"({s['samples']} DOM samples, figure absent in {s['missing']})")
        return
    if s["partial"] == 0:
        report.problems.append(f"{what}: no partial figure seen while the run was in progress ({s['changes']} "
                               f"change(s) in {s['elapsed'] / 1000:.1f} s, {s['samples']} samples at 50 ms; changes at "
                               f"[ms, points] {s['timeline'][:12]}); the page shows only the end of the run")
    if s["final"] == s["initial"]:  # fine after a deterministic re-run that was seen drawing; else nothing happened
        message = f"{what}: after the run the figure shows the same data as before"
        (report.notes if s["partial"] else report.problems).append(message)
    if s["finalPoints"] == 0:
        report.problems.append(f"{what}: after the run the figure has no data points")
    report.problems += [f"{what}, while running: {p}" for p in s["issues"]]
    if not settled:
        report.notes.append(f"{what}: still changing after {LIVE_TIMEOUT} s")
    report.notes.append(f"{what}: {s['partial']} partial state(s), {s['changes']} figure changes in "
                        f"{s['elapsed'] / 1000:.1f} s ({s['samples']} samples); "
                        f"points {s['initialPoints']} -> {s['finalPoints']}; "
                        f"changes at [ms, points] {s['timeline'][:12]}")


def _screenshot(page, dest: Path) -> Path:
    """Whole notebook in one PNG: grow the viewport to the notebook's height (capped), shoot, restore.
    Two passes: offscreen cells only take their real height once they are inside the viewport."""
    size = page.viewport_size
    for _ in range(2):
        height = page.evaluate(_js("notebookHeight"))
        page.set_viewport_size({"width": size["width"], "height": int(min(max(height, size["height"]), 16000))})
        time.sleep(1.0)  # let plotly relayout
    page.evaluate(_js("notebookHeight"))  # back to the top
    page.screenshot(path=str(dest))
    page.set_viewport_size(size)
    return dest
