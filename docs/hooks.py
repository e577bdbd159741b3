"""mkdocs hooks: the notebooks/ folder as pages, and one generated API page per public module.

Nothing is copied into docs/: the notebooks are read from the repository's ``notebooks/`` folder and each
``api/<module>.md`` page is generated (``::: labkit.<module>``), so a new module gets its page by existing.
When ``LABKIT_DOCS_NOTEBOOKS`` names a folder whose ``notebooks/`` holds executed copies
(``docs/execute_notebooks.py``), a notebook found there is shown with its outputs and figures instead of the clean one.
"""

import os
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "labkit"


def public_modules() -> list[str]:
    """Top-level public modules and subpackages of labkit (names not starting with ``_``)."""
    names = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    names |= {p.parent.name for p in PACKAGE.glob("*/__init__.py") if not p.parent.name.startswith("_")}
    return sorted(names)


def notebook_root(name: str) -> Path:
    """The folder whose ``notebooks/<name>`` a page is made from: the executed copies' folder when it has one."""
    executed = os.environ.get("LABKIT_DOCS_NOTEBOOKS")
    if executed and (Path(executed) / "notebooks" / name).is_file():
        return Path(executed).resolve()
    return ROOT


@event_priority(50)  # before mkdocs-jupyter's on_files, which turns the .ipynb files into pages
def on_files(files, config):
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        root = notebook_root(path.name)
        files.append(File(f"notebooks/{path.name}", str(root), config["site_dir"], config["use_directory_urls"]))
    for name in public_modules():
        page = f"# labkit.{name}\n\n::: labkit.{name}\n"
        files.append(File.generated(config, f"api/{name}.md", content=page))
    return files
