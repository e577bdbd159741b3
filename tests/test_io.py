"""labkit._io: atomic writes at exactly the path given, and one-line errors for folders and permissions."""

import errno
import os
import tempfile

import numpy as np
import pytest

from labkit import _io


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    assert _io.write_text(path, "new") == path
    assert path.read_text() == "new" and oct(path.stat().st_mode & 0o777) == oct(0o640)  # permissions kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_interrupted_write_keeps_the_old_file(tmp_path, exc):
    path = tmp_path / "a.bin"
    path.write_bytes(b"precious")
    with pytest.raises(type(exc)):
        with _io.atomic(path) as f:
            f.write(b"half of the new")
            raise exc
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_with_suffix_keeps_the_name_and_refuses_a_folder(tmp_path):
    assert _io.with_suffix(tmp_path / "f.v1", ".npz").name == "f.v1.npz"
    assert _io.with_suffix(tmp_path / "f.npz", ".npz").name == "f.npz"
    with pytest.raises(IsADirectoryError, match="is a folder"):
        _io.with_suffix(tmp_path, ".npz")


def test_missing_folder_and_file_as_folder_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        _io.write_bytes(tmp_path / "missing" / "a.png", b"x")
    assert "does not exist" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        _io.write_bytes(tmp_path / "file" / "a.png", b"x")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        _io.write_bytes(tmp_path, b"x")
    with pytest.raises(NotADirectoryError, match="a file of that name exists"):
        _io.ensure_folder(tmp_path / "file")


def test_permission_problem_is_one_line(tmp_path, monkeypatch):
    def denied(*args, **kwargs):  # we may run as root, where chmod cannot take write access away
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError, match="permission denied") as info:
        _io.write_bytes(tmp_path / "a.png", b"x")
    assert "\n" not in str(info.value) and "a.png" in str(info.value)


def test_copy_file_is_exact(tmp_path):
    src = tmp_path / "s.bin"
    src.write_bytes(np.arange(1000, dtype=np.int32).tobytes())
    assert _io.copy_file(src, tmp_path / "d.bin").read_bytes() == src.read_bytes()
