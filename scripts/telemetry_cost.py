"""What the telemetry adds per chunk, per NATS message and per call, in microseconds.

Runs the edge's and the producer's recording code in-process, without NATS or gRPC, with
tracing off (no provider: the no-op tracer) and on (an SDK provider whose exporter drops
spans), and prints one line per measurement: `uv run python scripts/telemetry_cost.py`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from streamer_common import frames
from streamer_common.logs import JsonFormatter
from streamer_common.metrics import EdgeMetrics, ProducerMetrics, new_registry
from streamer_common.natsio import StreamState
from streamer_edge.observe import StreamRecord, _CountingContext
from streamer_producer.handlers import Registry
from streamer_producer.observe import JobTelemetry

ROUNDS = 200_000


class Dropping(SpanExporter):
    """Accepts spans and forgets them: the cost of recording, not of shipping."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Context:
    """Stands in for grpc.aio's servicer context: a write that does nothing."""

    async def write(self, message: object) -> None:
        return None

    def code(self) -> None:
        return None

    def details(self) -> str:
        return ""

    def cancelled(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None


def microseconds(function: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Best of three, per call."""
    return min(timeit.repeat(function, number=rounds, repeat=3)) / rounds * 1e6


def drive(coroutine_function: Callable[[], Any]) -> Callable[[], None]:
    """A synchronous call that runs one coroutine to completion without an event loop."""

    def run() -> None:
        with contextlib.suppress(StopIteration):
            coroutine_function().send(None)

    return run


def per_message(tracer: trace.Tracer) -> dict[str, float]:
    edge = EdgeMetrics(new_registry(), 1000)
    record = StreamRecord(edge, tracer, "bench", "produce", 0)
    frame = frames.DataFrame(1, [b"x" * 100], time.time_ns())
    producer = ProducerMetrics(new_registry(), 2)
    context = Context()
    counting = _CountingContext(context, edge.grpc.msg_sent.labels("server_stream", "s", "m"))
    published = 0

    def edge_message() -> None:
        record.delivered(frame, 0, 1, time.monotonic())

    def producer_message() -> None:
        nonlocal published
        began = time.monotonic()
        producer.publish_seconds.observe(time.monotonic() - began)
        producer.chunks_published.inc(1)
        producer.bytes_published.inc(100)
        published += 1

    bare = microseconds(drive(lambda: context.write(None)))
    counted = microseconds(drive(lambda: counting.write(None)))
    return {
        "edge, per NATS message relayed (StreamRecord.delivered)": microseconds(edge_message),
        "edge, per Data written (counting write minus bare write)": counted - bare,
        "producer, per NATS message published": microseconds(producer_message),
    }


def per_call(tracer: trace.Tracer) -> float:
    """A Stream call's record, job publish and delivery spans, and its two JSON log lines."""
    edge = EdgeMetrics(new_registry(), 1000)
    state = StreamState(frames.Position(), None, "", 0)
    context = Context()

    def call() -> None:
        record = StreamRecord(edge, tracer, "bench", "produce", 0)
        with record.observing(context):
            record.admitted()
            with record.publishing_job({}), record.delivering(state):
                pass

    return microseconds(call, rounds=20_000)


def per_job(tracer: trace.Tracer) -> float:
    telemetry = JobTelemetry(ProducerMetrics(new_registry(), 2), tracer, Registry())

    class Msg:
        subject = "streamer.jobs.bench"
        data = b"{}"
        headers = None

    class Writer:
        published_items = published_bytes = published_messages = 0

    job = frames.Job("bench", "produce", {})

    def run() -> None:
        message: Any = Msg()
        with telemetry.running(message, job, 1), telemetry.publishing("bench", Writer()):
            pass

    return microseconds(run, rounds=20_000)


def main() -> None:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - for the process
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    tracers = {"tracing off": trace.NoOpTracer(), "tracing on": provider.get_tracer("bench")}
    for name, value in per_message(tracers["tracing off"]).items():
        print(f"{name}: {value:.2f} us")
    for label, tracer in tracers.items():
        print(f"edge, per call, {label}: {per_call(tracer):.1f} us")
        print(f"producer, per job attempt, {label}: {per_job(tracer):.1f} us")


if __name__ == "__main__":
    main()
