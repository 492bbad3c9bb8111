"""What the edge records: gRPC metrics and server spans for every call, and per stream its
metrics, spans and the two log lines that say how it went."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from streamer_common import frames, tracing
from streamer_common.metrics import GRPC_CODES, GRPC_TYPES, EdgeMetrics, GrpcServerMetrics
from streamer_common.natsio import StreamState
from streamer_common.topology import data_subject, job_subject

logger = logging.getLogger(__name__)

SLOW_CLIENT_SECONDS = 1.0
# Chunk and byte counters are added to at most once a second per stream, and at its end.
_FLUSH_DELIVERED_SECONDS = 1.0
_FLUSH_SENT_EVERY = 64
# Server-side codes that mean the server failed, per the RPC semantic conventions.
_SERVER_ERRORS = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
}

Context = Any  # grpc.aio.ServicerContext, whose stubs are not typed


def final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with, given what its handler raised (None: it returned)."""
    if isinstance(error, asyncio.CancelledError) or (error is not None and context.cancelled()):
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


@dataclasses.dataclass
class _Method:
    """The metric children of one method, looked up once."""

    started: Any
    handled: Any
    msg_received: Any
    msg_sent: Any
    handling: Any


class _CountingContext:
    """A servicer context that counts the messages written through it, in batches."""

    def __init__(self, context: Context, sent: Any) -> None:
        self._context = context
        self._sent = sent
        self._unflushed = 0

    async def write(self, message: object) -> None:
        await self._context.write(message)
        self._unflushed += 1
        if self._unflushed >= _FLUSH_SENT_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._unflushed:
            self._sent.inc(self._unflushed)
            self._unflushed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class ServerTelemetry(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """go-grpc-middleware's server metrics and an RPC server span for every call.

    Streaming calls count as started when the handler begins, each message written as sent,
    and as handled with the final status when the handler is done, whether it returned,
    aborted, or was cancelled by the client or its deadline.
    """

    def __init__(self, metrics: GrpcServerMetrics, tracer: trace.Tracer) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self._methods: dict[tuple[str, str, str], _Method] = {}

    def initialize(self, services: Iterable[Any]) -> None:
        """Create the series of every method of `services` (protobuf descriptors) at zero."""
        self._metrics.initialize(
            (
                GRPC_TYPES[(method.client_streaming, method.server_streaming)],
                service.full_name,
                method.name,
            )
            for service in services
            for method in service.methods
        )

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        grpc_type = GRPC_TYPES[(handler.request_streaming, handler.response_streaming)]
        service, _, method = details.method.lstrip("/").rpartition("/")
        metadata = {
            key: value for key, value in details.invocation_metadata or () if isinstance(value, str)
        }
        call = _Call(
            self._tracer, self._method(grpc_type, service, method), service, method, metadata
        )
        return call.wrap(handler)

    def _method(self, grpc_type: str, service: str, method: str) -> _Method:
        key = (grpc_type, service, method)
        found = self._methods.get(key)
        if found is None:
            m = self._metrics
            found = self._methods[key] = _Method(
                m.started.labels(*key),
                {},
                m.msg_received.labels(*key),
                m.msg_sent.labels(*key),
                m.handling_seconds.labels(*key),
            )
            found.handled = {
                code: m.handled.labels(*key, name) for code, name in GRPC_CODES.items()
            }
        return found


class _Call:
    """Instruments one call of one method."""

    def __init__(
        self,
        tracer: trace.Tracer,
        method: _Method,
        service: str,
        name: str,
        metadata: dict[str, str],
    ) -> None:
        self._tracer = tracer
        self._method = method
        self._service = service
        self._name = name
        self._metadata = metadata

    def wrap(self, handler: Any) -> Any:
        """The same kind of handler, instrumented; handlers of other kinds are left alone."""
        inner = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )
        if inspect.iscoroutinefunction(inner):
            return _replace(handler, self._coroutine(inner, handler.request_streaming))
        if inspect.isasyncgenfunction(inner):
            return _replace(handler, self._generator(inner, handler.request_streaming))
        return handler

    def _coroutine(self, inner: Any, streaming_in: bool) -> Any:
        async def behavior(request: Any, context: Context) -> Any:
            counting = _CountingContext(context, self._method.msg_sent)
            with self._observe(context, counting):
                request = self._count_in(request, streaming_in)
                response = await inner(request, counting)
                if response is not None:
                    self._method.msg_sent.inc()
                return response

        return behavior

    def _generator(self, inner: Any, streaming_in: bool) -> Any:
        async def behavior(request: Any, context: Context) -> AsyncIterator[Any]:
            counting = _CountingContext(context, self._method.msg_sent)
            with self._observe(context, counting):
                async for response in inner(self._count_in(request, streaming_in), counting):
                    yield response
                    self._method.msg_sent.inc()

        return behavior

    def _count_in(self, request: Any, streaming_in: bool) -> Any:
        if not streaming_in:
            self._method.msg_received.inc()
            return request
        return _counted(request, self._method.msg_received)

    @contextlib.contextmanager
    def _observe(self, context: Context, counting: _CountingContext) -> Iterator[None]:
        method = self._method
        method.started.inc()
        began = time.monotonic()
        error: BaseException | None = None
        span = self._tracer.start_span(
            f"{self._service}/{self._name}",
            context=tracing.extract(self._metadata),
            kind=SpanKind.SERVER,
            attributes={
                tracing.RPC_SYSTEM: "grpc",
                tracing.RPC_SERVICE: self._service,
                tracing.RPC_METHOD: self._name,
            },
        )
        with tracing.CurrentSpan(span):
            try:
                yield
            except BaseException as raised:
                error = raised
                raise
            finally:
                counting.flush()
                code = final_code(context, error)
                method.handled[code].inc()
                method.handling.observe(time.monotonic() - began)
                _end_span(span, code)


