"""A known workload through the real edge and producer moves /metrics by exactly that much."""

from __future__ import annotations

import asyncio
import json
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import StackFactory
from promsupport import Samples, delta, grpc_labels, publish_gap, scrape, settled, value
from streamer_common.metrics import GRPC_CODES
from streamer_devstack.stack import Stack
from support import Result, channel, collect, log_events, new_id, request, wait_until

SIZE = 64  # every `produce` chunk is padded to this many bytes
FAIL_CHUNK = b"before the failure"
STALL_CHUNK = b"only chunk"


def call(stack: Stack, req: object, **options: object) -> asyncio.Future[Result]:
    """Start one Stream call against the stack."""
    return asyncio.ensure_future(collect(stack.target, stack.tls.cert, req, **options))  # type: ignore[arg-type]


async def workload(stack: Stack) -> dict[str, Result]:
    """Every kind of outcome once; returns what each client saw."""
    replayed = new_id()
    results = dict(
        zip(
            ("ten", "twenty", "thirty"),
            await asyncio.gather(
                *(
                    call(stack, request(stream_id, count=count, interval_ms=1, size=SIZE))
                    for stream_id, count in ((replayed, 10), (new_id(), 20), (new_id(), 30))
                )
            ),
            strict=True,
        )
    )
    results["replay"] = await call(stack, request(replayed, count=10, size=SIZE))
    resume = request(replayed, count=10, size=SIZE)
    resume.after_sequence = 5
    results["resume"] = await call(stack, resume)
    results["batches"] = await call(
        stack, request(new_id(), count=12, interval_ms=0, size=SIZE), batches=True
    )
    results["invalid"] = await call(stack, request("not a valid id"))
    unknown = request(new_id())
    unknown.job = "no-such-job"
    results["unknown"] = await call(stack, unknown)
    failing = request(new_id())
    failing.job = "always-fail"
    results["failing"] = await call(stack, failing)
    stalling = request(new_id())
    stalling.job = "stall"
    results["cancelled"] = await call(stack, stalling, stop_after=1)
    gap = new_id()
    await publish_gap(stack, gap)
    lossy = request(gap)
    lossy.job = "no-such-job"
    results["data_loss"] = await call(stack, lossy)
    return results


def check_clients(results: dict[str, Result]) -> None:
    """The workload did what the metrics are compared with."""
    for name, count in (("ten", 10), ("twenty", 20), ("thirty", 30), ("replay", 10)):
        results[name].assert_complete(count)
    results["resume"].assert_complete(10, after=5)
    results["batches"].assert_complete(12)
    codes = {name: result.code.name for name, result in results.items()}
    ok = ("ten", "twenty", "thirty", "replay", "resume", "batches")
    assert codes == {
        **dict.fromkeys(ok, "OK"),
        "invalid": "INVALID_ARGUMENT",
        "unknown": "ABORTED",
        "failing": "ABORTED",
        "cancelled": "CANCELLED",
        "data_loss": "DATA_LOSS",
    }
    assert results["failing"].items == [(1, FAIL_CHUNK)]
    assert results["cancelled"].items == [(1, STALL_CHUNK)]
    assert results["data_loss"].items == [(1, b"x")]


def check_grpc(before: Samples, after: Samples, results: dict[str, Result]) -> None:
    stream, batches = grpc_labels("Stream"), grpc_labels("StreamBatches")
    calls = len(results) - 1
    assert delta(before, after, "grpc_server_started_total", **stream) == calls
    assert delta(before, after, "grpc_server_msg_received_total", **stream) == calls
    assert delta(before, after, "grpc_server_handling_seconds_count", **stream) == calls
    handled = {
        code: delta(before, after, "grpc_server_handled_total", **stream, grpc_code=code)
        for code in GRPC_CODES.values()
    }
    assert {code: n for code, n in handled.items() if n} == {
        "OK": 5,
        "InvalidArgument": 1,
        "Aborted": 2,
        "Canceled": 1,
        "DataLoss": 1,
    }
    # Every Data written, end markers included: what the clients received, as no call was
    # cut off while items were in flight.
    sent = sum(len(r.items) for name, r in results.items() if name != "batches")
    assert delta(before, after, "grpc_server_msg_sent_total", **stream) == sent
    assert (
        delta(before, after, "grpc_server_msg_sent_total", **batches) == results["batches"].messages
    )
    assert delta(before, after, "grpc_server_handled_total", **batches, grpc_code="OK") == 1


