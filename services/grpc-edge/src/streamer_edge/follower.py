"""Reads one stream's subject in order, surviving reconnects and lost consumers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from streamer_common import frames
from streamer_common.inbox import SharedInbox
from streamer_common.natsio import StreamState
from streamer_common.pull import ConsumerGone, PullConsumer
from streamer_common.topology import data_subject

logger = logging.getLogger(__name__)

_POLL = 1.0


class NatsOutage(Exception):
    """NATS stayed unreachable longer than the configured bound."""


@dataclasses.dataclass(frozen=True)
class Received:
    """A frame and the JetStream sequence of the message that carried it."""

    stream_sequence: int
    frame: frames.Frame


def worth_searching(messages: int, items: int, after: int, sequences: int) -> bool:
    """Whether bisecting `sequences` JetStream sequences reads fewer messages than it skips.

    A read from the subject's start goes through about `messages * after / items` of its
    messages before the client's place; the search reads one whole message per probe,
    about log2(`sequences`) + 1 of them.
    """
    skipped = messages * min(after, items) // max(items, 1)
    return skipped > sequences.bit_length() + 1


async def resume_point(
    nc: Client, data_stream: str, stream_id: str, after: int, state: StreamState
) -> int:
    """Where to start reading `stream.<id>` for a client that has items 1 to `after`.

    The JetStream sequence of the last message whose items start at or before `after + 1`,
    found by bisecting the stream's sequences with direct gets, so resuming near the end of
    a long stream reads a few messages instead of all of them; 0 (read from the start) when
    the search would read more than it skips (`worth_searching`), or a probe fails.
    """
    if after <= 0 or state.subject_sequence <= 0:
        return 0
    subject = data_subject(stream_id)
    js = nc.jetstream()
    best = 0
    try:
        info = await js.stream_info(data_stream, subjects_filter=subject)
        messages = (info.state.subjects or {}).get(subject, 0)
        low, high = info.state.first_seq, state.subject_sequence
        items = state.position.next_sequence - 1
        if not worth_searching(messages, items, after, high - low + 1):
            return 0
        while low <= high:
            middle = (low + high) // 2
            try:
                msg = await js.get_msg(data_stream, middle, subject, direct=True, next=True)
            except NotFoundError:
                msg = None
            if msg is None or msg.seq is None or msg.seq > high:
                high = middle - 1  # none of the subject's messages from `middle` to `high`
            elif frames.first_item(msg.headers or {}) <= after + 1:
                best, low = msg.seq, msg.seq + 1
            else:
                high = middle - 1
    except (NatsError, OSError, TimeoutError, KeyError, ValueError) as error:
        # Reading from the last message found is as right, only slower; a malformed message
        # is reported by the read itself.
        logger.debug("resume search failed", extra={"subject": subject, "error": repr(error)})
    return best


class Follower:
    """An ephemeral ordered consumer on `stream.<id>`, recreated where it left off if lost."""

    def __init__(
        self,
        inbox: SharedInbox,
        data_stream: str,
        stream_id: str,
        *,
        max_bytes: int,
        outage: float,
        start: int = 0,
    ) -> None:
        self._nc: Client = inbox.nc
        self._inbox = inbox
        self._stream = data_stream
        self._subject = data_subject(stream_id)
        self._max_bytes = max_bytes
        self._outage = outage
        self._last_stream_sequence = max(start - 1, 0)  # read from JetStream sequence `start`
        self._outage_since = 0.0
        self._consumer = ""
        self._puller: PullConsumer | None = None
        self._epoch = -1

    async def __aenter__(self) -> Follower:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def _open(self) -> None:
        config = ConsumerConfig(
            filter_subject=self._subject,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
        )
        if self._last_stream_sequence:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self._last_stream_sequence + 1
        info = await self._nc.jetstream().add_consumer(self._stream, config)
        self._consumer = info.name
        self._epoch = self._nc.stats["reconnects"]
        self._puller = PullConsumer(
            self._nc,
            self._stream,
            self._consumer,
            batch=1024,
            max_bytes=self._max_bytes,
            inbox=self._inbox,
        )
        await self._puller.__aenter__()

    async def _close(self) -> None:
        if self._puller is not None:
            await self._puller.__aexit__()
            self._puller = None
        if self._consumer and self._nc.is_connected:
            # No reply asked: nats-server deletes it all the same, and the call ends without
            # waiting a round trip. One the delete misses goes after `inactive_threshold`.
            with contextlib.suppress(Exception):
                await self._nc.publish(f"$JS.API.CONSUMER.DELETE.{self._stream}.{self._consumer}")
        self._consumer = ""

    async def next(self, timeout: float) -> list[Received]:
        """Frames arriving within `timeout` (none: a quiet stream); NatsOutage if cut off."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if not self._nc.is_connected:
                self._outage_since = self._outage_since or time.monotonic()
                if time.monotonic() - self._outage_since > self._outage:
                    raise NatsOutage(f"NATS unreachable for more than {self._outage:g}s")
            else:
                self._outage_since = 0.0
            received = await self._fetch(min(remaining, _POLL))
            if received:
                return received

    async def _fetch(self, timeout: float) -> list[Received]:
        if self._puller is None and not self._nc.is_connected:
            await asyncio.sleep(min(timeout, 0.2))
            return []
        if self._puller is not None and self._epoch != self._nc.stats["reconnects"]:
            # Deliveries in flight when the connection dropped are gone for an ack-less
            # consumer (nats-server cuts off a slow consumer too): read again after the
            # last message that arrived.
            logger.info("reconnected, re-reading", extra={"subject": self._subject})
            await self._reset()
        try:
            if self._puller is None:
                await self._open()
            assert self._puller is not None
            messages = await self._puller.fetch(timeout)
        except ConsumerGone as gone:
            logger.info(
                "consumer lost, recreating", extra={"subject": self._subject, "why": str(gone)}
            )
            await self._reset()
            return []
        except (NatsError, OSError, TimeoutError) as error:
            logger.debug("fetch failed", extra={"subject": self._subject, "error": repr(error)})
            await self._reset()
            await asyncio.sleep(min(timeout, 0.2))
            return []
        received = []
        for msg in messages:
            sequence = msg.metadata.sequence.stream
            if sequence <= self._last_stream_sequence:
                continue
            self._last_stream_sequence = sequence
            received.append(Received(sequence, frames.decode(msg.headers, msg.data)))
        return received

    async def _reset(self) -> None:
        with contextlib.suppress(Exception):
            await self._close()
