"""The producer's job pulling and publishing pump against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
from nats.aio.client import Client

from conftest import StackFactory
from promsupport import scrape, value
from streamer_common.topology import JOBS_CONSUMER
from streamer_devstack.stack import Stack
from streamer_producer.publisher import ReadAhead, Ready, StreamWriter, pump, split
from support import collect, new_id, request, stream_writer

MAX_BATCH = 256 * 1024


class Counting:
    """A handler that never awaits: `chunks` chunks of 64 B, counting those it has made."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.made = 0

    async def __call__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.made += 1
            yield b"x" * 64


def writer_of(cls: type[StreamWriter], nc: Client) -> StreamWriter:
    """A writer of class `cls` for a new stream on the data stream, from its start."""
    return stream_writer(nc, new_id(), cls=cls)


async def pumped(handler: Counting, writer: StreamWriter) -> bool:
    """Pump the handler through the writer with the producer's default message bound."""
    return await pump(
        handler(), writer, max_part=MAX_BATCH, max_batch=MAX_BATCH, stop=asyncio.Event()
    )


def test_a_large_chunk_is_split_into_views_of_bytes_and_copies_of_a_bytearray() -> None:
    chunk = bytes(range(256)) * 5
    parts = split(chunk, 6, 512)

    assert [(bytes(part.payload), part.chunk, part.skip) for part in parts] == [
        (chunk[:512], 6, 1),
        (chunk[512:1024], 6, 2),
        (chunk[1024:], 7, 0),
    ]
    assert all(isinstance(part.payload, memoryview) and part.payload.obj is chunk for part in parts)
    reused = bytearray(chunk)
    copies = split(reused, 6, 512)
    reused[:] = bytes(len(reused))  # the handler makes its next chunk in the same buffer
    assert b"".join(part.payload for part in copies) == chunk


async def test_a_handler_that_never_awaits_is_published_a_message_at_a_time(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=0)
    nc = await nats.connect(stack.nats.url)
    handler = Counting(20_000)
    made_at_write: list[int] = []

    class Recording(StreamWriter):
        async def write(self, ready: Ready) -> None:
            made_at_write.append(handler.made)
            await super().write(ready)

    writer = writer_of(Recording, nc)
    try:
        finished = await pumped(handler, writer)
    finally:
        await nc.close()

    assert finished
    assert writer.published_items == 20_000
    # The first message leaves once a message's worth is ready, not once the handler has
    # filled the whole read-ahead (four messages' worth) without letting anything else run.
    one_message = MAX_BATCH // (64 + ReadAhead.PART_COST)
    assert made_at_write[0] <= one_message + 1


async def test_a_handler_runs_ahead_of_a_stalled_publish_by_the_read_ahead_bound(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=0)
    nc = await nats.connect(stack.nats.url)
    handler = Counting(50_000)
    stalled = asyncio.Event()
    release = asyncio.Event()
    in_flight: list[int] = []

    class Stalling(StreamWriter):
        async def write(self, ready: Ready) -> None:
            if not in_flight:
                in_flight.append(len(ready.payloads))
                stalled.set()
                await release.wait()
            await super().write(ready)

    writer = writer_of(Stalling, nc)
    pumping = asyncio.create_task(pumped(handler, writer))
    try:
        await asyncio.wait_for(stalled.wait(), 10)
        await asyncio.sleep(0.5)  # the handler runs until the read-ahead is full, then waits
        buffered = handler.made - in_flight[0]
        release.set()
        finished = await asyncio.wait_for(pumping, 30)
    finally:
        pumping.cancel()
        await nc.close()

    # Four messages' worth of parts wait for the stalled publish, and not one more.
    bound = 4 * MAX_BATCH // (64 + ReadAhead.PART_COST)
    assert bound <= buffered <= bound + 1
    assert finished
    assert writer.published_items == 50_000


def waiting_pull_requests(stack: Stack) -> int:
    """Pull requests the producers have waiting on the jobs consumer."""
    page = stack.nats.monitor("jsz?consumers=true")
    return sum(
        consumer["num_waiting"]
        for account in page["account_details"]
        for stream in account["stream_detail"]
        for consumer in stream.get("consumer_detail", [])
        if consumer["name"] == JOBS_CONSUMER
    )


async def test_an_idle_producer_keeps_one_pull_request_whatever_its_concurrency(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=1, producer={"PRODUCER_CONCURRENCY": "50"})
    idle = []
    for _ in range(10):  # across two expiries of the pull request
        await asyncio.sleep(0.25)
        idle.append(waiting_pull_requests(stack))

    results = await asyncio.gather(
        *(collect(stack.target, stack.tls.cert, request(new_id(), count=3)) for _ in range(60))
    )

    assert max(idle) == 1  # one slot each would be 50
    for result in results:  # more calls than slots: the rest started as slots freed
        result.assert_complete(3)


async def test_publishes_nats_server_throttles_are_retried_and_every_stream_completes(
    make_stack: StackFactory,
) -> None:
    # Room for 1 MB of messages (up to 256 KiB each) waiting to be stored in the data
    # stream: forty jobs publishing at once overflow it, and nats-server answers 429.
    stack = make_stack(
        producers=2,
        producer={"PRODUCER_CONCURRENCY": "20"},
        nats_config="jetstream { max_buffered_size: 1mb }\n",
    )
    chunk = 64 * 1024

    results = await asyncio.gather(
        *(
            collect(
                stack.target,
                stack.tls.cert,
                request(new_id(), count=16, interval_ms=0, size=chunk),
            )
            for _ in range(40)
        )
    )

    for result in results:
        result.assert_complete(16)
        assert result.items[:-1] == [
            (index + 1, f"DATA {index}".encode().ljust(chunk, b".")) for index in range(16)
        ]
    throttled = sum(
        value(scrape(producer), "streamer_producer_publish_retries_total", reason="throttled")
        for producer in stack.producers
    )
    assert throttled > 0