def check_streams(before: Samples, after: Samples) -> None:
    produced = 10 + 20 + 30 + 10 + 5 + 12
    chunks = produced + 3  # the failing handler's, the stalled one's, and the gap's first
    assert delta(before, after, "streamer_edge_chunks_delivered_total") == chunks
    assert (
        delta(before, after, "streamer_edge_bytes_delivered_total")
        == produced * SIZE + len(FAIL_CHUNK) + len(STALL_CHUNK) + 1
    )
    ended = {
        code: delta(before, after, "streamer_edge_streams_ended_total", grpc_code=code)
        for code in GRPC_CODES.values()
    }
    assert {code: n for code, n in ended.items() if n} == {
        "OK": 6,
        "Aborted": 2,
        "Canceled": 1,
        "DataLoss": 1,
    }
    assert delta(before, after, "streamer_edge_time_to_first_chunk_seconds_count") == 9
    assert delta(before, after, "streamer_edge_data_loss_total") == 1
    assert delta(before, after, "streamer_edge_resumes_total") == 1
    # The replay and the resume found a finished stream; the gap's call found data written.
    assert delta(before, after, "streamer_edge_late_attaches_total") == 3
    assert value(after, "streamer_edge_streams_active") == 0
    assert value(after, "streamer_edge_streams_limit") == 1000
    # Exported from the start, so a rate of it reads 0 until relaying saturates the edge.
    assert ("streamer_edge_relay_steps_held_total", frozenset()) in before
    latency = delta(before, after, "streamer_edge_chunk_latency_seconds_count")
    # Only messages published after their call began: replays and the injected gap are old.
    assert 6 <= latency <= 10 + 20 + 30 + 12 + 2


def check_producer(before: Samples, after: Samples) -> None:
    started = {
        job: delta(before, after, "streamer_producer_jobs_started_total", job=job)
        for job in ("produce", "always-fail", "stall", "unknown")
    }
    assert started == {"produce": 4, "always-fail": 5, "stall": 1, "unknown": 2}
    outcomes = {
        (dict(labels)["job"], dict(labels)["outcome"]): after[name, labels]
        - before.get((name, labels), 0.0)
        for name, labels in after
        if name == "streamer_producer_jobs_ended_total"
    }
    assert {key: n for key, n in outcomes.items() if n} == {
        ("produce", "completed"): 4,
        ("always-fail", "retry"): 4,
        ("always-fail", "failed"): 1,
        ("stall", "unread"): 1,
        ("unknown", "failed"): 2,
    }
    assert delta(before, after, "streamer_producer_handler_errors_total", job="always-fail") == 5
    assert delta(before, after, "streamer_producer_job_duration_seconds_count", job="stall") == 1
    produced = 10 + 20 + 30 + 12
    assert delta(before, after, "streamer_producer_chunks_published_total") == produced + 2
    assert delta(before, after, "streamer_producer_bytes_published_total") == produced * SIZE + len(
        FAIL_CHUNK
    ) + len(STALL_CHUNK)
    # One message per chunk at least... and one end, error or stopped marker per attempt.
    assert delta(before, after, "streamer_producer_publish_seconds_count") >= 4 + 1 + 1 + 2
    assert value(after, "streamer_producer_jobs_in_flight") == 0
    assert value(after, "streamer_producer_job_slots") == 2
    assert value(after, "streamer_producer_edges_heard") == 1


async def test_workload_moves_metrics_by_exactly_what_it_did(make_stack: StackFactory) -> None:
    stack = make_stack(producer={"PRODUCER_MAX_ATTEMPTS": "5"})
    assert stack.edge is not None
    producer = stack.producers[0]
    edge_before, producer_before = scrape(stack.edge), scrape(producer)

    results = await workload(stack)
    await wait_until(
        lambda: (
            value(scrape(producer), "streamer_producer_jobs_in_flight") == 0
            and len(log_events(producer, "job ended")) == 12
        ),
        15,
        0.1,
    )
    await settled(stack.edge, edge_before, 1, **grpc_labels("StreamBatches"))
    edge_after = await settled(stack.edge, edge_before, len(results) - 1, **grpc_labels("Stream"))
    producer_after = scrape(producer)

    check_clients(results)
    check_grpc(edge_before, edge_after, results)
    check_streams(edge_before, edge_after)
    check_producer(producer_before, producer_after)
    for service in (stack.edge, producer):
        # Read from NATS at scrape time, at most once a second.
        await wait_until(lambda s=service: queue_is_empty(scrape(s)), 3, 0.2)  # type: ignore[misc]


