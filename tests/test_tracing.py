"""Traces: edge and producer processes export OTLP to a receiver this test runs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from conftest import StackFactory
from streamer_common import tracing
from streamer_common.proto import stream_pb2_grpc
from support import channel, log_events, new_id, request, wait_until

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@dataclasses.dataclass(frozen=True)
class Span:
    """One received span, flattened with its service and instrumentation scope."""

    service: str
    schema_url: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    events: list[str]


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """The OTLP/gRPC trace service, keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _plain(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans += [
                    self._span(resource["service.name"], scope_spans.schema_url, span)
                    for span in scope_spans.spans
                ]
        return trace_service_pb2.ExportTraceServiceResponse()

    @staticmethod
    def _span(service: str, schema_url: str, span: Any) -> Span:
        return Span(
            service,
            schema_url,
            span.name,
            span.kind,
            span.trace_id.hex(),
            span.span_id.hex(),
            span.parent_span_id.hex(),
            {a.key: _plain(a.value) for a in span.attributes},
            [event.name for event in span.events],
        )

    def named(self, name: str) -> Span:
        """The one span called `name`."""
        (span,) = [span for span in self.spans if span.name == name]
        return span


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    """An OTLP trace receiver on a free local port."""
    server = grpc.aio.server()
    servicer = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, port
    await server.stop(0)


def otel_env(port: int) -> dict[str, str]:
    """Export to the receiver, quickly, as the standard variables say."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


SPANS = (
    "stream.Streamer/Stream",
    "send streamer.jobs.{id}",
    "process streamer.jobs.{id}",
    "send stream.{id}",
    "process stream.{id}",
)


def assert_messaging(span: Span, operation: str, destination: str) -> None:
    assert span.attributes[tracing.MESSAGING_SYSTEM] == "nats"
    assert span.attributes[tracing.MESSAGING_OPERATION_TYPE] == operation
    assert span.attributes[tracing.MESSAGING_DESTINATION_NAME] == destination


async def test_one_trace_from_the_call_through_the_job_to_delivery(
    make_stack: StackFactory, receiver: tuple[Receiver, int]
) -> None:
    spans, port = receiver
    stack = make_stack(edge=otel_env(port), producer=otel_env(port))
    stream_id = new_id()
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    async with channel(stack.target, stack.tls.cert) as chan:
        call = stream_pb2_grpc.StreamerStub(chan).Stream(
            request(stream_id, count=5, interval_ms=1), metadata=(("traceparent", traceparent),)
        )
        sequences = [data.sequence async for data in call]
    assert sequences == [1, 2, 3, 4, 5, 0]
    await wait_until(lambda: {s.name for s in spans.spans} >= set(SPANS), 10, 0.1)

    server, job_send, job_process, chunk_send, delivery = map(spans.named, SPANS)
    assert {span.trace_id for span in spans.spans} == {CLIENT_TRACE}
    assert server.parent_id == CLIENT_SPAN
    assert job_send.parent_id == server.span_id
    assert job_process.parent_id == job_send.span_id
    assert chunk_send.parent_id == job_process.span_id
    assert delivery.parent_id == server.span_id
    assert [s.service for s in (server, job_send, job_process, chunk_send, delivery)] == [
        "streamer-edge",
        "streamer-edge",
        "streamer-producer",
        "streamer-producer",
        "streamer-edge",
    ]
    assert {span.schema_url for span in spans.spans} == {tracing.SCHEMA_URL}

    assert server.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "stream.Streamer",
        "rpc.method": "Stream",
        "rpc.grpc.status_code": 0,
    }
    assert_messaging(job_send, "send", f"streamer.jobs.{stream_id}")
    assert_messaging(job_process, "process", f"streamer.jobs.{stream_id}")
    assert job_process.attributes[tracing.MESSAGING_CONSUMER_GROUP_NAME] == "producers"
    assert job_process.attributes[tracing.OUTCOME] == "completed"
    assert_messaging(chunk_send, "send", f"stream.{stream_id}")
    assert chunk_send.attributes[tracing.CHUNKS] == 5
    assert chunk_send.attributes[tracing.MESSAGING_BATCH_MESSAGE_COUNT] >= 2  # chunks + end
    assert_messaging(delivery, "process", f"stream.{stream_id}")
    assert delivery.attributes[tracing.CHUNKS] == 5
    assert delivery.events == ["first chunk delivered"]
    # [SPAN_KIND_SERVER, PRODUCER, CONSUMER, PRODUCER, CONSUMER]
    assert [span.kind for span in (server, job_send, job_process, chunk_send, delivery)] == [
        2,
        4,
        5,
        4,
        5,
    ]

    assert stack.edge is not None
    (ended,) = [json.loads(line) for line in log_events(stack.edge, "stream ended")]
    assert (ended["trace_id"], ended["span_id"]) == (CLIENT_TRACE, server.span_id)


async def test_a_resumed_call_has_a_span_for_its_search(
    make_stack: StackFactory, receiver: tuple[Receiver, int]
) -> None:
    spans, port = receiver
    stack = make_stack(edge=otel_env(port))
    # 40 chunks of 256 KiB are 40 messages: enough for the edge to search.
    stream = request(new_id(), count=40, size=256 * 1024, interval_ms=0)
    async with channel(stack.target, stack.tls.cert) as chan:
        stub = stream_pb2_grpc.StreamerStub(chan)
        assert len([data async for data in stub.Stream(stream)]) == 41
        resumed = request(stream.id, count=40, size=256 * 1024, interval_ms=0)
        resumed.after_sequence = 38
        assert [data.sequence async for data in stub.Stream(resumed)] == [39, 40, 0]

    def parents() -> list[Span]:
        """The server spans received that are the search span's parent."""
        found = [s for s in spans.spans if s.name == "resume search"]
        return [s for s in spans.spans for f in found if s.span_id == f.parent_id]

    # The search span ends, and may be exported, before the call's server span.
    await wait_until(lambda: bool(parents()), 10, 0.1)
    search = spans.named("resume search")
    (server,) = parents()
    assert server.name == "stream.Streamer/Stream"
    assert search.attributes[tracing.STREAM_ID] == stream.id
    assert search.attributes[tracing.AFTER_SEQUENCE] == 38
    assert search.attributes[tracing.RESUME_STREAM_SEQUENCE] > 1  # not the subject's start


def test_without_an_endpoint_there_is_no_tracer_provider() -> None:
    assert tracing.setup_tracing("streamer-edge", {}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert tracing.setup_tracing("streamer-edge", {**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert (
        tracing.setup_tracing("streamer-edge", {**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    )
    with pytest.raises(tracing.TracingError, match="OTLP over gRPC only"):
        tracing.setup_tracing(
            "streamer-edge", {**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        )
