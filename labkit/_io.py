"""Safe file writes: atomic, only at the path given, and one-line errors.

Every file labkit writes (CLI outputs, ``ScanResult.save``, PNG and HTML
exports, zoom frames, student notebooks, copied notebooks) goes through
:func:`atomic`: the bytes go to a temporary file in the destination's folder,
which then replaces the destination with ``os.replace``. A reader never sees a
half-written file, and an interrupted write leaves the old file intact.

A missing folder, a folder in place of a file, or a permission problem is
raised as the usual ``OSError`` subclass with a one-line message naming the
path, which the ``labkit`` command prints without a traceback.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_text(folder / "a.txt", "hello").read_text()
'hello'
>>> with_suffix(folder / "run.v1", ".npz").name     # the user's name is kept, the suffix added
'run.v1.npz'
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic", "copy_file", "ensure_folder", "read_json", "with_suffix", "write_bytes", "write_json",
           "write_text"]


def with_suffix(path: str | Path, suffix: str) -> Path:
    """``path`` if it already ends in ``suffix``, else ``path`` with ``suffix`` appended (never replaced).

    ``with_suffix("f.v1", ".npz")`` is ``f.v1.npz``, not ``f.npz``: the user's name is kept. An existing
    folder is refused (``save("/tmp")`` must not write ``/tmp.npz``).
    """
    path = Path(path)
    if path.is_dir():
        example = str(path / ("scan" + suffix))
        raise IsADirectoryError(f"{str(path)!r} is a folder; give a file name such as {example!r}")
    return path if path.name.endswith(suffix) else path.with_name(path.name + suffix)


def _fail(err: OSError, path: Path) -> OSError:
    """The same kind of OSError with a one-line message that names ``path`` and says what is wrong."""
    folder = path.parent
    if isinstance(err, FileNotFoundError) or err.errno == errno.ENOENT:
        msg = f"cannot write {str(path)!r}: the folder {str(folder)!r} does not exist"
    elif isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        msg = f"cannot write {str(path)!r}: permission denied (the folder {str(folder)!r} is not writable)"
    elif isinstance(err, NotADirectoryError) or err.errno == errno.ENOTDIR:
        msg = f"cannot write {str(path)!r}: {str(folder)!r} is not a folder"
    else:
        msg = f"cannot write {str(path)!r}: {err.strerror or err}"
    new = type(err)(msg)
    new.errno = err.errno
    return new


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a folder; give a file name")


@contextlib.contextmanager
def atomic(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path`` atomically.

    On an exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    The new file gets the old file's permissions, or the usual ones (0666 minus the umask) for a new file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    _check_target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _fail(err, path) from None
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": "\n"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            perms = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            perms = 0o666 & ~umask
        os.chmod(tmp, perms)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _fail(err, path) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically; return the path."""
    with atomic(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` (``.json`` appended if missing), atomically; returns the path."""
    return write_text(with_suffix(path, ".json"), json.dumps(data, indent=1))


def read_json(path: str | Path) -> Any:
    """What :func:`write_json` wrote to ``path`` (``.json`` appended if missing)."""
    return json.loads(with_suffix(path, ".json").read_text())


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` atomically (contents and modification time)."""
    with atomic(dst, "wb") as f, open(src, "rb") as g:
        shutil.copyfileobj(g, f)
    shutil.copystat(src, dst)
    return Path(dst)


def ensure_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) if missing; a one-line OSError if that is impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"cannot create the folder {str(folder)!r}: a file of that name exists") from None
    except OSError as err:
        raise type(err)(f"cannot create the folder {str(folder)!r}: {err.strerror or err}") from None
    return folder
