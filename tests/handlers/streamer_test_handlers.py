"""Job handlers the tests register through PRODUCER_HANDLER_MODULES, as users do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from streamer_producer.handlers import JobContext, handler


@handler("always-fail")
async def always_fail(ctx: JobContext) -> AsyncIterator[bytes]:
    """Yields one chunk on the first attempt, then fails on every attempt."""
    if ctx.start == 0:
        yield b"before the failure"
    raise RuntimeError(f"disk on fire (attempt {ctx.attempt})")


@handler("fail-once")
async def fail_once(ctx: JobContext) -> AsyncIterator[bytes]:
    """Fails after three chunks on its first attempt; the retry resumes and completes."""
    for index in range(ctx.start, 6):
        if ctx.attempt == 1 and index == 3:
            raise RuntimeError("transient failure")
        await asyncio.sleep(0.01)
        yield f"chunk {index}".encode()


@handler("fail-once-burst")
async def fail_once_burst(ctx: JobContext) -> AsyncIterator[bytes]:
    """Fails after a burst of 50 chunks, published together, on its first attempt."""
    for index in range(ctx.start, 100):
        if ctx.attempt == 1 and index == 50:
            raise RuntimeError("transient failure")
        yield f"chunk {index}".encode()


@handler("stall")
async def stall(ctx: JobContext) -> AsyncIterator[bytes]:
    """One chunk, then nothing for an hour."""
    yield b"only chunk"
    await asyncio.sleep(3600)


@handler("yields-text")
async def yields_text(ctx: JobContext) -> AsyncIterator[bytes]:
    """A chunk of bytes, then a str: a handler's common mistake."""
    yield b"bytes first"
    yield "then text"  # type: ignore[misc]


@handler("returns-bytes")
async def returns_bytes(ctx: JobContext) -> bytes:  # type: ignore[misc]
    """A coroutine, not a generator: the `yield` is missing."""
    return b"all of it"
