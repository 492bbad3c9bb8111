"""The basic contract: a stream arrives complete and in order, for every kind of caller."""

from __future__ import annotations

import asyncio

import grpc

from streamer_devstack.stack import Stack
from support import collect, log_events, new_id, request


async def test_default_job_streams_hundred_chunks(stack: Stack) -> None:
    result = await collect(stack.target, stack.tls.cert, request(new_id(), interval_ms=1))

    result.assert_complete(100)
    assert [data for _, data in result.items[:3]] == [b"DATA 0", b"DATA 1", b"DATA 2"]
    assert result.items[99] == (100, b"DATA 99")
    assert result.trailing["streamer-last-sequence"] == "100"


async def test_finished_stream_is_replayed_without_a_new_job(stack: Stack) -> None:
    stream_id = new_id()
    first = await collect(stack.target, stack.tls.cert, request(stream_id, count=5, interval_ms=1))
    again = await collect(stack.target, stack.tls.cert, request(stream_id, count=5, interval_ms=1))

    first.assert_complete(5)
    again.assert_complete(5)
    assert again.items == first.items
    assert len(log_events(stack.producers[0], "job started")) == 1


async def test_resume_after_sequence(stack: Stack) -> None:
    stream_id = new_id()
    partial = await collect(
        stack.target, stack.tls.cert, request(stream_id, count=20, interval_ms=20), stop_after=7
    )
    resumed_request = request(stream_id, count=20, interval_ms=20)
    resumed_request.after_sequence = 7
    resumed = await collect(stack.target, stack.tls.cert, resumed_request)

    assert partial.sequences == list(range(1, 8))
    resumed.assert_complete(20, after=7)
    assert resumed.items[0] == (8, b"DATA 7")


async def test_two_clients_on_one_id_share_one_job(stack: Stack) -> None:
    stream_id = new_id()
    first, second = await asyncio.gather(
        collect(stack.target, stack.tls.cert, request(stream_id, count=30, interval_ms=10)),
        collect(stack.target, stack.tls.cert, request(stream_id, count=30, interval_ms=10)),
    )

    first.assert_complete(30)
    second.assert_complete(30)
    assert len(log_events(stack.producers[0], "job started")) == 1


async def test_five_mib_chunk_is_split_across_consecutive_messages(stack: Stack) -> None:
    size = 5 * 1024 * 1024
    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=2, size=size))

    part = 256 * 1024
    parts = size // part
    result.assert_complete(2 * parts)
    first_chunk = b"".join(data for _, data in result.items[:parts])
    second_chunk = b"".join(data for _, data in result.items[parts : 2 * parts])
    assert first_chunk == b"DATA 0".ljust(size, b".")
    assert second_chunk == b"DATA 1".ljust(size, b".")
    assert all(len(data) <= part for _, data in result.items)


async def test_unknown_job_ends_aborted_with_the_reason(stack: Stack) -> None:
    req = request(new_id())
    req.job = "no-such-job"
    result = await collect(stack.target, stack.tls.cert, req)

    assert result.code == grpc.StatusCode.ABORTED
    assert "unknown job 'no-such-job'" in result.details
