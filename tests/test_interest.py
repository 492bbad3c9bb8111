"""Edges announce the streams they read; producers stop a job once no edge announces it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from conftest import StackFactory
from promsupport import scrape, value
from streamer_common import frames
from streamer_common.interest import announcement_subject, encode_keys, reader_key
from streamer_common.natsio import barrier
from streamer_devstack.processes import NatsServer
from streamer_edge import interest as edge_interest
from streamer_edge.interest import Interest
from streamer_producer.interest import SILENCES_TO_FORGET, ReaderWatch
from support import (
    collect,
    log_events,
    new_id,
    request,
    start_second_edge,
    wait_for_status,
    wait_until,
)

INTERVAL = 0.1


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A nats-server of its own."""
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def edge(server: NatsServer, interval: float = INTERVAL) -> AsyncIterator[Interest]:
    """An edge's announcements, made on a connection of their own."""
    async with await nats.connect(server.url) as nc:
        interest = Interest(nc, interval)
        announcing = asyncio.create_task(interest.announce())
        try:
            yield interest
        finally:
            announcing.cancel()


@contextlib.asynccontextmanager
async def watch(server: NatsServer) -> AsyncIterator[ReaderWatch]:
    """A producer's view of the announcements."""
    async with await nats.connect(server.url) as nc:
        readers = ReaderWatch(nc, INTERVAL)
        await readers.start()
        try:
            yield readers
        finally:
            await readers.stop()


async def test_a_stream_is_read_from_its_hold_until_its_release(server: NatsServer) -> None:
    key = reader_key("s1")
    async with edge(server) as interest, watch(server) as readers:
        with interest.hold("s1"):
            await wait_until(lambda: readers.is_read(key), 2)
            assert not readers.is_read(reader_key("s2"))
        await wait_until(lambda: not readers.is_read(key), 2)
        unread = asyncio.get_running_loop().time()
        await asyncio.wait_for(readers.wait_until_unread("s1"), 2)

    assert asyncio.get_running_loop().time() - unread >= 2 * INTERVAL, "two checks"


async def test_a_change_is_announced_at_once_not_at_the_next_interval(
    server: NatsServer,
) -> None:
    key = reader_key("s")
    # Listening first, so the edge's first announcement, made as it starts, is heard.
    async with watch(server) as readers, edge(server, interval=2.0) as interest:
        await wait_until(lambda: readers.edges == 1, 2, interval=0.01)
        await asyncio.sleep(0.2)
        with interest.hold("s"):
            held = await wait_until(lambda: readers.is_read(key), 3, interval=0.01)
        released = await wait_until(lambda: not readers.is_read(key), 3, interval=0.01)

    # The next periodic announcement would come 1.8 s after the hold.
    assert held < 1.0
    assert released < 1.0


