"""Prometheus metrics of both services, each set registered on an injected CollectorRegistry.

Label values come from small fixed sets (gRPC codes and method names, job outcomes,
registered handler names): never a stream id or anything else a client chooses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import ClassVar

import grpc
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamer_common.topology import JOBS_CONSUMER

logger = logging.getLogger(__name__)

# go-grpc-middleware's default buckets end at 10s; streams run much longer.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
FIRST_CHUNK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200)
PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# grpc-go's names of the status codes, which go-grpc-middleware puts in `grpc_code`.
GRPC_CODES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

GRPC_TYPES = {
    (False, False): "unary",
    (True, False): "client_stream",
    (False, True): "server_stream",
    (True, True): "bidi_stream",
}


def new_registry() -> CollectorRegistry:
    """The registry of one process, without the `_created` series Go clients do not have."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return CollectorRegistry()


class GrpcServerMetrics:
    """gRPC server metrics under go-grpc-middleware's names and labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received",
            "RPC stream messages received on the server.",
            labels,
            registry=registry,
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent",
            "gRPC stream messages sent on the server.",
            labels,
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            labels,
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )

    def initialize(self, methods: Iterable[tuple[str, str, str]]) -> None:
        """Create every series of `(grpc_type, service, method)` at zero, as go-grpc-middleware
        does, so that rates and ratios exist before the first call."""
        for labels in methods:
            self.started.labels(*labels)
            self.msg_received.labels(*labels)
            self.msg_sent.labels(*labels)
            self.handling_seconds.labels(*labels)
            for code in GRPC_CODES.values():
                self.handled.labels(*labels, code)


def recreated_counter(registry: CollectorRegistry, service: str) -> Counter:
    """JetStream streams and consumers the service found missing while running and created."""
    return Counter(
        f"streamer_{service}_jetstream_recreated",
        f"JetStream streams and consumers the {service} found missing and created again "
        "(a nats-server restarted without its store, a stream removed): what they held is gone.",
        ("name",),
        registry=registry,
    )


class LoopLag:
    """How late the event loop runs a timer, which is how long its turns take when busy.

    Everything a service does waits for its loop; in the edge grpc.aio also starts only one
    new call per turn or two, so long turns mean slowly admitted calls as well.
    """

    INTERVAL = 0.25

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.histogram = Histogram(
            f"streamer_{service}_event_loop_lag_seconds",
            f"How late the {service}'s event loop ran a timer due every {self.INTERVAL:g}s.",
            buckets=LOOP_LAG_BUCKETS,
            registry=registry,
        )

    async def watch(self) -> None:
        """Measure until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.INTERVAL
            await asyncio.sleep(self.INTERVAL)
            self.histogram.observe(max(loop.time() - due, 0.0))


class EdgeMetrics:
    """Everything the grpc-edge measures: its gRPC server and the streams it relays."""

    def __init__(self, registry: CollectorRegistry, max_streams: int) -> None:
        self.grpc = GrpcServerMetrics(registry)
        self.streams_active = Gauge(
            "streamer_edge_streams_active",
            "Stream calls relaying data right now.",
            registry=registry,
        )
        self.streams_limit = Gauge(
            "streamer_edge_streams_limit",
            "Stream calls this edge admits at once (MAX_STREAMS).",
            registry=registry,
        )
        self.streams_limit.set(max_streams)
        self.loop_lag = LoopLag(registry, "edge")
        self.jetstream_recreated = recreated_counter(registry, "edge")
        self.asyncio_tasks = Gauge(
            "streamer_edge_asyncio_tasks",
            "asyncio tasks alive in the edge; steady when idle, so a leak shows as growth.",
            registry=registry,
        )
        # Read at scrape time, which runs on the edge's event loop.
        self.asyncio_tasks.set_function(lambda: len(asyncio.all_tasks()))
        self.streams_ended = Counter(
            "streamer_edge_streams_ended",
            "Admitted stream calls by how they ended (grpc-go's code name).",
            ("grpc_code",),
            registry=registry,
        )
        self.time_to_first_chunk = Histogram(
            "streamer_edge_time_to_first_chunk_seconds",
            "From the start of a stream call to the first Data message written to its client.",
            buckets=FIRST_CHUNK_BUCKETS,
            registry=registry,
        )
        self.chunk_latency = Histogram(
            "streamer_edge_chunk_latency_seconds",
            "From a producer publishing a NATS message of chunks to the edge having written them "
            "to a client; only messages published after the call began.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.chunks_delivered = Counter(
            "streamer_edge_chunks_delivered",
            "Data messages written to clients (end markers excluded).",
            registry=registry,
        )
        self.bytes_delivered = Counter(
            "streamer_edge_bytes_delivered", "Payload bytes written to clients.", registry=registry
        )
        self.resumes = Counter(
            "streamer_edge_resumes",
            "Stream calls that asked to resume (after_sequence > 0).",
            registry=registry,
        )
        self.late_attaches = Counter(
            "streamer_edge_late_attaches",
            "Stream calls that found their stream already written by a running or finished job.",
            registry=registry,
        )
        self.data_loss = Counter(
            "streamer_edge_data_loss",
            "Stream calls ended DATA_LOSS (a gap or a malformed message).",
            registry=registry,
        )
        self.relay_steps_held = Counter(
            "streamer_edge_relay_steps_held",
            "Relay steps that waited for a later turn of the event loop, the turn having run "
            "its budget: the edge is busy relaying, and its streams share it.",
            registry=registry,
        )
        self.slow_client = Counter(
            "streamer_edge_slow_client_events",
            "NATS messages whose chunks took a client over a second to accept.",
            registry=registry,
        )
        for code in GRPC_CODES.values():
            self.streams_ended.labels(code)


