"""NATS connections and the JetStream reads both services share."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from streamer_common import frames
from streamer_common.natsauth import ClientTls, Credentials
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
    credentials, tls = _files(settings)
    if credentials is not None:
        options["signature_cb"] = credentials.sign
        options["user_jwt_cb"] = credentials.jwt
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
    if tls is not None:
        options["tls"] = tls
    if settings.nats_tls_handshake_first:
        options["tls_handshake_first"] = True
    return options


@functools.cache
def _files(settings: NatsSettings) -> tuple[Credentials | None, ClientTls | None]:
    """The credentials and TLS files, loaded once and shared by every connection.

    Each is read again when it changes, so a connection made later (the edge's readers
    connect as calls need them) gets what loaded last, even while the files are broken.
    """
    credentials = Credentials(settings.nats_creds_file) if settings.nats_creds_file else None
    tls = None
    if settings.nats_tls_ca_file or settings.nats_tls_cert_file:
        tls = ClientTls(
            settings.nats_tls_ca_file, settings.nats_tls_cert_file, settings.nats_tls_key_file
        )
    return credentials, tls


def _wants_tls(settings: NatsSettings) -> bool:
    """A `tls://` URL, a TLS file or TLS first asks for TLS, as nats.go takes them."""
    tls_file = settings.nats_tls_ca_file or settings.nats_tls_cert_file
    if tls_file or settings.nats_tls_handshake_first:
        return True
    return any(url.startswith("tls://") for url in settings.nats_url)


class _TlsOnlyClient(Client):
    """A client that speaks TLS or not at all.

    nats-py 2.16 upgrades to TLS only when the server's INFO asks for it: a server without
    TLS, or anything posing as one, even at a `tls://` URL, got the password or the signed
    challenge in plaintext. Every INFO is taken as asking for TLS, so the handshake with
    such a server fails (logged, and retried as for an outage) before anything is sent.
    """

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        info["tls_required"] = True
        await super()._process_info(info, initial_connection)


async def connect(
    settings: NatsSettings,
    name: str,
    stop: asyncio.Event,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
) -> Client | None:
    """Connect, retrying until connected or `stop` is set (then None).

    nats-py retries a first connection itself, every `reconnect_time_wait` and without end
    (`max_reconnect_attempts=-1` covers it too), so `stop` is raced against it: a service
    that cannot reach NATS at start (down, unreachable, refusing its credentials) still
    exits at once on SIGTERM. A caller that gives up (a timeout) closes the half-made client.
    """
    nc = _TlsOnlyClient() if _wants_tls(settings) else Client()
    connecting = asyncio.ensure_future(
        nc.connect(
            **connect_options(settings, name),
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=ConnectionErrors(settings.nats_url).log,
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    gave_up = False
    try:
        await asyncio.wait((connecting, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not connecting.done():
            gave_up = True
            await _cancel_until_done(connecting)
            await nc.close()
    if gave_up:
        return None
    error = connecting.exception()
    if error is not None:  # what nats-py does not retry, such as a TLS setup it cannot use
        await nc.close()
        raise error
    return nc


async def drain(nc: Client) -> None:
    """Drain `nc` as a service stops, or close it if NATS is not there to drain to.

    nats-py's `drain()` raises when NATS is down (an outage, a node lost with it), which
    made a service stopped then exit 1 with a traceback. Nothing is lost by closing: what
    was not acknowledged is delivered again, to another service or after the outage.
    """
    if nc.is_connected:
        try:
            await nc.drain()
            return
        except (NatsError, OSError) as error:
            reason = repr(error)
    else:
        reason = "not connected"
    logger.warning("cannot drain the NATS connection; closing it", extra={"error": reason})
    with contextlib.suppress(OSError):  # nats-py flushes its buffer to a socket maybe gone
        await nc.close()


async def barrier(nc: Client, timeout: float = 5.0) -> None:
    """Return once nats-server has processed every command sent on `nc` before this call.

    Use this, not `nc.flush()`, to be sure a `subscribe` is in effect (or a `publish`
    routed) before relying on it: nats-py 2.16 writes flush's PING straight to the socket,
    ahead of the commands it still buffers, so its PONG can come back before the server has
    seen them. A message published on another connection right after `subscribe` and
    `flush` went unheard 42 times in 300 here. A message to an inbox of our own queues
    behind them instead, and comes back only after them. Raises nats-py's TimeoutError.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        await nc.publish(inbox, b"")
        await sub.next_msg(timeout)
    finally:
        with contextlib.suppress(NatsError):
            await sub.unsubscribe()


async def _cancel_until_done(task: asyncio.Future[Any]) -> None:
    """Cancel `task` until it ends: nats-py's connect swallows a cancellation in places.

    It does while it closes after each failed attempt (a refused login, say), so a single
    cancellation was lost about 1 time in 12 and the service retried on after SIGTERM.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
    if not task.cancelled():
        task.exception()  # retrieved: the caller gave up on it, whatever it was


class ConnectionErrors:
    """nats-py's error callback: logs an error at once, and again at most every `interval`.

    nats-py reports every failed attempt while it retries, twice a second with the
    services' `reconnect_time_wait`, for as long as NATS stays unreachable; a refused
    login reports two errors each time (the refusal, then the reset connection).
    """

    def __init__(self, servers: tuple[str, ...], interval: float = 10.0) -> None:
        self._servers = list(servers)
        self._interval = interval
        self._logged: dict[str, tuple[float, int]] = {}  # error: when last logged, repeats

    async def log(self, error: Exception) -> None:
        text, now = repr(error), time.monotonic()
        logged_at, repeats = self._logged.get(text, (now - self._interval, 0))
        if now - logged_at < self._interval:
            self._logged[text] = (logged_at, repeats + 1)
            return
        if len(self._logged) >= 64:  # errors that name a changing detail
            self._logged.clear()
        self._logged[text] = (now, 0)
        extra = {"servers": self._servers, "error": text, "repeats_not_logged": repeats}
        logger.warning("NATS connection error", extra=extra)


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
