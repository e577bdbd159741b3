"""Layers point one way, read from the source: every ``import`` in labkit (inside functions too) against the
layer map in ``docs/architecture.md``, which names every module.

The map is parsed from the doc, so the doc and this test cannot disagree. A module belongs to the longest
prefix listed; it may import its own layer and the layers below. The map's allow-list names the one kind of
upward import that is allowed (a function-level import of ``labkit.viz``: a result drawing itself), with its
reason. Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies, and are skipped. Deprecated aliases
resolve their new home by name at run time (``labkit._deprecated``) and so never import upward either.
Also checked: no import cycle between modules, and no private name (``_x``) of one module used in another.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


# ---------------------------------------------------------------- the map, from the doc


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start: end if end >= 0 else len(text)]


def layer_map(text: str | None = None) -> dict[str, int]:
    """``{module prefix: layer}`` from the doc's "Layer map" table (rows ``| N name | `mod`, `mod` | ... |``)."""
    text = DOC.read_text() if text is None else text
    out: dict[str, int] = {}
    for line in _section(text, "## Layer map").splitlines():
        m = re.match(r"\|\s*(\d+)\s[^|]*\|([^|]*)\|", line)
        if m:
            for mod in re.findall(r"`([\w.]+)`", m.group(2)):
                assert mod not in out, f"{mod} listed twice in the layer map"
                out[mod] = int(m.group(1))
    return out


def allowed_upward(text: str | None = None) -> list[tuple[str, str]]:
    """``(importer prefix, imported prefix)`` pairs of the allow-list; each only for function-level imports."""
    text = DOC.read_text() if text is None else text
    rows = []
    for line in _section(text, "## Layer map").splitlines():
        m = re.match(r"\|\s*allow\s*\|\s*`([\w.*]+)`\s*\|\s*`([\w.]+)`\s*\|", line)
        if m:
            rows.append((m.group(1), m.group(2)))
    return rows


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in layers:
            return layers[".".join(parts[:i])]
    return None


# ---------------------------------------------------------------- the imports, from the source


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a module of labkit
    name: str | None  # for ``from M import name``: the name, when it is not itself a module
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, tuple[str, bool]]:
    """``{module: (source, is_package)}`` for every file of labkit."""
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in sorted((ROOT / "labkit").rglob("*.py"))}


def imports(module: str, source: str, is_package: bool, modules: set[str]) -> list[Import]:
    """Every labkit import of ``module`` (module level and inside functions; ``TYPE_CHECKING`` blocks skipped)."""
    tree = ast.parse(source)
    skip: set[int] = set()
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        fn = id(node) in in_function
        if isinstance(node, ast.Import):
            out += [Import(module, a.name, None, node.lineno, fn) for a in node.names
                    if a.name.split(".")[0] == "labkit"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.split(".")[0] != "labkit":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in modules:  # ``from labkit import train``: the module labkit.train
                    out.append(Import(module, sub, None, node.lineno, fn))
                else:
                    out.append(Import(module, base, a.name, node.lineno, fn))
    return out


def all_imports(srcs: dict[str, tuple[str, bool]]) -> list[Import]:
    modules = set(srcs)
    return [i for m, (s, pkg) in srcs.items() for i in imports(m, s, pkg, modules)]


def violations(srcs: dict[str, tuple[str, bool]], text: str | None = None) -> list[str]:
    """Imports of a higher layer that the allow-list does not cover, as readable lines."""
    layers, allow = layer_map(text), allowed_upward(text)
    bad = []
    for imp in all_imports(srcs):
        a, b = layer_of(imp.importer, layers), layer_of(imp.imported, layers)
        if a is None or b is None or b <= a:
            continue
        ok = imp.in_function and any(
            (src == "*" or imp.importer == src or imp.importer.startswith(src + "."))
            and (imp.imported == dst or imp.imported.startswith(dst + ".")) for src, dst in allow)
        if not ok:
            where = "inside a function" if imp.in_function else "at module level"
            bad.append(f"{imp.importer} (layer {a}) imports {imp.imported} (layer {b}) {where}, line {imp.line}")
    return bad


# ---------------------------------------------------------------- the checks


SOURCES = sources()


def test_the_map_covers_every_module_and_names_only_modules_that_exist():
    layers = layer_map()
    unmapped = [m for m in SOURCES if layer_of(m, layers) is None]
    assert not unmapped, f"modules missing from the layer map in docs/architecture.md: {unmapped}"
    stale = [m for m in layers if not any(s == m or s.startswith(m + ".") for s in SOURCES)]
    assert not stale, f"the layer map names modules that do not exist: {stale}"


def test_imports_point_down_inside_functions_too():
    bad = violations(SOURCES)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_a_planted_function_level_import_of_an_upper_layer_fails():
    """Negative control: the same check flags ``models`` importing ``train`` inside a function, and a module-level
    ``viz`` import below viz, but not a ``.figure()`` importing viz inside the method (the allow-list)."""
    source, is_package = SOURCES["labkit.models"]
    planted = dict(SOURCES)
    planted["labkit.models"] = (source + "\n\ndef _planted():\n    from labkit.train import fit\n    return fit\n",
                                is_package)
    bad = violations(planted)
    assert len(bad) == 1 and "labkit.models (layer" in bad[0] and "labkit.train" in bad[0] and "inside" in bad[0]
    planted["labkit.models"] = (source + "\n\nfrom labkit import viz\n", is_package)
    assert any("labkit.viz" in b and "module level" in b for b in violations(planted))
    planted["labkit.models"] = (source + "\n\ndef figure():\n    from labkit import viz\n    return viz\n", is_package)
    assert not violations(planted)


def test_no_import_cycle():
    """Tarjan's strongly connected components of the module graph (every import, inside functions too)."""
    graph: dict[str, set[str]] = {m: set() for m in SOURCES}
    for imp in all_imports(SOURCES):
        if imp.imported in graph and imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_name_of_one_module_is_used_in_another():
    """``from labkit.X import _name`` or ``X._name`` outside X (private *modules* such as ``_checks`` are shared)."""
    modules = set(SOURCES)
    bad = []
    for imp in all_imports(SOURCES):
        if imp.name and imp.name.startswith("_") and not imp.name.startswith("__"):
            inside = imp.importer == imp.imported or imp.importer.startswith(imp.imported + ".")
            if not inside:
                bad.append(f"{imp.importer}: from {imp.imported} import {imp.name} (line {imp.line})")
    for m, (source, _) in SOURCES.items():
        bound = {}
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "labkit":
                for a in node.names:
                    if f"{node.module}.{a.name}" in modules:
                        bound[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in modules and a.asname:
                        bound[a.asname] = a.name
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                target = bound[node.value.id]
                if not (m == target or m.startswith(target + ".")) and f"{target}.{node.attr}" not in modules:
                    bad.append(f"{m}: {node.value.id}.{node.attr} (line {node.lineno})")
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["labkit.models", "labkit.risk", "labkit.train", "labkit.hessian"])
def test_importing_a_low_layer_loads_no_ui(module):
    """What importing actually loads agrees with the map: no plotly or ipywidgets below viz."""
    import json
    import subprocess
    import sys

    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {m for m in loaded if m.split(".")[0] in ("plotly", "ipywidgets") or m.startswith("labkit.viz")}
