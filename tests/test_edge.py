"""The edge's bounds, timeouts, cancellation, shutdown and TLS."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from nats.js.api import ConsumerConfig

from conftest import StackFactory
from streamer_common import frames
from streamer_common.proto import stream_pb2, stream_pb2_grpc
from streamer_common.settings import Duration
from streamer_common.topology import data_subject
from streamer_devstack import tls
from streamer_devstack.stack import Stack
from streamer_edge.server import server_options
from streamer_edge.settings import EdgeSettings
from support import (
    channel,
    collect,
    log_events,
    new_id,
    request,
    rss_bytes,
    start_second_edge,
    wait_for_status,
    wait_until,
)


async def test_client_cancel_stops_the_producer_within_two_seconds(stack: Stack) -> None:
    stream_id = new_id()
    result = await collect(
        stack.target, stack.tls.cert, request(stream_id, count=1000, interval_ms=20), stop_after=3
    )
    await wait_for_status(stack, stream_id, frames.STOPPED, 2.0)

    assert result.sequences == [1, 2, 3]
    await wait_until(lambda: len(log_events(stack.producers[0], "job ended")) == 1, 2)
    assert '"outcome": "unread"' in log_events(stack.producers[0], "job ended")[0]


async def test_one_millisecond_deadline_ends_the_call_and_the_job(stack: Stack) -> None:
    stream_id = new_id()
    result = await collect(
        stack.target, stack.tls.cert, request(stream_id, count=1000, interval_ms=20), timeout=0.001
    )

    assert result.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(2.0)
    producer = stack.producers[0]
    assert len(log_events(producer, "job started")) == len(log_events(producer, "job ended"))


async def test_stopped_stream_continues_where_it_stopped(stack: Stack) -> None:
    stream_id = new_id()
    await collect(
        stack.target, stack.tls.cert, request(stream_id, count=300, interval_ms=20), stop_after=5
    )
    await wait_for_status(stack, stream_id, frames.STOPPED, 5.0)

    result = await collect(
        stack.target, stack.tls.cert, request(stream_id, count=300, interval_ms=1)
    )

    result.assert_complete(300)
    assert [data for _, data in result.items[:-1]] == [f"DATA {i}".encode() for i in range(300)]
    assert len(log_events(stack.producers[0], "job started")) == 2


async def test_no_producer_ends_unavailable_after_the_first_chunk_timeout(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=0, edge={"EDGE_FIRST_CHUNK_TIMEOUT": "1s"})
    result = await collect(stack.target, stack.tls.cert, request(new_id()))

    assert result.code == grpc.StatusCode.UNAVAILABLE
    assert "no producer took the job" in result.details
    assert 1.0 <= result.seconds < 4.0


async def test_stalled_stream_ends_unavailable_with_the_last_sequence(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(edge={"EDGE_STALL_TIMEOUT": "1s"})
    req = request(new_id())
    req.job = "stall"
    result = await collect(stack.target, stack.tls.cert, req)

    assert result.items == [(1, b"only chunk")]
    assert result.code == grpc.StatusCode.UNAVAILABLE
    assert "stalled" in result.details
    assert result.trailing["streamer-last-sequence"] == "1"


async def test_gap_in_the_stream_is_data_loss_and_never_forwarded(make_stack: StackFactory) -> None:
    stack = make_stack(producers=0)
    stream_id = new_id()
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    after = frames.Position()
    for sequence in (1, 3):
        await js.publish(
            data_subject(stream_id),
            b"x",
            headers=frames.data_headers("broken-writer", sequence, [1], after),
        )
    await nc.close()

    result = await collect(stack.target, stack.tls.cert, request(stream_id))

    assert result.items == [(1, b"x")]
    assert result.code == grpc.StatusCode.DATA_LOSS
    assert "expected sequence 2, got 3" in result.details


async def test_a_message_repeating_sequences_is_data_loss_and_never_forwarded(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=0)
    stream_id = new_id()
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    after = frames.Position()
    for sequence, sizes in ((1, [1, 1, 1]), (2, [1])):  # the second should start at 4
        await js.publish(
            data_subject(stream_id),
            b"x" * len(sizes),
            headers=frames.data_headers("broken-writer", sequence, sizes, after),
        )
    await nc.close()

    result = await collect(stack.target, stack.tls.cert, request(stream_id))

    assert result.items == [(1, b"x"), (2, b"x"), (3, b"x")]
    assert result.code == grpc.StatusCode.DATA_LOSS
    assert "starts at sequence 2 after one that ended at 3" in result.details


async def test_streams_beyond_the_limit_are_resource_exhausted(make_stack: StackFactory) -> None:
    stack = make_stack(edge={"EDGE_MAX_STREAMS": "2"})
    first_items = asyncio.Event()
    calls = [
        asyncio.create_task(
            collect(
                stack.target,
                stack.tls.cert,
                request(new_id(), count=40, interval_ms=50),
                on_item=lambda _: first_items.set(),
            )
        )
        for _ in range(2)
    ]
    await first_items.wait()
    await asyncio.sleep(0.3)
    refused = await collect(stack.target, stack.tls.cert, request(new_id()))
    results = await asyncio.gather(*calls)

    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 2 streams" in refused.details
    for result in results:
        result.assert_complete(40)


@pytest.mark.parametrize("accept_timeout", [1, 300])
async def test_a_call_waits_for_a_blocked_event_loop_up_to_the_accept_timeout(
    accept_timeout: int,
) -> None:
    # The edge's server options on a real server whose event loop the test blocks, as a
    # saturated edge's is: meanwhile gRPC holds new calls unaccepted.
    settings = EdgeSettings(plaintext=True, accept_timeout=Duration(accept_timeout))

    class EndAtOnce(stream_pb2_grpc.StreamerServicer):
        async def Stream(self, request, context):  # type: ignore[no-untyped-def]
            yield stream_pb2.Data(sequence=0)

    server = grpc.aio.server(options=server_options(settings))
    stream_pb2_grpc.add_StreamerServicer_to_server(EndAtOnce(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    chan = grpc.insecure_channel(f"127.0.0.1:{port}")

    def call(delay: float) -> grpc.StatusCode:
        time.sleep(delay)
        try:
            list(stream_pb2_grpc.StreamerStub(chan).Stream(stream_pb2.Request(id="x"), timeout=20))
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    async def blocked_for(seconds: float) -> list[grpc.StatusCode]:
        """Two calls arrive as the loop blocks, one more near its end."""
        loop = asyncio.get_running_loop()
        delays = (0.2, 0.2, 0.2 + 0.8 * seconds)
        outcomes = [loop.run_in_executor(None, call, delay) for delay in delays]
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
        return list(await asyncio.gather(*outcomes))

    ok, cancelled = grpc.StatusCode.OK, grpc.StatusCode.CANCELLED
    try:
        assert await blocked_for(0.6) == [ok, ok, ok]
        *waited_long, waited_short = await blocked_for(2.5)
        assert await blocked_for(0.6) == [ok, ok, ok]
    finally:
        chan.close()
        await server.stop(None)
    assert waited_short == ok
    if accept_timeout == 1:
        assert cancelled in waited_long
    else:
        assert waited_long == [ok, ok]


async def test_calls_beyond_the_limit_plus_64_of_any_method_are_resource_exhausted(
    make_stack: StackFactory,
) -> None:
    # grpc.aio's own cap, EDGE_MAX_STREAMS + 64 calls of any method: health watches fill it.
    stack = make_stack(edge={"EDGE_MAX_STREAMS": "1"})
    async with channel(stack.target, stack.tls.cert) as chan:
        health = health_pb2_grpc.HealthStub(chan)
        watches = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(65)]
        await asyncio.gather(*(watch.read() for watch in watches))
        refused = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))
        for watch in watches:
            watch.cancel()
    served = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))

    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Concurrent RPC limit exceeded" in refused.details
    served.assert_complete(3)


async def test_slow_client_does_not_grow_edge_memory(make_stack: StackFactory) -> None:
    stack = make_stack()
    assert stack.edge is not None
    chunk = 256 * 1024
    count = 400  # 100 MiB in all, far beyond what the edge may buffer
    baseline = rss_bytes(stack.edge.pid)
    peak = 0

    async def read_slowly(sequence: int) -> None:
        nonlocal peak
        if sequence == 1:
            await wait_until(lambda: last_published(stack) >= count // 2, 30, 0.2)
            await asyncio.sleep(1.0)
        peak = max(peak, rss_bytes(stack.edge.pid))  # type: ignore[union-attr]

    result = await collect(
        stack.target,
        stack.tls.cert,
        request(new_id(), count=count, size=chunk, interval_ms=0),
        on_item=read_slowly,
        timeout=120,
    )

    result.assert_complete(count)
    assert peak - baseline < 48 * 1024 * 1024, f"edge grew by {(peak - baseline) >> 20} MiB"


def last_published(stack: Stack) -> int:
    """How many messages the data stream holds (the producer's progress)."""
    info = stack.nats.monitor("jsz?streams=1")
    streams = info["account_details"][0]["stream_detail"] if info.get("account_details") else []
    return sum(s["state"]["messages"] for s in streams if s["name"] == "STREAMER_DATA")


async def test_edge_sigterm_ends_streams_unavailable_and_resume_elsewhere(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(edge={"EDGE_SHUTDOWN_GRACE": "1s"})
    assert stack.edge is not None
    other = start_second_edge(stack)
    stream_id = new_id()
    edge = stack.edge

    def terminate_at_five(sequence: int) -> None:
        if sequence == 5:
            edge.signal(signal.SIGTERM)

    try:
        first = await collect(
            stack.target,
            stack.tls.cert,
            request(stream_id, count=40, interval_ms=100),
            on_item=terminate_at_five,
        )
        resumed_request = request(stream_id, count=40, interval_ms=100)
        resumed_request.after_sequence = int(first.trailing["streamer-last-sequence"])
        resumed = await collect(f"127.0.0.1:{other.ready['port']}", stack.tls.cert, resumed_request)
    finally:
        other.stop()

    assert first.code == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in first.details
    delivered = first.sequences
    assert delivered == list(range(1, len(delivered) + 1))
    resumed.assert_complete(40, after=len(delivered))
    assert edge.popen is not None
    assert edge.popen.wait(10) == 0


async def test_health_and_reflection(shared_stack: Stack) -> None:
    async with channel(shared_stack.target, shared_stack.tls.cert) as chan:
        health = health_pb2_grpc.HealthStub(chan)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        streamer = await health.Check(health_pb2.HealthCheckRequest(service="stream.Streamer"))
        reflection = reflection_pb2_grpc.ServerReflectionStub(chan)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = [s.name async for r in responses for s in r.list_services_response.service]

    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert streamer.status == health_pb2.HealthCheckResponse.SERVING
    assert "stream.Streamer" in services
    assert "grpc.health.v1.Health" in services


async def test_nats_loss_turns_health_not_serving_and_back(stack: Stack) -> None:
    async with channel(stack.target, stack.tls.cert) as chan:
        health = health_pb2_grpc.HealthStub(chan)

        async def status() -> int:
            return (await health.Check(health_pb2.HealthCheckRequest())).status  # type: ignore[no-any-return]

        stack.nats.kill()
        for _ in range(100):
            if await status() == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("health stayed SERVING without NATS")
        stack.nats.start()
        for _ in range(100):
            if await status() == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("health did not return to SERVING")


async def test_mutual_tls_requires_a_client_certificate(make_stack: StackFactory) -> None:
    stack0 = make_stack(producers=1)
    client = tls.client_pair(stack0.workdir / "tls", stack0.tls)
    stack0.stop()
    stack = make_stack(edge={"EDGE_TLS_CLIENT_CA_FILE": str(stack0.tls.cert)})
    # The second stack made its own server pair; trust it, present the client pair.
    without = await collect(stack.target, stack.tls.cert, request(new_id(), count=2, interval_ms=1))
    credentials = grpc.ssl_channel_credentials(
        stack.tls.cert.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )
    async with grpc.aio.secure_channel(stack.target, credentials) as chan:
        from streamer_common.proto import stream_pb2_grpc

        call = stream_pb2_grpc.StreamerStub(chan).Stream(request(new_id(), count=2, interval_ms=1))
        sequences = [data.sequence async for data in call]

    assert without.code == grpc.StatusCode.UNAVAILABLE
    assert sequences == [1, 2, 0]


async def test_nats_outage_beyond_the_bound_ends_in_flight_streams_unavailable(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(edge={"EDGE_NATS_OUTAGE_TIMEOUT": "1s"})

    def kill_nats_at_three(sequence: int) -> None:
        if sequence == 3:
            stack.nats.kill()

    result = await collect(
        stack.target,
        stack.tls.cert,
        request(new_id(), count=100, interval_ms=50),
        on_item=kill_nats_at_three,
    )

    assert result.code == grpc.StatusCode.UNAVAILABLE
    assert "NATS unreachable" in result.details
    delivered = result.sequences
    assert delivered == list(range(1, len(delivered) + 1))
    assert result.trailing["streamer-last-sequence"] == str(len(delivered))
    assert result.seconds < 10


async def test_a_call_beyond_the_data_streams_consumer_limit_is_refused_and_queues_no_job(
    make_stack: StackFactory,
) -> None:
    # Another edge's readers hold two of the three consumers the data stream allows.
    stack = make_stack(
        edge={"EDGE_DATA_MAX_CONSUMERS": "3", "EDGE_MAX_STREAMS": "3"},
        producer={"PRODUCER_DATA_MAX_CONSUMERS": "3"},
    )
    async with await nats.connect(stack.nats.url) as nc:
        js = nc.jetstream()
        for _ in range(2):
            config = ConsumerConfig(filter_subject="stream.other", inactive_threshold=60.0)
            await js.add_consumer("STREAMER_DATA", config)
        first_items = asyncio.Event()
        holding = asyncio.create_task(
            collect(
                stack.target,
                stack.tls.cert,
                request(new_id(), count=20, interval_ms=50),
                on_item=lambda _: first_items.set(),
            )
        )
        await first_items.wait()
        refused_id = new_id()
        refused = await collect(stack.target, stack.tls.cert, request(refused_id))
        held = await holding
        jobs = await js.stream_info("STREAMER_JOBS")

    held.assert_complete(20)
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "STREAMER_DATA is at its limit of consumers" in refused.details
    assert "DATA_MAX_CONSUMERS (3 here)" in refused.details
    assert jobs.state.last_seq == 1, "only the call that got a consumer queued a job"
    started = log_events(stack.producers[0], "job started")
    assert not [line for line in started if refused_id in line]
