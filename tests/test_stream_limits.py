"""Streams bounded in bytes: what some NATS accounts require, and what a full stream does."""

from __future__ import annotations

import asyncio

import grpc
import nats
import pytest

from conftest import StackFactory
from promsupport import scrape, value
from streamer_devstack.processes import StartError
from support import collect, log_events, new_id, request, wait_for_status

# Every client lands in an account that refuses streams without a byte limit.
ACCOUNT_REQUIRING_LIMITS = """
no_auth_user: app
accounts {
  APP {
    jetstream { max_file: 1G, max_mem: 256M, max_bytes_required: true }
    users [ { user: app, password: app } ]
  }
}
"""

LIMITS = {"DATA_MAX_BYTES": str(64 * 1024 * 1024), "JOBS_MAX_BYTES": str(1024 * 1024)}


def limited(prefix: str, **more: str) -> dict[str, str]:
    """The byte limits (and `more`) as one service's settings."""
    return {f"{prefix}_{name}": value for name, value in {**LIMITS, **more}.items()}


def test_an_account_requiring_limits_refuses_to_start_without_them_saying_what_to_set(
    make_stack: StackFactory,
) -> None:
    with pytest.raises(StartError) as error:
        make_stack(nats_config=ACCOUNT_REQUIRING_LIMITS)

    assert (
        "JetStream refused to create stream STREAMER_DATA: account requires a stream config "
        "to have max bytes set. The NATS account requires a byte limit: set DATA_MAX_BYTES "
        "and JOBS_MAX_BYTES"
    ) in str(error.value)
    assert "Traceback" not in str(error.value)


async def test_with_limits_set_the_streams_are_bounded_and_serve(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        nats_config=ACCOUNT_REQUIRING_LIMITS,
        edge=limited("EDGE"),
        producer=limited("PRODUCER"),
    )

    async with await nats.connect(stack.nats.url) as nc:
        js = nc.jetstream()
        data = await js.stream_info("STREAMER_DATA")
        jobs = await js.stream_info("STREAMER_JOBS")
    assert data.config.max_bytes == 64 * 1024 * 1024
    assert jobs.config.max_bytes == 1024 * 1024
    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=5, size=1024))
    result.assert_complete(5)


def test_a_service_with_other_limits_refuses_to_start(make_stack: StackFactory) -> None:
    stack = make_stack(producer=limited("PRODUCER"), edge=limited("EDGE"))

    with pytest.raises(StartError) as error:
        stack.add_producer(PRODUCER_DATA_MAX_BYTES=str(32 * 1024 * 1024))

    assert "STREAMER_DATA exists with a different definition" in str(error.value)
    assert f"max_bytes={64 * 1024 * 1024}" in str(error.value)


async def test_chunks_discarded_from_a_full_data_stream_end_the_call_data_loss(
    make_stack: StackFactory,
) -> None:
    megabyte = str(1024 * 1024)
    stack = make_stack(
        edge={"EDGE_DATA_MAX_BYTES": megabyte},
        producer={"PRODUCER_DATA_MAX_BYTES": megabyte},
    )
    stream_id = new_id()

    async def stall_after_the_first(sequence: int) -> None:
        if sequence == 1:  # the rest is written, 16 times what the stream holds
            await wait_for_status(stack, stream_id, "end", 30)

    result = await collect(
        stack.target,
        stack.tls.cert,
        request(stream_id, count=16_000, size=1024, interval_ms=0),
        on_item=stall_after_the_first,
    )

    assert result.code == grpc.StatusCode.DATA_LOSS
    assert f"stream {stream_id}: expected sequence" in result.details
    delivered = [sequence for sequence in result.sequences if sequence]
    assert delivered == list(range(1, len(delivered) + 1))
    assert len(delivered) < 16_000


async def test_calls_past_a_full_jobs_stream_end_unavailable(make_stack: StackFactory) -> None:
    # No producer takes the jobs, so every call's job stays queued: a few fill 1 KiB.
    stack = make_stack(
        producers=0,
        edge={
            "EDGE_MAX_MESSAGE_BYTES": "1024",
            "EDGE_JOBS_MAX_BYTES": "1024",
            "EDGE_FIRST_CHUNK_TIMEOUT": "2s",
        },
    )

    calls = [collect(stack.target, stack.tls.cert, request(new_id(), count=1)) for _ in range(30)]
    results = await asyncio.gather(*calls)
    async with await nats.connect(stack.nats.url) as nc:
        queued = (await nc.jetstream().stream_info("STREAMER_JOBS")).state.messages

    # JetStream refuses a job past the limit with the code it gives a job already queued
    # ("maximum bytes exceeded" against "maximum messages per subject exceeded"); such a
    # call waited for its first chunk and blamed the producers.
    refused = [
        r for r in results if r.details == "cannot queue the job (maximum bytes exceeded); retry"
    ]
    assert 0 < queued < 30
    assert len(refused) == 30 - queued
    assert {r.code for r in results} == {grpc.StatusCode.UNAVAILABLE}


# Every client lands in an account whose JetStream may store 4 MiB on disk.
ACCOUNT_OF_4_MIB = """
no_auth_user: app
accounts {
  APP {
    jetstream { max_file: 4M, max_mem: 64M }
    users [ { user: app, password: app } ]
  }
}
"""


async def test_a_stream_past_the_accounts_storage_ends_aborted_saying_why(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(nats_config=ACCOUNT_OF_4_MIB)
    stream_id = new_id()

    result = await collect(
        stack.target, stack.tls.cert, request(stream_id, count=8000, size=1024, interval_ms=0)
    )

    assert result.code == grpc.StatusCode.ABORTED
    assert (
        "job 'produce' failed: JetStream refused to store its chunks (resource limits exceeded "
        "for account) after 5 attempts; retry to run it again from sequence"
    ) in result.details
    delivered = [sequence for sequence in result.sequences if sequence]
    assert delivered == list(range(1, len(delivered) + 1))
    assert 0 < len(delivered) < 8000
    producer = stack.producers[0]
    assert len(log_events(producer, "JetStream refused a publish")) == 5
    assert not log_events(producer, "job handler failed")
    metrics = scrape(producer)
    assert value(metrics, "streamer_producer_publishes_refused_total") == 5
    assert value(metrics, "streamer_producer_handler_errors_total", job="produce") == 0
