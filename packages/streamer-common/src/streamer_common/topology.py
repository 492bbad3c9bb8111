"""NATS subjects and JetStream streams shared by the edge and the producers.

Data for stream `<id>` flows on subject `stream.<id>`, captured by the data stream so
that it survives crashes and can be replayed. Jobs go to `streamer.jobs.<id>` on a
work-queue stream that holds at most one job per id, so concurrent starts make one job.
Edges announce which streams they have readers for on `streamer.readers.<edge>`
(`streamer_common.interest`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import (
    AccountInfo,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from streamer_common.settings import NatsSettings

logger = logging.getLogger(__name__)

JOBS_CONSUMER = "producers"
_MAX_BYTES_REQUIRED = 10113  # the account requires streams to set max_bytes
_STREAM_NOT_FOUND = 10059


def data_subject(stream_id: str) -> str:
    """Subject that carries the chunks of one stream."""
    return f"stream.{stream_id}"


def job_subject(stream_id: str) -> str:
    """Work-queue subject of the job that produces one stream."""
    return f"streamer.jobs.{stream_id}"


class TopologyError(RuntimeError):
    """An existing JetStream stream does not match what this service is configured for."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """The JetStream streams both services agree on, derived from their settings."""

    data_stream: str
    jobs_stream: str
    retention: float
    duplicate_window: float
    replicas: int
    max_message_bytes: int
    data_max_consumers: int
    data_max_bytes: int
    jobs_max_bytes: int

    @classmethod
    def from_settings(cls, settings: NatsSettings) -> Topology:
        """Take the topology fields out of a service's settings."""
        return cls(
            data_stream=settings.data_stream,
            jobs_stream=settings.jobs_stream,
            retention=float(settings.retention),
            duplicate_window=float(settings.duplicate_window),
            replicas=settings.stream_replicas,
            max_message_bytes=settings.max_message_bytes,
            data_max_consumers=settings.data_max_consumers,
            data_max_bytes=settings.data_max_bytes,
            jobs_max_bytes=settings.jobs_max_bytes,
        )

    def data_config(self) -> StreamConfig:
        """Chunks of every stream, kept for `retention` after they were written."""
        return StreamConfig(
            name=self.data_stream,
            subjects=[data_subject("*")],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.retention,
            duplicate_window=self.duplicate_window,
            max_msg_size=self.max_message_bytes,
            max_bytes=self.data_max_bytes,
            discard=DiscardPolicy.OLD,
            num_replicas=self.replicas,
            allow_direct=True,
            # Every open call reads through a consumer of its own. nats-server 2.15 caps a
            # stream that sets no limit at 1000 consumers; unlimited cannot be asked for.
            max_consumers=self.data_max_consumers,
        )

    def jobs_config(self) -> StreamConfig:
        """At most one pending or running job per stream id, removed when acknowledged."""
        return StreamConfig(
            name=self.jobs_stream,
            subjects=[job_subject("*")],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_age=self.retention,
            duplicate_window=self.duplicate_window,
            max_msgs_per_subject=1,
            max_bytes=self.jobs_max_bytes,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            num_replicas=self.replicas,
        )


_COMPARED = (
    "subjects",
    "retention",
    "storage",
    "max_age",
    "duplicate_window",
    "max_msg_size",
    "max_bytes",
    "discard",
    "max_msgs_per_subject",
    "discard_new_per_subject",
    "num_replicas",
)


def _differences(wanted: StreamConfig, actual: StreamConfig) -> list[str]:
    found = []
    for name in _COMPARED:
        want: Any = getattr(wanted, name)
        have: Any = getattr(actual, name)
        if isinstance(want, float) and isinstance(have, int | float):
            if abs(want - have) < 0.001:
                continue
        elif want == have or (want in (None, False) and have in (None, False, 0, -1)):
            continue
        found.append(f"{name}={have!r} (configured {want!r})")
    return found


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> bool:
    """Create `wanted` if missing (True); TopologyError if it exists with another definition."""
    try:
        info = await js.stream_info(wanted.name or "")
    except NotFoundError:
        try:
            await js.add_stream(wanted)
        except APIError as error:
            raise TopologyError(_refusal(wanted, error)) from None
        logger.info("created JetStream stream", extra={"stream": wanted.name})
        return True
    differences = _differences(wanted, info.config)
    if differences:
        raise TopologyError(
            f"JetStream stream {wanted.name} exists with a different definition: "
            + ", ".join(differences)
            + ". Align the settings of every service, or update or delete the stream."
        )
    await _raise_max_consumers(js, wanted, info.config)
    return False


def _refusal(wanted: StreamConfig, error: APIError) -> str:
    """Why nats-server would not create `wanted`, and what to set about it."""
    message = f"JetStream refused to create stream {wanted.name}: {error.description}"
    if error.err_code == _MAX_BYTES_REQUIRED:
        message += ". The NATS account requires a byte limit: set DATA_MAX_BYTES and JOBS_MAX_BYTES"
    return message


