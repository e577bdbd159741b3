"""Lazily exported names stay the objects they name, whatever was imported before them."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

LAZY = ["labkit.fractal", "labkit.viz", "labkit.widgets"]


@pytest.mark.parametrize("package", LAZY)
def test_exports_resolve_after_every_submodule_was_imported(package):
    # A fresh interpreter imports every submodule first (as a notebook might), then each export.
    code = f"""
import importlib, pkgutil, types
pkg = importlib.import_module({package!r})
for info in pkgutil.iter_modules(pkg.__path__):
    importlib.import_module({package!r} + "." + info.name)
for name in pkg._EXPORTS:
    value = getattr(importlib.import_module({package!r}), name)
    assert not isinstance(value, types.ModuleType), f"{{name}} resolves to a module"
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_names_raise_attribute_error():
    for package in LAZY:
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            importlib.import_module(package).nope  # noqa: B018
    assert "scan" in dir(importlib.import_module("labkit.fractal"))
    assert all(info.name != "scan" for info in pkgutil.iter_modules(importlib.import_module("labkit.fractal").__path__))


def test_top_level_is_lazy_and_uses_the_same_mechanism():
    code = """
import sys, labkit, labkit._lazy
assert not any(m in sys.modules for m in ("labkit.train", "labkit.viz", "torch")), "import labkit is not lazy"
assert labkit.__getattr__.__module__ == "labkit._lazy"
for name in ("batchsize", "data", "exercises", "fractal", "hessian", "linalg", "losses", "models", "notebook",
             "ntk", "optim", "structure", "train", "viz", "widgets"):
    assert getattr(labkit, name).__name__ == "labkit." + name
    assert name in dir(labkit)
assert labkit.train.fit is sys.modules["labkit.train"].fit
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_listed_module_missing_from_the_installation_is_a_clear_attribute_error(tmp_path, monkeypatch):
    from labkit._lazy import lazy_exports

    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("VALUE = 3\n")
    (pkg / "broken.py").write_text("import not_a_real_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("lazypkg")
    mod.__getattr__, mod.__dir__ = lazy_exports("lazypkg", {"VALUE": "good"}, submodules=["good", "absent", "broken"])
    try:
        assert mod.VALUE == 3 and mod.good.VALUE == 3
        assert not hasattr(mod, "absent")
        with pytest.raises(AttributeError, match=r"lazypkg\.absent is listed but not part of this installation"):
            mod.absent  # noqa: B018
        with pytest.raises(ModuleNotFoundError, match="not_a_real_dependency_xyz"):  # a real failure surfaces
            mod.broken  # noqa: B018
        assert {"VALUE", "good", "broken"} <= set(dir(mod)) and "absent" not in dir(mod)
        with pytest.raises(ValueError, match="both"):
            lazy_exports("lazypkg", {"good": "good"}, submodules=["good"])
    finally:
        for name in [m for m in sys.modules if m.startswith("lazypkg")]:
            del sys.modules[name]