async def test_an_unexpected_error_in_announcing_is_logged_and_announcing_goes_on(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = []

    def encode_keys_failing_once(keys: list[int]) -> bytes:
        if not failures:
            failures.append(keys)
            raise RuntimeError("a bug of ours")
        return encode_keys(keys)

    monkeypatch.setattr(edge_interest, "encode_keys", encode_keys_failing_once)
    key = reader_key("s")
    with caplog.at_level(logging.ERROR, logger=edge_interest.__name__):
        async with watch(server) as readers, edge(server) as interest:
            await wait_until(lambda: bool(failures), 2, interval=0.01)
            with interest.hold("s"):
                await wait_until(lambda: readers.is_read(key), 2)

    (failed,) = [r for r in caplog.records if r.message == "announcement failed"]
    assert failed.exc_info is not None
    assert "a bug of ours" in str(failed.exc_info[1])


async def test_a_stream_is_read_while_any_edge_holds_it(server: NatsServer) -> None:
    async with edge(server) as first, edge(server) as second, watch(server) as readers:
        with second.hold("shared"):
            with first.hold("shared"), second.hold("shared"):
                await wait_until(lambda: readers.edges == 2, 2)
                unread = asyncio.ensure_future(readers.wait_until_unread("shared"))
            await asyncio.sleep(6 * INTERVAL)
            assert not unread.done(), "the second edge still has a reader"
        await asyncio.wait_for(unread, 2)


async def test_an_edge_fallen_silent_is_forgotten_after_eight_intervals(
    server: NatsServer,
) -> None:
    key = reader_key("s")
    async with await nats.connect(server.url) as nc, watch(server) as readers:
        interest = Interest(nc, INTERVAL)
        announcing = asyncio.create_task(interest.announce())
        with interest.hold("s"):
            await wait_until(lambda: readers.is_read(key), 2)
            announcing.cancel()
            silent = await wait_until(lambda: not readers.is_read(key), 5, interval=0.01)

    assert readers.edges == 0
    assert (SILENCES_TO_FORGET - 1) * INTERVAL <= silent <= 3 * SILENCES_TO_FORGET * INTERVAL


async def test_a_malformed_announcement_is_ignored(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    def ignored() -> list[str]:
        message = "ignoring a malformed announcement"
        return [r.subject for r in caplog.records if r.message == message]  # type: ignore[attr-defined]

    async with await nats.connect(server.url) as nc, watch(server) as readers:
        with caplog.at_level(logging.WARNING):
            await send(
                nc, "fine", reader_key("x").to_bytes(8, "little"), {"Streamer-Interval": "1"}
            )
            await send(nc, "no-interval", b"")
            await send(nc, "short", b"1234567", {"Streamer-Interval": "0.1"})
            await send(nc, "bad-interval", b"", {"Streamer-Interval": "0"})
            await wait_until(lambda: len(ignored()) == 3, 2)

        assert readers.is_read(reader_key("x"))
        assert readers.edges == 1
        assert sorted(ignored()) == [
            "streamer.readers.bad-interval",
            "streamer.readers.no-interval",
            "streamer.readers.short",
        ]


async def send(
    nc: Client, edge: str, payload: bytes, headers: dict[str, str] | None = None
) -> None:
    """Publish an announcement as edge `edge`."""
    await nc.publish(announcement_subject(edge), payload, headers=headers)
    await barrier(nc)


async def test_a_stream_read_on_two_edges_runs_until_the_last_reader_leaves(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    assert stack.edge is not None
    other = start_second_edge(stack)
    stream_id = new_id()
    try:
        leaving, staying = await asyncio.gather(
            collect(
                stack.target,
                stack.tls.cert,
                request(stream_id, count=40, interval_ms=50),
                stop_after=3,
            ),
            collect(
                f"127.0.0.1:{other.ready['port']}",
                stack.tls.cert,
                request(stream_id, count=40, interval_ms=50),
            ),
        )
    finally:
        other.stop()

    assert leaving.sequences == [1, 2, 3]
    staying.assert_complete(40)
    producer = stack.producers[0]
    await wait_until(lambda: len(log_events(producer, "job ended")) == 1, 5)
    assert len(log_events(producer, "job started")) == 1
    assert '"outcome": "completed"' in log_events(producer, "job ended")[0]


async def test_a_killed_edges_jobs_stop_once_it_is_forgotten(make_stack: StackFactory) -> None:
    stack = make_stack(edge={"EDGE_INTEREST_INTERVAL": "100ms"})
    assert stack.edge is not None
    edge = stack.edge
    stream_id = new_id()

    def kill_at_three(sequence: int) -> None:
        if sequence == 3:
            edge.signal(signal.SIGKILL)

    await collect(
        stack.target,
        stack.tls.cert,
        request(stream_id, count=1000, interval_ms=20),
        on_item=kill_at_three,
    )
    await wait_for_status(stack, stream_id, frames.STOPPED, 5.0)

    producer = stack.producers[0]
    await wait_until(lambda: len(log_events(producer, "job ended")) == 1, 2)
    assert '"outcome": "unread"' in log_events(producer, "job ended")[0]
    assert value(scrape(producer), "streamer_producer_edges_heard") == 0
