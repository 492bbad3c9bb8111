"""Typed settings read from environment variables, validated once at start-up."""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from streamer_common.natsauth import read_creds

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


class Duration(float):
    """Seconds, written in the environment as `500ms`, `30s`, `2m`, `1h` or a bare number."""


def parse_duration(text: str) -> Duration:
    """Parse `500ms`, `30s`, `2m`, `1h` or bare seconds into a Duration."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 30s, 2m or 1h")
    return Duration(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{text!r} is not a boolean (true or false)")


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    bool: _parse_bool,
    Duration: parse_duration,
    tuple[str, ...]: _parse_list,
    tuple[Duration, ...]: lambda text: tuple(parse_duration(item) for item in _parse_list(text)),
}


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    if isinstance(annotation, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _PARSERS[inner]
    return _PARSERS[annotation]


def load(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """Build a frozen settings dataclass from `<prefix>_<FIELD>` variables, defaults elsewhere."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}_{field.name.upper()}"
        if name not in env:
            continue
        try:
            values[field.name] = _parser_for(hints[field.name])(env[name])
        except ValueError as error:
            raise SettingsError(f"{name}: {error}") from None
    try:
        return cls(**values)
    except ValueError as error:
        raise SettingsError(f"{prefix}_*: {error}") from None


def variables(cls: type[Any], prefix: str) -> list[str]:
    """Every environment variable a settings class reads, for docs and chart checks."""
    return [f"{prefix}_{field.name.upper()}" for field in dataclasses.fields(cls)]


@dataclasses.dataclass(frozen=True)
class NatsSettings:
    """How a service reaches NATS and which JetStream streams it uses.

    Both services read these under their own prefix and must agree on the stream
    names and limits: the first to start creates the streams, the other checks them.
    """

    nats_url: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    nats_creds_file: str = ""
    nats_user: str = ""
    nats_password: str = ""
    nats_tls_ca_file: str = ""
    nats_tls_cert_file: str = ""
    nats_tls_key_file: str = ""
    nats_tls_handshake_first: bool = False
    data_stream: str = "STREAMER_DATA"
    jobs_stream: str = "STREAMER_JOBS"
    retention: Duration = Duration(3600)
    duplicate_window: Duration = Duration(120)
    stream_replicas: int = 1
    max_message_bytes: int = 1024 * 1024
    data_max_consumers: int = 10000
    data_max_bytes: int = -1  # -1: no limit
    jobs_max_bytes: int = -1
    metrics_address: str = ""
    log_level: str = "INFO"
    log_format: str = "json"
    shutdown_grace: Duration = Duration(20)

    def __post_init__(self) -> None:
        if not self.nats_url:
            raise ValueError("NATS_URL must name at least one server")
        if self.max_message_bytes < 1024:
            raise ValueError("MAX_MESSAGE_BYTES must be at least 1024")
        if self.data_max_consumers < 1:
            raise ValueError("DATA_MAX_CONSUMERS must be at least 1")
        for name, limit in (("DATA", self.data_max_bytes), ("JOBS", self.jobs_max_bytes)):
            if limit != -1 and limit < self.max_message_bytes:
                raise ValueError(
                    f"{name}_MAX_BYTES must be -1 (no limit) or at least MAX_MESSAGE_BYTES "
                    f"({self.max_message_bytes})"
                )
        if self.stream_replicas not in (1, 3, 5):
            raise ValueError("STREAM_REPLICAS must be 1, 3 or 5")
        if self.log_format not in ("json", "text"):
            raise ValueError("LOG_FORMAT must be json or text")
        if self.retention <= 0 or self.duplicate_window <= 0:
            raise ValueError("RETENTION and DUPLICATE_WINDOW must be positive")
        if bool(self.nats_tls_cert_file) != bool(self.nats_tls_key_file):
            raise ValueError("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together")


def check_nats_files(settings: NatsSettings) -> None:
    """SettingsError unless the NATS credentials and TLS files are there and load.

    nats-py would take a missing file for an outage and retry for ever, and TLS files
    that do not load for a traceback.
    """
    files = {
        "CREDS": settings.nats_creds_file,
        "TLS_CA": settings.nats_tls_ca_file,
        "TLS_CERT": settings.nats_tls_cert_file,
        "TLS_KEY": settings.nats_tls_key_file,
    }
    for name, path in files.items():
        if path and not os.path.isfile(path):
            raise SettingsError(f"NATS_{name}_FILE {path!r} is not a file")
    if settings.nats_creds_file:
        try:
            read_creds(settings.nats_creds_file)
        except OSError as error:
            raise SettingsError(
                f"NATS_CREDS_FILE {settings.nats_creds_file!r} cannot be read: {error.strerror}"
            ) from None
        except ValueError as error:
            raise SettingsError(
                f"NATS_CREDS_FILE {settings.nats_creds_file!r} is not a NATS credentials file: "
                f"{error}"
            ) from None
    trial = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if settings.nats_tls_ca_file:
            trial.load_verify_locations(cafile=settings.nats_tls_ca_file)
    except ssl.SSLError as error:
        raise SettingsError(f"NATS_TLS_CA_FILE holds no CA certificate: {error}") from None
    try:
        if settings.nats_tls_cert_file:
            trial.load_cert_chain(settings.nats_tls_cert_file, settings.nats_tls_key_file)
    except ssl.SSLError as error:
        raise SettingsError(
            f"NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE are not a certificate and its key: {error}"
        ) from None
