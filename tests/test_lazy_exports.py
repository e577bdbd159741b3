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
