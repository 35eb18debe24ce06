"""Lossless PNG for rendered pages, at a fraction of the usual CPU.

A page rendered at 150 dpi is ~2.2 million RGB pixels, and encoding it as PNG costs far more than
rendering it: PyMuPDF's ``Pixmap.tobytes("png")`` (like Pillow and libpng by default) tries five
filters on every row and deflates at level 6, ~25 ms of CPU a page against ~1.5-3.5 ms to render.
Rendered pages are flat areas and sharp edges, for which one fixed filter (Up: each byte minus the
byte above it) and zlib at level 1 give nearly the same size: :func:`encode_png` takes ~10-15 ms,
for files ~20-30 % larger (``benchmarks/README.md``). The pixels are the same either way: PNG is
lossless, so the model sees the same image and the vectors do not change.

Why not a library: Pillow and PyMuPDF do not let the caller choose the filter; ``imagecodecs``
does (``png_encode(..., filter=...)``, ~10 % faster than this) but is an 80 MB native dependency
for what is a row filter and a deflate from the standard library.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Channels -> PNG colour type: grey, grey + alpha, RGB, RGBA (8 bits per sample).
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
_UP = 2  # PNG filter type 2: the byte minus the byte above it (the first row: minus zero)


def encode_png(pixels: np.ndarray, level: int = 1) -> bytes:
    """``pixels`` (``uint8``, height x width, or height x width x 1-4 channels) as PNG bytes."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"PNG samples must be uint8, not {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOUR_TYPE:
        raise ValueError(f"cannot encode an array of shape {pixels.shape} as PNG")
    height, width, channels = pixels.shape
    if not height or not width:
        raise ValueError("cannot encode an empty image as PNG")
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    # Each scanline: its filter byte, then its bytes minus the previous line's (modulo 256, as
    # uint8 arithmetic wraps).
    filtered = np.empty((height, width * channels + 1), np.uint8)
    filtered[:, 0] = _UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(filtered.data, level)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
