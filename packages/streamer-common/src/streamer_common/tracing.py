"""Tracing: an OTLP tracer configured by the standard `OTEL_*` variables, or none at all.

Spans follow the OpenTelemetry semantic conventions at version SEMCONV_VERSION (see
docs/observability.md); attribute names are spelled out here so that a newer SDK does not
silently rename them. Context travels in NATS headers as W3C `traceparent`.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

logger = logging.getLogger(__name__)

SEMCONV_VERSION = "1.37.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_DESTINATION_TEMPLATE = "messaging.destination.template"
MESSAGING_CONSUMER_GROUP_NAME = "messaging.consumer.group.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_MESSAGE_BODY_SIZE = "messaging.message.body.size"
MESSAGING_BATCH_MESSAGE_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"

STREAM_ID = "streamer.stream.id"
JOB = "streamer.job"
ATTEMPT = "streamer.job.attempt"
OUTCOME = "streamer.job.outcome"
CHUNKS = "streamer.chunks"
BYTES = "streamer.bytes"
AFTER_SEQUENCE = "streamer.after_sequence"
RESUME_STREAM_SEQUENCE = "streamer.resume.stream_sequence"

NATS = "nats"


class TracingError(ValueError):
    """The OTEL_* variables ask for something this build cannot do."""


def _env(environ: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return ""


def exporting(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces to be exported at all."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if _env(environ, "OTEL_TRACES_EXPORTER") in ("none",):
        return False
    return bool(_env(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup_tracing(
    service_name: str, environ: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """A provider exporting over OTLP/gRPC, or None when no endpoint is configured.

    Without a provider the services use a no-op tracer: no spans, no exporter thread, no
    trace headers. Sampler, resource, batching and exporter options are the SDK's own
    OTEL_* variables; `service_name` applies unless OTEL_SERVICE_NAME says otherwise.
    """
    env = os.environ if environ is None else environ
    if not exporting(env):
        return None
    exporter_name = _env(env, "OTEL_TRACES_EXPORTER") or "otlp"
    protocol = _env(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if exporter_name != "otlp" or protocol not in ("", "grpc"):
        raise TracingError(
            f"OTEL_TRACES_EXPORTER={exporter_name} with protocol {protocol!r} is not supported: "
            "this build exports OTLP over gRPC only (OTEL_EXPORTER_OTLP_PROTOCOL=grpc)"
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": service_name})
    if env.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": env["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logger.info("exporting traces over OTLP", extra={"semconv": SEMCONV_VERSION})
    return provider


def tracer_of(provider: TracerProvider | None, name: str) -> trace.Tracer:
    """The tracer to hand to a service's parts: the provider's, or a no-op one."""
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(name, schema_url=SCHEMA_URL)


def messaging(
    operation_type: str, operation_name: str, destination: str, template: str
) -> dict[str, str]:
    """The messaging attributes every NATS span carries, per the pinned conventions."""
    return {
        MESSAGING_SYSTEM: NATS,
        MESSAGING_OPERATION_TYPE: operation_type,
        MESSAGING_OPERATION_NAME: operation_name,
        MESSAGING_DESTINATION_NAME: destination,
        MESSAGING_DESTINATION_TEMPLATE: template,
    }


def inject(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) of the current span to NATS headers, if any."""
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)


def extract(headers: Mapping[str, str] | None) -> Context | None:
    """The context a message's headers carry, or None when they carry none."""
    if not headers or "traceparent" not in headers:
        return None
    return propagate.extract(headers)


class CurrentSpan:
    """`with CurrentSpan(span):` makes `span` the current span in the block, then ends it.

    What `tracer.start_as_current_span` does, without its four generators: the edge holds
    two spans open for the whole life of each stream, and those generators were 2.5 KiB
    of its memory per open stream.
    """

    __slots__ = ("_token", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._token: contextvars.Token[Context] | None = None

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        self.span.end()
