"""Settings of the grpc-edge, read from `EDGE_*` environment variables."""

from __future__ import annotations

import dataclasses

from streamer_common.settings import Duration, NatsSettings, load

PREFIX = "EDGE"


@dataclasses.dataclass(frozen=True)
class EdgeSettings(NatsSettings):
    """Everything the edge reads at start-up; see docs/configuration.md."""

    grpc_address: str = "0.0.0.0:50051"
    health_address: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    plaintext: bool = False
    max_streams: int = 1000
    stream_buffer_bytes: int = 2 * 1024 * 1024
    max_batch_bytes: int = 256 * 1024
    readers_per_connection: int = 16
    max_request_bytes: int = 64 * 1024
    max_params_bytes: int = 4096
    accept_timeout: Duration = Duration(300)
    first_chunk_timeout: Duration = Duration(15)
    stall_timeout: Duration = Duration(60)
    nats_outage_timeout: Duration = Duration(30)
    interest_interval: Duration = Duration(0.5)
    default_job: str = "produce"
    metrics_address: str = "0.0.0.0:9090"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.plaintext and not (self.tls_cert_file and self.tls_key_file):
            raise ValueError(
                "TLS_CERT_FILE and TLS_KEY_FILE are required; set EDGE_PLAINTEXT=true to serve "
                "without TLS"
            )
        if self.tls_client_ca_file and self.plaintext:
            raise ValueError("TLS_CLIENT_CA_FILE (mTLS) cannot be combined with PLAINTEXT")
        if self.stream_buffer_bytes < self.max_message_bytes + 64 * 1024:
            raise ValueError(
                "STREAM_BUFFER_BYTES must exceed MAX_MESSAGE_BYTES by at least 64 KiB, "
                "or a full-size message could never be fetched"
            )
        if not 1024 <= self.max_batch_bytes <= 3 * 1024 * 1024:
            raise ValueError(
                "MAX_BATCH_BYTES must be 1024 to 3 MiB, so a Batch fits the 4 MiB a gRPC client "
                "accepts by default"
            )
        if self.readers_per_connection < 1:
            raise ValueError("READERS_PER_CONNECTION must be at least 1")
        if not 1 <= self.accept_timeout <= 86400:
            raise ValueError("ACCEPT_TIMEOUT must be 1s to 24h")
        if not 0.01 <= self.interest_interval <= 60:
            raise ValueError("INTEREST_INTERVAL must be 10ms to 60s")
        if self.max_streams < 1:
            raise ValueError("MAX_STREAMS must be at least 1")
        if self.max_streams > self.data_max_consumers:
            # Each open stream reads through a consumer of its own on the data stream.
            raise ValueError(
                f"MAX_STREAMS ({self.max_streams}) must be at most DATA_MAX_CONSUMERS "
                f"({self.data_max_consumers}), the data stream's limit of consumers"
            )


def load_settings() -> EdgeSettings:
    """Read and validate the edge's settings from the environment."""
    return load(EdgeSettings, PREFIX)
