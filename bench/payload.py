"""Benchmark chunks: chunk index and emit time up front, so a client can check and time them."""

from __future__ import annotations

import struct
import time

HEADER = struct.Struct("<QQ")  # chunk index, emit time (ns since the epoch)


def chunk(index: int, size: int, filler: bytes) -> bytes:
    """A chunk of `size` bytes (at least the header) stamped with `index` and the time now."""
    return HEADER.pack(index, time.time_ns()) + filler[: max(size - HEADER.size, 0)]


def filler(size: int) -> bytes:
    """The bytes after the header, made once per run."""
    return b"x" * max(size - HEADER.size, 0)


def stamp(data: bytes) -> tuple[int, int]:
    """(chunk index, emit time ns) of a chunk or of the first part of a split chunk."""
    index, emitted = HEADER.unpack_from(data)
    return index, emitted
