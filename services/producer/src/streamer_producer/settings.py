"""Settings of the producer workers, read from `PRODUCER_*` environment variables."""

from __future__ import annotations

import dataclasses

from streamer_common.settings import Duration, NatsSettings, load

PREFIX = "PRODUCER"


@dataclasses.dataclass(frozen=True)
class ProducerSettings(NatsSettings):
    """Everything a producer reads at start-up; see docs/configuration.md."""

    concurrency: int = 2
    ack_wait: Duration = Duration(30)
    max_attempts: int = 5
    retry_backoff: tuple[Duration, ...] = (Duration(1), Duration(2), Duration(5), Duration(10))
    handler_modules: tuple[str, ...] = ()
    interest_interval: Duration = Duration(0.5)
    max_part_bytes: int = 256 * 1024
    metrics_address: str = "0.0.0.0:9091"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.concurrency < 1:
            raise ValueError("CONCURRENCY must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("MAX_ATTEMPTS must be at least 1")
        if not 0.01 <= self.interest_interval <= 60:
            raise ValueError("INTEREST_INTERVAL must be 10ms to 60s")
        if self.ack_wait < 1:
            raise ValueError("ACK_WAIT must be at least 1s")
        if not 0 < self.max_part_bytes <= self.max_message_bytes - 4096:
            raise ValueError(
                "MAX_PART_BYTES must be positive and leave 4 KiB of MAX_MESSAGE_BYTES for headers"
            )


def load_settings() -> ProducerSettings:
    """Read and validate the producer's settings from the environment."""
    return load(ProducerSettings, PREFIX)
