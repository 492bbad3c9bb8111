"""Builds the edge's gRPC servers: the TLS service port and the plaintext probe port."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2

from streamer_common.proto import stream_pb2, stream_pb2_grpc
from streamer_edge.observe import ServerTelemetry
from streamer_edge.settings import EdgeSettings

SERVICE_NAME = stream_pb2.DESCRIPTOR.services_by_name["Streamer"].full_name
SERVICES = (
    stream_pb2.DESCRIPTOR.services_by_name["Streamer"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)


def server_credentials(settings: EdgeSettings) -> grpc.ServerCredentials:
    """TLS from the configured files; a client CA turns on mutual TLS."""
    key = Path(settings.tls_key_file).read_bytes()
    cert = Path(settings.tls_cert_file).read_bytes()
    client_ca = (
        Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def server_options(settings: EdgeSettings) -> list[tuple[str, int]]:
    """gRPC core options of the public server."""
    pending = max(1000, settings.max_streams)
    return [
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # grpc.aio takes one new call per turn of the event loop, so a saturated edge
        # accepts slowly; gRPC core cancels a call still waiting after this (bare CANCELLED).
        ("grpc.server_max_unrequested_time_in_server", int(settings.accept_timeout)),
        ("grpc.server_max_pending_requests", pending),
        ("grpc.server_max_pending_requests_hard_limit", 3 * pending),
    ]


def build_server(
    settings: EdgeSettings,
    servicer: stream_pb2_grpc.StreamerServicer,
    health: HealthServicer,
    telemetry: ServerTelemetry,
) -> tuple[grpc.aio.Server, int]:
    """The public server (Streamer, health, reflection) bound to its address; returns its port."""
    telemetry.initialize(SERVICES)
    server = grpc.aio.server(
        interceptors=[telemetry],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_streams + 64,
    )
    stream_pb2_grpc.add_StreamerServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection([service.full_name for service in SERVICES], server)
    if settings.plaintext:
        port = server.add_insecure_port(settings.grpc_address)
    else:
        port = server.add_secure_port(settings.grpc_address, server_credentials(settings))
    return server, port


def build_probe_server(address: str, health: HealthServicer) -> tuple[grpc.aio.Server, int]:
    """Plaintext `grpc.health.v1` only, for Kubernetes probes that cannot speak TLS."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server, server.add_insecure_port(address)
