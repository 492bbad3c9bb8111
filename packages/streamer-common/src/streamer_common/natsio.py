"""NATS connections and the JetStream reads both services share."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from streamer_common import frames
from streamer_common.settings import NatsSettings
from streamer_common.topology import data_subject

logger = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


def connect_options(settings: NatsSettings, name: str) -> dict[str, Any]:
    """Options for `nats.connect`: servers, credentials, TLS and endless reconnects."""
    options: dict[str, Any] = {
        "servers": list(settings.nats_url),
        "name": name,
        "connect_timeout": 2,
        "reconnect_time_wait": 0.5,
        "max_reconnect_attempts": -1,
        "ping_interval": 5,
        "max_outstanding_pings": 2,
    }
    if settings.nats_creds_file:
        options["user_credentials"] = settings.nats_creds_file
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
    if settings.nats_tls_ca_file:
        options["tls"] = ssl.create_default_context(cafile=settings.nats_tls_ca_file)
    return options


async def connect(
    settings: NatsSettings,
    name: str,
    stop: asyncio.Event,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
) -> Client | None:
    """Connect, retrying with capped backoff until connected or `stop` is set (then None)."""
    delay = 0.2
    while not stop.is_set():
        try:
            return await nats.connect(
                **connect_options(settings, name),
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=_log_error,
            )
        except (TimeoutError, OSError, nats.errors.Error) as error:
            logger.warning(
                "cannot reach NATS, retrying",
                extra={"servers": settings.nats_url, "error": str(error)},
            )
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            delay = min(delay * 2, 5.0)
    return None


async def _log_error(error: Exception) -> None:
    logger.warning("NATS connection error", extra={"error": repr(error)})


@dataclasses.dataclass(frozen=True)
class StreamState:
    """What the data stream holds for one id, read from its last message."""

    position: frames.Position
    status: str | None
    error: str
    subject_sequence: int

    @property
    def finished(self) -> bool:
        """True once the job wrote its end marker: nothing more will come."""
        return self.status == frames.END


async def stream_state(nc: Client, data_stream: str, stream_id: str) -> StreamState:
    """Read the last message on `stream.<id>` to learn how far its job got."""
    try:
        last = await nc.jetstream().get_last_msg(data_stream, data_subject(stream_id), direct=True)
    except NotFoundError:
        return StreamState(frames.Position(), None, "", 0)
    headers = last.headers or {}
    return StreamState(
        frames.position_after(headers),
        headers.get(frames.STATUS),
        headers.get(frames.ERROR, ""),
        last.seq or 0,
    )