class ProducerMetrics:
    """Everything a producer measures: jobs, their handlers and the chunks they publish."""

    def __init__(self, registry: CollectorRegistry, concurrency: int) -> None:
        self.loop_lag = LoopLag(registry, "producer")
        self.jetstream_recreated = recreated_counter(registry, "producer")
        self.jobs_started = Counter(
            "streamer_producer_jobs_started",
            "Job attempts started, by handler.",
            ("job",),
            registry=registry,
        )
        self.jobs_ended = Counter(
            "streamer_producer_jobs_ended",
            "Job attempts ended, by handler and outcome (completed, failed, retry, unread, "
            "released, lost).",
            ("job", "outcome"),
            registry=registry,
        )
        self.job_duration = Histogram(
            "streamer_producer_job_duration_seconds",
            "Duration of one job attempt, by handler.",
            ("job",),
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.jobs_in_flight = Gauge(
            "streamer_producer_jobs_in_flight", "Job attempts running right now.", registry=registry
        )
        self.job_slots = Gauge(
            "streamer_producer_job_slots",
            "Jobs this producer runs at once (CONCURRENCY).",
            registry=registry,
        )
        self.job_slots.set(concurrency)
        self.edges_heard = Gauge(
            "streamer_producer_edges_heard",
            "Edges whose announcements of the streams they read this producer hears; at 0, "
            "every running job stops as unread.",
            registry=registry,
        )
        self.handler_errors = Counter(
            "streamer_producer_handler_errors",
            "Exceptions raised by job handlers, by handler.",
            ("job",),
            registry=registry,
        )
        self.chunks_published = Counter(
            "streamer_producer_chunks_published",
            "Data messages (chunk parts) published.",
            registry=registry,
        )
        self.bytes_published = Counter(
            "streamer_producer_bytes_published", "Payload bytes published.", registry=registry
        )
        self.publish_seconds = Histogram(
            "streamer_producer_publish_seconds",
            "JetStream publish round trip of one NATS message (chunks or an end marker).",
            buckets=PUBLISH_BUCKETS,
            registry=registry,
        )
        self.publish_retries = Counter(
            "streamer_producer_publish_retries",
            "Publishes retried, by reason: throttled (nats-server's stream ingest queue was "
            "full, 429) or unavailable (no connection, no acknowledgement in time).",
            ("reason",),
            registry=registry,
        )
        for reason in ("throttled", "unavailable"):
            self.publish_retries.labels(reason)
        self.publishes_refused = Counter(
            "streamer_producer_publishes_refused",
            "Publishes JetStream refused to store (its account's or the stream's storage full, "
            "for example); their jobs are retried with backoff.",
            registry=registry,
        )

    def initialize(self, jobs: Iterable[str], outcomes: Iterable[str]) -> None:
        """Create every series of the registered handlers at zero."""
        outcomes = tuple(outcomes)
        for job in jobs:
            self.jobs_started.labels(job)
            self.job_duration.labels(job)
            self.handler_errors.labels(job)
            for outcome in outcomes:
                self.jobs_ended.labels(job, outcome)


class QueueMetrics(Collector):
    """The jobs work queue as seen by its `producers` consumer, read from NATS at scrape time.

    Every edge and producer exports the same numbers: aggregate them with `max`.
    """

    _FRESH_FOR = 1.0

    def __init__(self, registry: CollectorRegistry, nc: Client, jobs_stream: str) -> None:
        self._nc = nc
        self._jobs_stream = jobs_stream
        self._values: dict[str, float] = {}
        self._read_at = 0.0
        self._lock = asyncio.Lock()
        registry.register(self)

    _HELP: ClassVar[dict[str, str]] = {
        "streamer_jobs_pending": "Jobs queued and not yet delivered to any producer.",
        "streamer_jobs_ack_pending": "Jobs delivered to a producer and not yet acknowledged.",
        "streamer_jobs_redelivered": "Unacknowledged jobs that were delivered more than once.",
        "streamer_jobs_waiting_pulls": "Pull requests producers have open on the jobs consumer.",
        "streamer_jobs_delivered": "Deliveries the jobs consumer has made (resets if recreated).",
    }

    async def refresh(self, timeout: float = 1.0) -> None:
        """Read the consumer's state from NATS, at most once a second; keep quiet on failure."""
        async with self._lock:
            if time.monotonic() - self._read_at < self._FRESH_FOR:
                return
            try:
                self._values = await asyncio.wait_for(self._read(), timeout)
            except Exception as error:
                logger.debug("cannot read the jobs queue", extra={"error": repr(error)})
                self._values = {}
            self._read_at = time.monotonic()

    async def _read(self) -> dict[str, float]:
        js = self._nc.jetstream()
        try:
            info = await js.consumer_info(self._jobs_stream, JOBS_CONSUMER, timeout=1.0)
        except NotFoundError:
            queued = (await js.stream_info(self._jobs_stream)).state.messages
            return dict.fromkeys(self._HELP, 0.0) | {"streamer_jobs_pending": float(queued)}
        return {
            "streamer_jobs_pending": float(info.num_pending or 0),
            "streamer_jobs_ack_pending": float(info.num_ack_pending or 0),
            "streamer_jobs_redelivered": float(info.num_redelivered or 0),
            "streamer_jobs_waiting_pulls": float(info.num_waiting or 0),
            "streamer_jobs_delivered": float(info.delivered.consumer_seq if info.delivered else 0),
        }

    def collect(self) -> Iterable[Metric]:
        """The last values read; nothing when NATS could not be asked."""
        for name, value in self._values.items():
            family = GaugeMetricFamily(name, self._HELP[name])
            family.add_metric([], value)
            yield family

    def describe(self) -> Iterable[Metric]:
        """No fixed description: the series exist only while NATS answers."""
        return []
