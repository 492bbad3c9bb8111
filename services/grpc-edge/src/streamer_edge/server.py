"""Builds the edge's gRPC servers: the TLS service port and the plaintext probe port."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2

from streamer_common.files import ChangeWatch
from streamer_common.proto import stream_pb2, stream_pb2_grpc
from streamer_edge.observe import ServerTelemetry
from streamer_edge.settings import EdgeSettings

logger = logging.getLogger(__name__)

SERVICE_NAME = stream_pb2.DESCRIPTOR.services_by_name["Streamer"].full_name
SERVICES = (
    stream_pb2.DESCRIPTOR.services_by_name["Streamer"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)


class ReloadingCredentials:
    """TLS from the configured files, read again when they change; a client CA turns on mTLS.

    cert-manager renews a certificate in place (a new key too, with `rotationPolicy:
    Always`) and the kubelet swaps the mounted files: an edge that read them only at start
    would serve the old certificate until it expired. gRPC asks before each TLS handshake;
    at most once a second this looks at the files and, once they changed, loads them for
    the handshakes after. Connections already open keep their session. Files that do not
    load together (a key that does not match its certificate, say) are logged and the ones
    in use kept until the files change again.
    """

    def __init__(self, settings: EdgeSettings) -> None:
        self._cert = Path(settings.tls_cert_file)
        self._key = Path(settings.tls_key_file)
        self._client_ca = Path(settings.tls_client_ca_file) if settings.tls_client_ca_file else None
        paths = [path for path in (self._cert, self._key, self._client_ca) if path]
        self._watch = ChangeWatch([str(path) for path in paths])
        self._initial = self._configuration()

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up changed files on new connections."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._fetch,
            require_client_authentication=self._client_ca is not None,
        )

    def _configuration(self) -> Any:
        # The ssl module checks what gRPC would only find at the next handshake.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self._cert, self._key)
        client_ca = self._client_ca.read_bytes() if self._client_ca else None
        return grpc.ssl_server_certificate_configuration(
            [(self._key.read_bytes(), self._cert.read_bytes())], root_certificates=client_ca
        )

    def _fetch(self) -> Any:
        """gRPC's question before a handshake: None keeps the configuration in use."""
        try:
            if not self._watch.changed():
                return None
            configuration = self._configuration()
        except (OSError, ssl.SSLError, ValueError) as error:
            logger.warning(
                "cannot load the changed TLS files; serving the ones loaded before",
                extra={"cert": str(self._cert), "error": repr(error)},
            )
            return None
        logger.info("reloaded the TLS certificate", extra={"cert": str(self._cert)})
        return configuration


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
        credentials = ReloadingCredentials(settings).credentials()
        port = server.add_secure_port(settings.grpc_address, credentials)
    return server, port


def build_probe_server(address: str, health: HealthServicer) -> tuple[grpc.aio.Server, int]:
    """Plaintext `grpc.health.v1` only, for Kubernetes probes that cannot speak TLS."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server, server.add_insecure_port(address)
