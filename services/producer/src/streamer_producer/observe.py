"""What a producer records about each job attempt: its metrics and its spans."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Protocol

from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from streamer_common import frames, tracing
from streamer_common.metrics import ProducerMetrics
from streamer_common.topology import JOBS_CONSUMER, data_subject, job_subject
from streamer_producer.handlers import Registry

UNKNOWN_JOB = "unknown"
_FAILING = {"failed", "retry"}


class Published(Protocol):
    """What a stream writer has published so far."""

    published_items: int
    published_bytes: int
    published_messages: int


@dataclasses.dataclass
class ObservedJob:
    """Filled in by the runner: how the attempt ended."""

    outcome: str = "released"


class JobTelemetry:
    """Metrics and spans of the job attempts one producer runs."""

    def __init__(self, metrics: ProducerMetrics, tracer: trace.Tracer, registry: Registry) -> None:
        self.metrics = metrics
        self._tracer = tracer
        self._registry = registry

    def label(self, job: str) -> str:
        """The `job` label: a registered handler's name, never what a client typed."""
        return job if self._registry.get(job) is not None else UNKNOWN_JOB

    @contextlib.contextmanager
    def running(self, msg: Msg, job: frames.Job, attempt: int) -> Iterator[ObservedJob]:
        """A CONSUMER span parented on the job message's context, and the job metrics."""
        name = self.label(job.job)
        metrics = self.metrics
        metrics.jobs_started.labels(name).inc()
        metrics.jobs_in_flight.inc()
        began = time.monotonic()
        observed = ObservedJob()
        headers = msg.headers or {}
        with self._tracer.start_as_current_span(
            f"process {job_subject('{id}')}",
            context=tracing.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                **tracing.messaging("process", "process", msg.subject, job_subject("{id}")),
                tracing.MESSAGING_CONSUMER_GROUP_NAME: JOBS_CONSUMER,
                tracing.MESSAGING_MESSAGE_ID: headers.get(frames.MSG_ID, ""),
                tracing.MESSAGING_MESSAGE_BODY_SIZE: len(msg.data),
                tracing.STREAM_ID: job.id,
                tracing.JOB: job.job,
                tracing.ATTEMPT: attempt,
            },
        ) as span:
            try:
                yield observed
            finally:
                metrics.jobs_in_flight.dec()
                metrics.jobs_ended.labels(name, observed.outcome).inc()
                metrics.job_duration.labels(name).observe(time.monotonic() - began)
                span.set_attribute(tracing.OUTCOME, observed.outcome)
                if observed.outcome in _FAILING:
                    span.set_status(Status(StatusCode.ERROR, f"job attempt {observed.outcome}"))

    @contextlib.contextmanager
    def publishing(self, stream_id: str, writer: Published) -> Iterator[None]:
        """One PRODUCER span for all the messages of an attempt, not one per chunk."""
        with self._tracer.start_as_current_span(
            f"send {data_subject('{id}')}",
            kind=SpanKind.PRODUCER,
            attributes={
                **tracing.messaging(
                    "send", "publish", data_subject(stream_id), data_subject("{id}")
                ),
                tracing.STREAM_ID: stream_id,
            },
        ) as span:
            try:
                yield
            finally:
                span.set_attributes(
                    {
                        tracing.MESSAGING_BATCH_MESSAGE_COUNT: writer.published_messages,
                        tracing.CHUNKS: writer.published_items,
                        tracing.BYTES: writer.published_bytes,
                    }
                )

    def handler_error(self, job: str) -> None:
        """Count an exception raised by the handler of `job`."""
        self.metrics.handler_errors.labels(self.label(job)).inc()
