"""Benchmark chunks: chunk index and emit time up front, so a client can check and time them."""

from __future__ import annotations

import asyncio
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


async def pace(started: float, sent: int, rate: int) -> None:
    """Wait until `sent` chunks since `started` (monotonic) keep to `rate` per second (0: none).

    Sleeps only once a millisecond ahead: a timer per chunk would cost more than the chunk.
    """
    ahead = started + sent / rate - time.monotonic() if rate else 0.0
    if ahead > 0.001:
        await asyncio.sleep(ahead)
