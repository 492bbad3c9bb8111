"""Producer and NATS faults: killed, terminated and failing workers, a restarted nats-server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from typing import Any

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import StackFactory
from promsupport import scrape, value
from streamer_common import frames
from streamer_common.proto import stream_pb2
from streamer_common.topology import data_subject
from streamer_devstack.processes import Process
from streamer_devstack.stack import Stack
from support import Result, channel, collect, log_events, new_id, request, wait_until


@dataclasses.dataclass
class Call:
    """A Stream call running in the background, and the sequences it has received so far."""

    task: asyncio.Task[Result]
    seen: list[int]

    @classmethod
    def start(cls, stack: Stack, req: stream_pb2.Request) -> Call:
        """Start the call; items are recorded as they arrive."""
        seen: list[int] = []
        task = asyncio.create_task(
            collect(stack.target, stack.tls.cert, req, timeout=60, on_item=seen.append)
        )
        return cls(task, seen)

    async def received(self, count: int) -> None:
        """Wait until `count` items arrived; fail at once if the call ended before."""
        await wait_until(lambda: len(self.seen) >= count or self.task.done(), 15)
        assert len(self.seen) >= count, (self.seen, self.task.result())

    async def result(self) -> Result:
        """What the client received once the call ended."""
        return await asyncio.wait_for(self.task, 30)


def job_events(process: Process, message: str, stream_id: str) -> list[dict[str, Any]]:
    """Parsed log entries `message` of `process` about `stream_id`."""
    entries = [json.loads(line) for line in log_events(process, message)]
    return [entry for entry in entries if entry.get("stream_id") == stream_id]


def attempts(process: Process, stream_id: str) -> list[int]:
    """The attempt number of every "job started" of `process` for `stream_id`."""
    return [entry["attempt"] for entry in job_events(process, "job started", stream_id)]


def outcomes(process: Process, stream_id: str) -> list[str]:
    """The outcome of every "job ended" of `process` for `stream_id`."""
    return [entry["outcome"] for entry in job_events(process, "job ended", stream_id)]


def produced(count: int) -> list[tuple[int, bytes]]:
    """What the `produce` handler's stream of `count` chunks looks like, end marker included."""
    return [*((index + 1, f"DATA {index}".encode()) for index in range(count)), (0, b"")]


def job_request(stream_id: str, job: str) -> stream_pb2.Request:
    """A Request for the test handler `job`."""
    req = request(stream_id)
    req.job = job
    return req


async def test_producer_killed_mid_job_is_resumed_by_a_new_one(make_stack: StackFactory) -> None:
    stack = make_stack(producer={"PRODUCER_ACK_WAIT": "2s"})
    stream_id = new_id()
    call = Call.start(stack, request(stream_id, count=40, interval_ms=50))
    await call.received(10)
    killed = stack.producers[0]
    killed.kill()
    replacement = await asyncio.to_thread(stack.add_producer)
    result = await call.result()

    result.assert_complete(40)
    assert result.items == produced(40)
    assert attempts(killed, stream_id) == [1]
    assert outcomes(killed, stream_id) == [], "the job had ended before the kill"
    assert attempts(replacement, stream_id) == [2]


async def test_a_producer_stalled_past_the_ack_wait_is_fenced_off_when_it_wakes(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=2, producer={"PRODUCER_ACK_WAIT": "2s"})
    stream_id = new_id()
    call = Call.start(stack, request(stream_id, count=80, interval_ms=50))
    await call.received(10)
    (stalled,) = [p for p in stack.producers if attempts(p, stream_id)]
    (other,) = [p for p in stack.producers if p is not stalled]
    stalled.signal(signal.SIGSTOP)  # a long pause: its job goes to the other after the ack wait
    try:
        await wait_until(lambda: attempts(other, stream_id) == [2], 15)
        await call.received(len(call.seen) + 5)
    finally:
        stalled.signal(signal.SIGCONT)
    result = await call.result()

    result.assert_complete(80)
    assert result.items == produced(80)
    # Woken, it writes nothing more: its next publish finds the other's message last.
    await wait_until(lambda: outcomes(stalled, stream_id) == ["lost"], 10)
    await wait_until(lambda: outcomes(other, stream_id) == ["completed"], 10)


