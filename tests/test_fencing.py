"""A stream's writer against a real nats-server: lost acknowledgements and a second writer.

A TCP relay in front of nats-server holds back what the server sends and cuts the
connection, so a publish lands while its acknowledgement never arrives, as when a
connection breaks at the wrong moment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from conftest import StackFactory
from streamer_common import frames
from streamer_common.frames import Position
from streamer_common.natsio import stream_state
from streamer_common.topology import data_subject
from streamer_producer.publisher import LostOwnership, Ready
from support import new_id, stream_writer, wait_until

DATA = "STREAMER_DATA"


class Relay:
    """Forwards TCP to `port`; can hold back the server's bytes and cut every connection."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._holding = False
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in self._tasks:
            task.cancel()

    def hold(self) -> None:
        """From now on, drop what the server sends (until `cut`)."""
        self._holding = True

    def cut(self) -> None:
        """Close every connection, losing what was held back; new ones pass freely."""
        for client, server in self._links:
            client.close()
            server.close()
        self._links.clear()
        self._holding = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._links.append((writer, up_writer))
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pipe(up_reader, writer, upstream=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if upstream or not self._holding:
                    writer.write(data)
                    await writer.drain()
        writer.close()


@pytest.fixture
async def relayed(make_stack: StackFactory) -> AsyncIterator[tuple[Client, Client, Relay]]:
    """A connection through the relay (reconnecting fast), one straight to nats-server."""
    stack = make_stack(producers=0)
    async with Relay(stack.nats.port) as relay:
        through = await nats.connect(relay.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
        direct = await nats.connect(stack.nats.url)
        try:
            yield through, direct, relay
        finally:
            await through.close()
            await direct.close()


async def stored(direct: Client, stream_id: str) -> int:
    """Messages the data stream holds for `stream_id`."""
    subject = data_subject(stream_id)
    info = await direct.jetstream().stream_info(DATA, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def until_stored(direct: Client, stream_id: str, count: int) -> None:
    """Wait until the data stream holds `count` messages for `stream_id`."""
    for _ in range(200):
        if await stored(direct, stream_id) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} messages not stored")


async def test_a_write_whose_acknowledgement_was_lost_is_stored_once(
    relayed: tuple[Client, Client, Relay],
) -> None:
    through, direct, relay = relayed
    stream_id = new_id()
    registry = CollectorRegistry()
    w = stream_writer(through, stream_id, registry)
    relay.hold()
    first = asyncio.create_task(w.write(Ready([b"one", b"two"], 2, 0)))
    await until_stored(direct, stream_id, 1)
    relay.cut()  # its acknowledgement is lost: the writer retries the same message
    await asyncio.wait_for(first, 15)
    await w.write(Ready([b"three"], 3, 0))
    await w.mark(frames.END)

    assert await stored(direct, stream_id) == 3
    assert w.position == Position(4, 3, 0)
    state = await stream_state(direct, DATA, stream_id)
    assert state.finished
    assert state.position == Position(4, 3, 0)
    retried = registry.get_sample_value(
        "streamer_producer_publish_retries_total", {"reason": "unavailable"}
    )
    assert (retried or 0) >= 1


async def test_a_second_writer_from_the_same_state_is_fenced_off(
    relayed: tuple[Client, Client, Relay],
) -> None:
    _, direct, _ = relayed
    stream_id = new_id()
    # Two producers that both took the job when the subject was empty (one stalled past
    # the ack wait, say): the first to publish owns the stream.
    owner, stale = stream_writer(direct, stream_id), stream_writer(direct, stream_id)
    await owner.write(Ready([b"owner's"], 1, 0))

    with pytest.raises(LostOwnership, match="another producer is writing"):
        await stale.write(Ready([b"stale"], 1, 0))
    with pytest.raises(LostOwnership):
        await stale.mark(frames.END)
    await owner.write(Ready([b"owner's second"], 2, 0))

    assert await stored(direct, stream_id) == 2
    last = await direct.jetstream().get_last_msg(DATA, data_subject(stream_id), direct=True)
    assert last.data == b"owner's second"


async def test_a_marker_after_a_cancelled_write_counts_the_write_if_it_landed(
    relayed: tuple[Client, Client, Relay],
) -> None:
    through, direct, relay = relayed
    stream_id = new_id()
    w = stream_writer(through, stream_id)
    relay.hold()
    write = asyncio.create_task(w.write(Ready([b"landed"], 1, 0)))
    await until_stored(direct, stream_id, 1)
    write.cancel()  # the job was stopped with this publish unacknowledged
    with contextlib.suppress(asyncio.CancelledError):
        await write
    relay.cut()
    await wait_until(lambda: through.stats["reconnects"] >= 1 and through.is_connected, 10)

    await w.mark(frames.STOPPED)

    state = await stream_state(direct, DATA, stream_id)
    assert state.status == frames.STOPPED
    # A retry resumes after the chunk that landed, not before it.
    assert state.position == Position(2, 1, 0)
    assert await stored(direct, stream_id) == 2
