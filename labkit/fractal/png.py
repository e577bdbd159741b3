"""Colour the equalised image and write it as a PNG with numpy and zlib only (no kaleido, no Pillow)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from labkit._io import write_bytes

__all__ = ["colorize", "write_png"]

_NAN_GREY = (200, 200, 200)


def _stops() -> tuple[np.ndarray, np.ndarray]:
    from labkit.viz.theme import DIVERGING

    pos = np.array([p for p, _ in DIVERGING], dtype=float)
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for _, c in DIVERGING], dtype=float)
    return pos, rgb


def colorize(image: np.ndarray, zmin: float = -1.0, zmax: float = 1.0) -> np.ndarray:
    """``(..., 3)`` uint8 colours of ``image`` on labkit's diverging scale (NaN -> light grey)."""
    if not zmin < zmax:
        raise ValueError(f"zmin must be below zmax, got zmin={zmin!r}, zmax={zmax!r}")
    pos, rgb = _stops()
    t = np.clip((np.asarray(image, dtype=float) - zmin) / (zmax - zmin), 0.0, 1.0)
    out = np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], axis=-1)
    out[np.isnan(image)] = _NAN_GREY
    return np.rint(out).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an ``(height, width, 3)`` uint8 array (row 0 at the top) as an 8-bit RGB PNG, atomically.

    ``path`` is used as given (its folder must exist); see :mod:`labkit._io`.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (height, width, 3), got {rgb.shape}")
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)  # filter byte 0 per row
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _chunk(b"IEND", b"")
    return write_bytes(path, png)