def queue_is_empty(samples: Samples) -> bool:
    """The jobs consumer holds nothing, and the series exist."""
    names = ("streamer_jobs_pending", "streamer_jobs_ack_pending", "streamer_jobs_redelivered")
    return all(samples.get((name, frozenset())) == 0 for name in names)


async def test_health_checks_are_counted_as_unary_calls(shared_stack: Stack) -> None:
    assert shared_stack.edge is not None
    before = scrape(shared_stack.edge)
    async with channel(shared_stack.target, shared_stack.tls.cert) as chan:
        health = health_pb2_grpc.HealthStub(chan)
        for _ in range(3):
            await health.Check(health_pb2.HealthCheckRequest(service=""))
        with pytest.raises(grpc.aio.AioRpcError, match="NOT_FOUND"):
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    check = grpc_labels("Check", "grpc.health.v1.Health", "unary")
    after = await settled(shared_stack.edge, before, 4, **check)

    assert delta(before, after, "grpc_server_started_total", **check) == 4
    assert delta(before, after, "grpc_server_handled_total", **check, grpc_code="OK") == 3
    assert delta(before, after, "grpc_server_handled_total", **check, grpc_code="NotFound") == 1
    assert delta(before, after, "grpc_server_msg_sent_total", **check) == 3
    assert delta(before, after, "grpc_server_msg_received_total", **check) == 4


async def test_one_log_line_at_start_and_end_of_each_stream(shared_stack: Stack) -> None:
    assert shared_stack.edge is not None
    stream_id = new_id()
    result = await collect(
        shared_stack.target,
        shared_stack.tls.cert,
        request(stream_id, count=7, interval_ms=1, size=SIZE),
    )
    result.assert_complete(7)

    def lines(message: str) -> list[dict[str, object]]:
        assert shared_stack.edge is not None
        return [
            entry
            for entry in map(json.loads, log_events(shared_stack.edge, message))
            if entry.get("stream_id") == stream_id
        ]

    (started,) = lines("stream started")
    (ended,) = lines("stream ended")
    assert started["job"] == "produce"
    assert {key: ended[key] for key in ("job", "status", "chunks", "bytes")} == {
        "job": "produce",
        "status": "OK",
        "chunks": 7,
        "bytes": 7 * SIZE,
    }
    assert 0 < ended["time_to_first_chunk_s"] <= ended["duration_s"]  # type: ignore[operator]
    mentions = [
        line for line in shared_stack.edge.log.read_text().splitlines() if stream_id in line
    ]
    assert len(mentions) == 2, "nothing but the start and end lines, not a line per chunk"


@pytest.mark.parametrize("service", ["edge", "producer"])
async def test_a_stalled_event_loop_shows_as_loop_lag(
    make_stack: StackFactory, service: str
) -> None:
    stack = make_stack(producers=1)
    process = stack.edge if service == "edge" else stack.producers[0]
    assert process is not None
    lag = f"streamer_{service}_event_loop_lag_seconds"
    await asyncio.sleep(0.6)  # a couple of on-time observations first
    before = scrape(process)

    process.signal(signal.SIGSTOP)  # the loop stops, as a saturated one would, for 1.5 s
    await asyncio.sleep(1.5)
    process.signal(signal.SIGCONT)
    await asyncio.sleep(0.6)
    after = scrape(process)

    assert value(before, f"{lag}_count") >= 2
    assert value(before, f"{lag}_bucket", le="0.5") == value(before, f"{lag}_count")
    late = delta(before, after, f"{lag}_count") - delta(before, after, f"{lag}_bucket", le="1.0")
    assert late == 1  # the timer due while stopped ran over a second late, and only that one
