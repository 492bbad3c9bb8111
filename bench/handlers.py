"""The `bench` job handler: producers load it with PRODUCER_HANDLER_MODULES=bench.handlers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from bench.payload import chunk, filler, pace
from streamer_producer.handlers import JobContext, handler, int_param


@handler("bench")
async def bench(ctx: JobContext) -> AsyncIterator[bytes]:
    """`count` stamped chunks of `size` bytes; `rate` per second if set, else as fast as allowed."""
    count = int_param(ctx, "count", 1000, 0, 100_000_000)
    size = int_param(ctx, "size", 64, 16, 64 * 1024 * 1024)
    rate = int_param(ctx, "rate", 0, 0, 10_000_000)
    tail = filler(size)
    started = time.monotonic()
    for index in range(ctx.start, count):
        await pace(started, index - ctx.start, rate)
        yield chunk(index, size, tail)
