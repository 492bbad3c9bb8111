"""Resuming with `after_sequence` starts reading near the client's place, not at the start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from streamer_common import frames
from streamer_common.natsio import stream_state
from streamer_devstack.processes import NatsServer
from streamer_devstack.stack import Stack
from streamer_edge.follower import resume_point, worth_searching
from support import collect, new_id, request

DATA = "STREAMER_DATA"


@pytest.fixture
async def nc(tmp_path: Path) -> AsyncIterator[Client]:
    server = NatsServer(tmp_path)
    server.start()
    try:
        async with await nats.connect(server.url) as nc:
            await nc.jetstream().add_stream(
                StreamConfig(name=DATA, subjects=["stream.*"], allow_direct=True)
            )
            yield nc
    finally:
        server.stop()


async def write(nc: Client, stream_id: str, messages: list[dict[str, str]]) -> list[int]:
    """Publish `messages` (their headers) to `stream.<id>`, each between two of another id's;
    a data message holds one byte per item."""
    js, sequences = nc.jetstream(), []
    for headers in messages:
        items = 0 if frames.STATUS in headers else headers.get(frames.SIZES, "").count(",") + 1
        frames.decode(headers, b"x" * items)  # as an edge would read it
        await js.publish("stream.other", b"x")
        ack = await js.publish(f"stream.{stream_id}", b"x" * items, headers=headers)
        sequences.append(ack.seq)
        await js.publish("stream.other", b"x")
    return sequences


def history(sizes: list[int], stopped_after: int) -> list[dict[str, str]]:
    """Data messages of `sizes` items each, a `stopped` marker after message `stopped_after`
    (the job continued), and the end marker."""
    messages, sequence = [], 1
    for index, size in enumerate(sizes):
        position = frames.Position(sequence + size, index + 1)
        messages.append(frames.data_headers("w", sequence, [1] * size, position))
        sequence += size
        if index == stopped_after:
            messages.append(frames.control_headers("w", frames.STOPPED, position))
    messages.append(frames.control_headers("w", frames.END, frames.Position(sequence)))
    return messages


async def test_the_search_starts_at_the_message_holding_the_next_item(nc: Client) -> None:
    sizes = [1 + index % 5 for index in range(62)]
    messages = history(sizes, stopped_after=20)
    sequences = await write(nc, "long", messages)
    state = await stream_state(nc, DATA, "long")
    items = sum(sizes)
    assert (state.subject_sequence, state.position.next_sequence) == (sequences[-1], items + 1)

    found, expected = [], []
    for after in range(1, items + 2):
        found.append(await resume_point(nc, DATA, "long", after, state))
        # The last message whose items start at or before after + 1, by reading them all.
        holding = max(
            seq
            for seq, headers in zip(sequences, messages, strict=True)
            if frames.first_item(headers) <= after + 1
        )
        searched = worth_searching(len(messages), items, after, sequences[-1])
        expected.append(holding if searched else 0)

    assert found == expected
    assert sum(map(bool, found)) > len(found) * 3 // 4  # all but the resumes near the start
    assert found[-1] == sequences[-1]  # a client with every item starts at the end marker


async def test_a_resume_near_the_start_reads_the_subject_from_there(nc: Client) -> None:
    await write(nc, "short", history([3] * 31, stopped_after=-1))
    state = await stream_state(nc, DATA, "short")

    assert await resume_point(nc, DATA, "short", 5, state) == 0
    assert await resume_point(nc, DATA, "nothing", 5, await stream_state(nc, DATA, "nothing")) == 0


def test_a_search_is_worth_it_when_it_skips_more_messages_than_it_probes() -> None:
    # A million sequences take 21 probes.
    assert worth_searching(messages=100, items=1000, after=990, sequences=1_000_000)
    assert not worth_searching(messages=100, items=1000, after=100, sequences=1_000_000)
    assert not worth_searching(messages=20, items=20, after=20, sequences=1_000_000)
    assert worth_searching(messages=20, items=20, after=20, sequences=1000)
    assert not worth_searching(messages=5, items=0, after=3, sequences=10)


async def test_resuming_near_the_end_of_a_long_stream_reads_a_few_messages(stack: Stack) -> None:
    count, size = 400, 64 * 1024  # about 100 messages of 256 KiB
    whole_request = request(new_id(), count=count, size=size, interval_ms=0)
    whole = await collect(stack.target, stack.tls.cert, whole_request)
    whole.assert_complete(count)

    before = stack.nats.bytes_sent("streamer-edge")
    resumed_request = request(whole_request.id, count=count, size=size, interval_ms=0)
    resumed_request.after_sequence = count - 4
    resumed = await collect(stack.target, stack.tls.cert, resumed_request)
    read = stack.nats.bytes_sent("streamer-edge") - before

    resumed.assert_complete(count, after=count - 4)
    assert resumed.items[:4] == whole.items[count - 4 : count]
    # Reading from the start took the whole stream, 26.3 MB; the search read 1.8 MB.
    assert read < count * size / 4, read