async def _raise_max_consumers(
    js: JetStreamContext, wanted: StreamConfig, actual: StreamConfig
) -> None:
    """Raise the stream's consumer limit to `wanted`'s if it is lower; never lower it.

    A limit is a capacity, not a definition: services configured differently each get at
    least theirs. A stream made without a limit reports -1, which nats-server 2.15 reads
    as its default of 1000, so it gets the configured one. A server that refuses the
    update leaves the stream as it was.
    """
    want, have = wanted.max_consumers, actual.max_consumers or -1
    if not want or want <= have:
        return
    try:
        await js.update_stream(dataclasses.replace(actual, max_consumers=want))
    except Exception as error:
        # A server too old to update the limit predates its default, and reads -1 as none.
        log = logger.warning if have > 0 else logger.info
        log(
            "cannot change the stream's consumer limit",
            extra={"stream": wanted.name, "limit": have, "configured": want, "error": str(error)},
        )
        return
    extra = {"stream": wanted.name, "from": have, "to": want}
    logger.info("raised the stream's consumer limit", extra=extra)


async def ensure_topology(nc: Client, topology: Topology) -> list[str]:
    """Create or check both streams, naming those created; idempotent, safe for every replica."""
    # nats-py refuses a larger message before sending it (MaxPayloadError), which a
    # producer would take for an outage and retry until its job failed.
    if nc.max_payload < topology.max_message_bytes:
        raise TopologyError(
            f"MAX_MESSAGE_BYTES ({topology.max_message_bytes}) is above the NATS server's "
            f"max_payload ({nc.max_payload}): lower it, or raise max_payload in the server's "
            "configuration"
        )
    js = nc.jetstream()
    data = topology.data_config()
    data.max_consumers = _consumer_capacity(await _account(js), topology)
    created = [data.name or ""] if await ensure_stream(js, data) else []
    if await ensure_stream(js, topology.jobs_config()):
        created.append(topology.jobs_stream)
    return created


def stream_missing(error: BaseException) -> bool:
    """True when NATS says a JetStream stream (or its consumer) is not there to answer."""
    if isinstance(error, NoRespondersError | ServiceUnavailableError):
        return True
    return isinstance(error, APIError) and error.err_code == _STREAM_NOT_FOUND


class TopologyKeeper:
    """Puts the streams back when they go missing while a service runs.

    A nats-server that restarts without its store (a lost volume), or a `nats stream rm`,
    leaves the services connected to a server without their streams, and every call
    would fail until they were restarted. `recheck` runs `ensure` again in the
    background, at most once every `interval` seconds; a service calls it after every
    reconnect and whenever NATS says a stream is missing (`stream_missing`).
    """

    def __init__(
        self,
        ensure: Callable[[], Awaitable[list[str]]],
        on_created: Callable[[str], object] = lambda name: None,
        interval: float = 1.0,
    ) -> None:
        self._ensure = ensure
        self._on_created = on_created
        self._interval = interval
        self._last = -interval
        self._task: asyncio.Task[None] | None = None

    def recheck(self) -> None:
        """Check the streams soon, unless a check is already on its way."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._check())

    def close(self) -> None:
        """Cancel a check on its way."""
        if self._task is not None:
            self._task.cancel()

    async def _check(self) -> None:
        await asyncio.sleep(max(0.0, self._last + self._interval - time.monotonic()))
        self._last = time.monotonic()
        try:
            created = await self._ensure()
        except TopologyError as error:
            logger.error("cannot put the JetStream streams back", extra={"error": str(error)})
            return
        except Exception as error:  # an outage: the next reconnect or failed call checks again
            logger.info("cannot check the JetStream streams", extra={"error": repr(error)})
            return
        if created:
            logger.warning(
                "JetStream streams were missing, created them again: their data is gone",
                extra={"streams": created},
            )
        for name in created:
            self._on_created(name)


async def _account(js: JetStreamContext) -> AccountInfo | None:
    """The account's JetStream limits; TopologyError if it has no JetStream at all."""
    try:
        return await js.account_info()
    except ServiceUnavailableError as error:  # no responder, or 503 from the server
        why = error.description or "nothing answers on $JS.API"
        raise TopologyError(
            f"JetStream is not available to this NATS account ({why}): enable JetStream on "
            "the server (nats-server -js, or a jetstream block) and for the account"
        ) from None
    except (NatsError, TimeoutError) as error:  # not ours to judge: the stream calls will
        logger.debug("no JetStream account information", extra={"error": repr(error)})
        return None


def _consumer_capacity(account: AccountInfo | None, topology: Topology) -> int:
    """The configured consumer limit of the data stream, or the NATS account's if lower.

    nats-server refuses to create or raise a stream whose limit exceeds its account's
    ("maximum consumers limit reached"), which would stop both services at start-up on an
    account that allows fewer consumers than `DATA_MAX_CONSUMERS`; and the account's limit
    caps the stream's consumers whatever the stream says.
    """
    wanted = topology.data_max_consumers
    if account is None:
        return wanted
    limits = account.limits
    tier = (account.tiers or {}).get(f"R{topology.replicas}")
    if tier is not None:  # an account with limits per replica count
        limits = tier.limits
    allowed = limits.max_consumers
    if allowed <= 0 or allowed >= wanted:  # -1: no limit
        return wanted
    logger.warning(
        "the NATS account allows fewer consumers than DATA_MAX_CONSUMERS; the data stream "
        "takes the account's limit",
        extra={"stream": topology.data_stream, "configured": wanted, "account_limit": allowed},
    )
    return allowed
