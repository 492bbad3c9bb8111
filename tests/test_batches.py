"""StreamBatches: the same stream as Stream, with ready items coalesced into Batch messages."""

from __future__ import annotations

import subprocess
import sys

import grpc

from conftest import StackFactory
from streamer_devstack.stack import Stack
from support import collect, new_id, request


async def test_complete_stream_arrives_in_fewer_messages_than_items(shared_stack: Stack) -> None:
    stream_id = new_id()
    one_by_one = await collect(
        shared_stack.target, shared_stack.tls.cert, request(stream_id, count=500, interval_ms=0)
    )
    batched = await collect(
        shared_stack.target,
        shared_stack.tls.cert,
        request(stream_id, count=500, interval_ms=0),
        batches=True,
    )

    one_by_one.assert_complete(500)
    batched.assert_complete(500)
    assert batched.items == one_by_one.items
    assert batched.items[0] == (1, b"DATA 0")
    assert batched.messages <= 50, "a finished stream is replayed in a few large batches"
    assert batched.trailing["streamer-last-sequence"] == "500"


async def test_live_stream_is_complete_and_in_order(shared_stack: Stack) -> None:
    result = await collect(
        shared_stack.target,
        shared_stack.tls.cert,
        request(new_id(), count=40, interval_ms=5),
        batches=True,
    )

    result.assert_complete(40)
    assert result.items[39] == (40, b"DATA 39")
    assert result.trailing["streamer-last-sequence"] == "40"


async def test_resume_after_sequence(shared_stack: Stack) -> None:
    stream_id = new_id()
    await collect(
        shared_stack.target,
        shared_stack.tls.cert,
        request(stream_id, count=20, interval_ms=0),
        batches=True,
    )
    resumed_request = request(stream_id, count=20, interval_ms=0)
    resumed_request.after_sequence = 7
    resumed = await collect(
        shared_stack.target, shared_stack.tls.cert, resumed_request, batches=True
    )

    resumed.assert_complete(20, after=7)
    assert resumed.items[0] == (8, b"DATA 7")


async def test_batches_stay_within_the_byte_bound(make_stack: StackFactory) -> None:
    stack = make_stack(edge={"EDGE_MAX_BATCH_BYTES": "65536"})
    size = 20_000
    result = await collect(
        stack.target,
        stack.tls.cert,
        request(new_id(), count=30, size=size, interval_ms=0),
        batches=True,
    )

    result.assert_complete(30)
    assert all(len(data) == size for _, data in result.items[:-1])
    assert result.messages >= 11, "at most three 20 kB items fit in a 64 KiB batch"


async def test_failing_job_ends_aborted_after_the_items_before_it(make_stack: StackFactory) -> None:
    stack = make_stack(producer={"PRODUCER_MAX_ATTEMPTS": "2"})
    req = request(new_id())
    req.job = "always-fail"
    result = await collect(stack.target, stack.tls.cert, req, timeout=30, batches=True)

    assert result.code == grpc.StatusCode.ABORTED, (result.code, result.details)
    assert "disk on fire" in result.details
    assert result.items == [(1, b"before the failure")]
    assert result.trailing["streamer-last-sequence"] == "1"


async def test_bad_id_is_invalid_argument(shared_stack: Stack) -> None:
    result = await collect(
        shared_stack.target, shared_stack.tls.cert, request("no spaces"), batches=True
    )

    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    assert result.items == []
    assert result.trailing["streamer-last-sequence"] == "0"


def test_client_prints_the_batched_stream(shared_stack: Stack) -> None:
    stream_id = new_id()
    run = subprocess.run(
        [
            *(sys.executable, "-m", "streamer_client", "--batches", "--id", stream_id),
            *("--target", shared_stack.target, "--ca-file", str(shared_stack.tls.cert)),
            *("--authority", "localhost", "--param", "count=3", "--param", "interval_ms=0"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "Sequence[1]: DATA 0",
        "Sequence[2]: DATA 1",
        "Sequence[3]: DATA 2",
        "Stream is over",
    ]