async def test_job_longer_than_the_ack_wait_is_not_redelivered(make_stack: StackFactory) -> None:
    stack = make_stack(producer={"PRODUCER_ACK_WAIT": "1s"})
    stream_id = new_id()
    result = await collect(
        stack.target, stack.tls.cert, request(stream_id, count=30, interval_ms=100)
    )

    result.assert_complete(30)
    assert result.seconds > 2.5, "the job did not outlast the ack wait"
    producer = stack.producers[0]
    assert attempts(producer, stream_id) == [1]
    await wait_until(lambda: outcomes(producer, stream_id) == ["completed"], 5)


async def test_always_failing_handler_ends_aborted_within_a_bound(make_stack: StackFactory) -> None:
    stack = make_stack(producer={"PRODUCER_MAX_ATTEMPTS": "3"})
    stream_id = new_id()
    result = await collect(
        stack.target, stack.tls.cert, job_request(stream_id, "always-fail"), timeout=30
    )

    assert result.code == grpc.StatusCode.ABORTED, (result.code, result.details)
    assert "disk on fire" in result.details
    assert result.seconds < 10
    assert result.items == [(1, b"before the failure")]
    assert result.trailing["streamer-last-sequence"] == "1"
    assert attempts(stack.producers[0], stream_id) == [1, 2, 3]


@pytest.mark.parametrize(
    ("job", "message", "items"),
    [
        (
            "yields-text",
            "the job handler yielded a str, not bytes, as chunk 2",
            [(1, b"bytes first")],
        ),
        (
            "returns-bytes",
            "the job handler returned a coroutine, not an async iterator of bytes: make it an "
            "async generator",
            [],
        ),
    ],
)
async def test_a_handlers_mistake_ends_aborted_at_once_after_the_chunks_before_it(
    make_stack: StackFactory, job: str, message: str, items: list[tuple[int, bytes]]
) -> None:
    stack = make_stack()
    stream_id = new_id()
    result = await collect(stack.target, stack.tls.cert, job_request(stream_id, job), timeout=30)

    assert result.code == grpc.StatusCode.ABORTED, (result.code, result.details)
    assert f"job '{job}' failed: {message}" in result.details
    assert result.items == items
    producer = stack.producers[0]
    assert attempts(producer, stream_id) == [1], "a retry would only repeat it"
    assert "was never awaited" not in producer.log.read_text()


async def test_retry_resumes_after_the_chunks_already_published(make_stack: StackFactory) -> None:
    stack = make_stack()
    stream_id = new_id()
    result = await collect(stack.target, stack.tls.cert, job_request(stream_id, "fail-once"))

    result.assert_complete(6)
    assert result.items[:-1] == [(index + 1, f"chunk {index}".encode()) for index in range(6)]
    assert attempts(stack.producers[0], stream_id) == [1, 2]


async def test_retry_resumes_after_chunks_published_together(make_stack: StackFactory) -> None:
    stack = make_stack()
    stream_id = new_id()
    result = await collect(stack.target, stack.tls.cert, job_request(stream_id, "fail-once-burst"))

    result.assert_complete(100)
    assert result.items[:-1] == [(index + 1, f"chunk {index}".encode()) for index in range(100)]
    assert attempts(stack.producers[0], stream_id) == [1, 2]
    nc = await nats.connect(stack.nats.url)
    try:
        first = await nc.jetstream().get_msg(
            "STREAMER_DATA", seq=1, subject=data_subject(stream_id), next=True
        )
    finally:
        await nc.close()
    assert frames.SIZES in (first.headers or {}), "the burst was not published together"


async def test_failed_stream_is_retried_when_a_client_asks_again(make_stack: StackFactory) -> None:
    stack = make_stack(producer={"PRODUCER_MAX_ATTEMPTS": "3"})
    stream_id = new_id()
    producer = stack.producers[0]
    first = await collect(
        stack.target, stack.tls.cert, job_request(stream_id, "always-fail"), timeout=30
    )
    assert first.code == grpc.StatusCode.ABORTED, (first.code, first.details)
    assert attempts(producer, stream_id) == [1, 2, 3]

    again = await collect(
        stack.target, stack.tls.cert, job_request(stream_id, "always-fail"), timeout=30
    )

    assert again.code == grpc.StatusCode.ABORTED, (again.code, again.details)
    assert "disk on fire" in again.details
    assert again.items == [(1, b"before the failure")]
    assert attempts(producer, stream_id) == [1, 2, 3, 1, 2, 3]