def _details(context: Context) -> str:
    """The status message the call ends with, if the handler set one."""
    details = context.details()
    return details.decode(errors="replace") if isinstance(details, bytes) else str(details or "")


def _end_span(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute(tracing.RPC_GRPC_STATUS_CODE, code.value[0])
    if code in _SERVER_ERRORS:
        span.set_attribute(tracing.ERROR_TYPE, code.name)
        span.set_status(Status(StatusCode.ERROR, code.name))


async def _counted(requests: AsyncIterator[Any], received: Any) -> AsyncIterator[Any]:
    async for request in requests:
        received.inc()
        yield request


def _replace(handler: Any, behavior: Any) -> Any:
    factories = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    factory = factories[(handler.request_streaming, handler.response_streaming)]
    return factory(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class StreamRecord:
    """One Stream call as metrics, spans and its `stream started` / `stream ended` log lines."""

    def __init__(
        self,
        metrics: EdgeMetrics,
        tracer: trace.Tracer,
        stream_id: str,
        job: str,
        after_sequence: int,
    ) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self.stream_id = stream_id
        self.job = job
        self.after_sequence = after_sequence
        self.chunks = 0
        self.bytes = 0
        self.messages = 0
        self._counted = (0, 0)
        self._counted_at = 0.0
        self.time_to_first_chunk: float | None = None
        self._admitted = False
        self._started = time.monotonic()
        self._started_ns = time.time_ns()
        self._delivery: trace.Span = trace.INVALID_SPAN
        logger.info("stream started", extra=self._fields())

    def _fields(self) -> dict[str, object]:
        return {
            "stream_id": self.stream_id[:128],
            "job": self.job[:64],
            "after_sequence": self.after_sequence,
        }

    def admitted(self) -> None:
        """The call passed validation and the edge's limits: it counts as an active stream."""
        self._admitted = True
        self._metrics.streams_active.inc()
        if self.after_sequence > 0:
            self._metrics.resumes.inc()

    @contextlib.contextmanager
    def observing(self, context: Context) -> Iterator[None]:
        """Wraps the whole call: ends the record with the call's final status."""
        error: BaseException | None = None
        try:
            yield
        except BaseException as raised:
            error = raised
            raise
        finally:
            code = final_code(context, error)
            self._ended(code, "" if code == grpc.StatusCode.OK else _details(context))

    def _ended(self, code: grpc.StatusCode, details: str) -> None:
        self._count_delivered(time.monotonic())
        metrics = self._metrics
        if self._admitted:
            metrics.streams_active.dec()
            metrics.streams_ended.labels(GRPC_CODES[code]).inc()
            if code == grpc.StatusCode.DATA_LOSS:
                metrics.data_loss.inc()
        ttfc = self.time_to_first_chunk
        logger.info(
            "stream ended",
            extra={
                **self._fields(),
                "status": code.name,
                "details": details,
                "chunks": self.chunks,
                "bytes": self.bytes,
                "duration_s": round(time.monotonic() - self._started, 6),
                "time_to_first_chunk_s": None if ttfc is None else round(ttfc, 6),
            },
        )

    @contextlib.contextmanager
    def publishing_job(self, headers: MutableMapping[str, str]) -> Iterator[None]:
        """A PRODUCER span around queueing the job; its context goes into the job's headers."""
        subject = job_subject(self.stream_id)
        with self._tracer.start_as_current_span(
            f"send {job_subject('{id}')}",
            kind=SpanKind.PRODUCER,
            attributes={
                **tracing.messaging("send", "publish", subject, job_subject("{id}")),
                tracing.STREAM_ID: self.stream_id,
                tracing.JOB: self.job,
            },
        ):
            tracing.inject(headers)
            yield

    async def resuming(self, search: Awaitable[int]) -> int:
        """Await `search` for where a resumed call starts reading, in an INTERNAL span."""
        with self._tracer.start_as_current_span(
            "resume search",
            attributes={
                tracing.STREAM_ID: self.stream_id,
                tracing.AFTER_SEQUENCE: self.after_sequence,
            },
        ) as span:
            start = await search
            span.set_attribute(tracing.RESUME_STREAM_SEQUENCE, start)
        return start

    @contextlib.contextmanager
    def delivering(self, state: StreamState) -> Iterator[None]:
        """A CONSUMER span around relaying `stream.<id>` to the client."""
        if state.finished or (state.status is None and state.subject_sequence > 0):
            self._metrics.late_attaches.inc()
        span = self._tracer.start_span(
            f"process {data_subject('{id}')}",
            kind=SpanKind.CONSUMER,
            attributes={
                **tracing.messaging(
                    "process", "process", data_subject(self.stream_id), data_subject("{id}")
                ),
                tracing.STREAM_ID: self.stream_id,
            },
        )
        with tracing.CurrentSpan(span):
            self._delivery = span
            try:
                yield
            finally:
                span.set_attributes(
                    {
                        tracing.MESSAGING_BATCH_MESSAGE_COUNT: self.messages,
                        tracing.CHUNKS: self.chunks,
                        tracing.BYTES: self.bytes,
                    }
                )

    def delivered(self, frame: frames.DataFrame, before: int, after: int, began: float) -> None:
        """Account for the items of `frame` written to the client, sequences before+1..after."""
        count = after - before
        if count <= 0:
            return
        now = time.monotonic()
        skip = before + 1 - frame.first_sequence
        size = sum(map(len, frame.items[skip : skip + count]))
        metrics = self._metrics
        self.messages += 1
        self.chunks += count
        self.bytes += size
        if now - self._counted_at >= _FLUSH_DELIVERED_SECONDS:
            self._count_delivered(now)
        if self.time_to_first_chunk is None:
            self.time_to_first_chunk = now - self._started
            metrics.time_to_first_chunk.observe(self.time_to_first_chunk)
            self._delivery.add_event("first chunk delivered", {"streamer.sequence": after})
        if frame.published_ns >= self._started_ns:
            metrics.chunk_latency.observe((time.time_ns() - frame.published_ns) / 1e9)
        if now - began > SLOW_CLIENT_SECONDS:
            metrics.slow_client.inc()

    def _count_delivered(self, now: float) -> None:
        chunks, size = self._counted
        if self.chunks > chunks:
            self._metrics.chunks_delivered.inc(self.chunks - chunks)
            self._metrics.bytes_delivered.inc(self.bytes - size)
            self._counted = (self.chunks, self.bytes)
        self._counted_at = now