async def test_producer_sigterm_releases_the_job_to_another(make_stack: StackFactory) -> None:
    grace = 1.0
    stack = make_stack(producers=2, producer={"PRODUCER_SHUTDOWN_GRACE": f"{grace:g}s"})
    stream_id = new_id()
    call = Call.start(stack, request(stream_id, count=80, interval_ms=50))
    await call.received(10)
    (owner,) = [p for p in stack.producers if attempts(p, stream_id)]
    (other,) = [p for p in stack.producers if p is not owner]
    owner.signal(signal.SIGTERM)
    await wait_until(lambda: not owner.alive(), grace + 5)
    result = await call.result()

    result.assert_complete(80)
    assert result.items == produced(80)
    assert owner.popen is not None
    assert owner.popen.returncode == 0
    assert outcomes(owner, stream_id)[0] == "released"
    await wait_until(lambda: outcomes(other, stream_id)[-1:] == ["completed"], 5)
    # A nak'ed job comes back as a redelivery; a new job message would start at attempt 1.
    assert attempts(other, stream_id)[0] >= 2


async def test_producer_after_sigterm_takes_no_new_job(make_stack: StackFactory) -> None:
    stack = make_stack()
    dying = stack.producers[0]
    dying.signal(signal.SIGTERM)
    stream_id = new_id()
    # Queued while the dying producer's last pull requests are still open.
    call = Call.start(stack, request(stream_id, count=20, interval_ms=10))
    await wait_until(lambda: not dying.alive(), 10)
    successor = await asyncio.to_thread(stack.add_producer)
    result = await call.result()

    result.assert_complete(20)
    assert attempts(dying, stream_id) == []
    assert dying.popen is not None
    assert dying.popen.returncode == 0
    assert attempts(successor, stream_id)


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_nats_server_restarted_mid_stream(make_stack: StackFactory, how: str) -> None:
    stack = make_stack()
    stream_id = new_id()
    call = Call.start(stack, request(stream_id, count=60, interval_ms=50))
    await call.received(10)
    getattr(stack.nats, how)()
    received_at_outage = len(call.seen)
    await asyncio.sleep(1.0)  # the outage: nobody can reach NATS for a second
    await asyncio.to_thread(stack.nats.start)
    result = await call.result()

    assert received_at_outage < 60, "the stream had finished before NATS went down"
    result.assert_complete(60)
    assert result.items == produced(60)


async def test_publish_unanswered_in_an_outage_is_retried_and_counted(
    make_stack: StackFactory,
) -> None:
    # Longer than the producer's 2 s publish timeout: the publish in flight goes unanswered.
    stack = make_stack()
    call = Call.start(stack, request(new_id(), count=60, interval_ms=50))
    await call.received(10)
    stack.nats.kill()
    await asyncio.sleep(3.0)
    await asyncio.to_thread(stack.nats.start)
    result = await call.result()

    result.assert_complete(60)
    assert result.items == produced(60)
    retried = sum(
        value(scrape(producer), "streamer_producer_publish_retries_total", reason="unavailable")
        for producer in stack.producers
    )
    assert retried > 0


async def edge_health(stack: Stack) -> int:
    """The edge's overall grpc.health.v1 status."""
    async with channel(stack.target, stack.tls.cert) as chan:
        response = await health_pb2_grpc.HealthStub(chan).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return int(response.status)


async def test_nats_down_at_call_time_is_unavailable_at_once(stack: Stack) -> None:
    stack.nats.kill()
    deadline = time.monotonic() + 10
    while await edge_health(stack) != health_pb2.HealthCheckResponse.NOT_SERVING:
        assert time.monotonic() < deadline, "edge still SERVING without NATS"
        await asyncio.sleep(0.05)

    result = await collect(stack.target, stack.tls.cert, request(new_id()), timeout=30)

    assert result.code == grpc.StatusCode.UNAVAILABLE, (result.code, result.details)
    assert "no connection to NATS" in result.details
    assert result.seconds < 2
    assert result.items == []
