"""Publishes a job's chunks to `stream.<id>` in order, exactly once, as the only writer.

Every publish asserts the subject's last JetStream sequence, so two producers that
both believe they own a job can never interleave: the one that falls behind gets
`wrong last sequence` and stops. Each writer stamps its messages with an id of its own,
so after `wrong last sequence` it can tell its own publish, stored though its
acknowledgement was lost, from another writer's. That makes JetStream's duplicate
window (a `Nats-Msg-Id` remembered per message for two minutes) unneeded here. Chunks
that are ready together travel in one message; a chunk larger than a part is split
across consecutive messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import NamedTuple, cast

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import RawStreamMsg
from nats.js.errors import APIError, NotFoundError

from streamer_common import frames
from streamer_common.frames import Position
from streamer_common.metrics import ProducerMetrics
from streamer_common.topology import data_subject
from streamer_producer.handlers import PermanentError

logger = logging.getLogger(__name__)

_WRONG_LAST_SEQUENCE = 10071
_TOO_MANY_REQUESTS = 10167  # the stream's ingest queue is full: the message was not stored
_HEADER_ROOM = 1024
_MAX_ITEMS = 4096

# What a handler yields, and the views of it that split a chunk into parts.
Payload = bytes | bytearray | memoryview


class LostOwnership(Exception):
    """Another producer wrote to this stream: this one must stop without touching it."""


class PublishOutage(Exception):
    """NATS did not accept a publish within the allowed time."""


class PublishRefused(Exception):
    """JetStream would not store a message: its account's or stream's storage is full, say."""


class Part(NamedTuple):
    """One `Data` item, and where the job resumes after it: chunk `chunk`, minus `skip` parts."""

    payload: Payload
    chunk: int
    skip: int


class Ready(NamedTuple):
    """Consecutive parts to publish as one message, and where the job resumes after them.

    One is made per message; the read-ahead keeps its parts as plain tuples, since making
    a `Part` per chunk costs more than the rest of a small chunk's way through the producer.
    """

    payloads: list[Payload]
    chunk: int
    skip: int


class StreamWriter:
    """The single writer of one stream's subject, continuing from `position`."""

    def __init__(
        self,
        nc: Client,
        data_stream: str,
        stream_id: str,
        position: Position,
        subject_sequence: int,
        *,
        max_message_bytes: int,
        metrics: ProducerMetrics,
        outage: float = 60.0,
    ) -> None:
        self._js = nc.jetstream()
        self._data_stream = data_stream
        self._subject = data_subject(stream_id)
        self.position = position
        self._subject_sequence = subject_sequence
        self.max_payload = max_message_bytes - _HEADER_ROOM
        self._outage = outage
        self._metrics = metrics
        self._writer = frames.new_writer()
        self.published_items = 0
        self.published_bytes = 0
        self.published_messages = 0
        self._unconfirmed: str | None = None

    async def write(self, ready: Ready) -> None:
        """Publish consecutive parts as one message."""
        payloads = ready.payloads
        first = self.position.next_sequence
        after = Position(first + len(payloads), ready.chunk, ready.skip)
        headers = frames.data_headers(self._writer, first, list(map(len, payloads)), after)
        payload = _payload(payloads)
        self._unconfirmed = headers[frames.WRITE_ID]
        await self._publish(payload, headers)
        self._unconfirmed = None
        self.position = after
        self.published_items += len(payloads)
        self.published_bytes += len(payload)
        self._metrics.chunks_published.inc(len(payloads))
        self._metrics.bytes_published.inc(len(payload))

    async def mark(self, status: str, error: str = "") -> None:
        """Publish an end, error or stopped marker after everything written so far."""
        if self._unconfirmed is not None:
            await self._adopt_interrupted_write()
        await self._publish(b"", frames.control_headers(self._writer, status, self.position, error))

    async def _adopt_interrupted_write(self) -> None:
        """A write cancelled before its acknowledgement may still have landed: if so, count it."""
        last = await self._last_message(time.monotonic() + self._outage)
        headers = (last.headers if last else None) or {}
        if last and headers.get(frames.WRITE_ID) == self._unconfirmed:
            self._subject_sequence = int(last.seq or 0)
            self.position = frames.position_after(headers)
        self._unconfirmed = None

    async def _publish(self, payload: Payload, headers: dict[str, str]) -> None:
        """Publish until NATS stores it or `outage` passes; a retry repeats the same message.

        Its expected last subject sequence makes a retry of a publish that was stored after
        all fail with `wrong last sequence` instead of storing it twice; its write id then
        shows it was ours.
        """
        headers[frames.EXPECTED_LAST_SUBJECT_SEQ] = str(self._subject_sequence)
        deadline = time.monotonic() + self._outage
        throttled = 0
        # nats-py's publish is typed `bytes` but takes any buffer: it only measures and joins it.
        data = cast(bytes, payload)
        while True:
            try:
                began = time.monotonic()
                ack = await self._js.publish(self._subject, data, headers=headers, timeout=2.0)
                self._metrics.publish_seconds.observe(time.monotonic() - began)
                self._subject_sequence = ack.seq
                self.published_messages += 1
                return
            except APIError as error:
                if error.err_code == _TOO_MANY_REQUESTS:
                    # More publishes are queued for the data stream than nats-server's
                    # max_buffered_size/msgs: back off, with jitter so writers spread out.
                    self._check_deadline(deadline, error)
                    self._metrics.publish_retries.labels("throttled").inc()
                    pause = min(1.0, 0.01 * 2**throttled) * random.uniform(0.5, 1.0)
                    throttled += 1
                    await asyncio.sleep(pause)
                    continue
                if error.err_code != _WRONG_LAST_SEQUENCE:
                    self._metrics.publishes_refused.inc()
                    raise PublishRefused(error.description or repr(error)) from error
                self._subject_sequence = await self._own_earlier_publish(headers, deadline)
                return
            except (NatsError, OSError, TimeoutError) as error:
                self._check_deadline(deadline, error)
                self._metrics.publish_retries.labels("unavailable").inc()
                await asyncio.sleep(0.25)

    def _check_deadline(self, deadline: float, error: Exception) -> None:
        if time.monotonic() > deadline:
            raise PublishOutage(f"NATS did not accept a publish for {self._outage:g}s") from error

    async def _own_earlier_publish(self, headers: dict[str, str], deadline: float) -> int:
        """After `wrong last sequence`: our own retried publish landed, or someone else wrote."""
        last = await self._last_message(deadline)
        mine = headers.get(frames.WRITE_ID)
        if last is None:
            raise LostOwnership(f"{self._subject} is empty: its messages were removed")
        theirs = (last.headers or {}).get(frames.WRITE_ID)
        if mine is None or mine != theirs:
            raise LostOwnership(
                f"another producer is writing {self._subject}: its last message is {theirs}, "
                f"not {mine}"
            )
        return int(last.seq or 0)

    async def _last_message(self, deadline: float) -> RawStreamMsg | None:
        """The subject's last message (None while it has none), asked until NATS answers."""
        while True:
            try:
                return await self._js.get_last_msg(self._data_stream, self._subject, direct=True)
            except NotFoundError:
                return None
            except (NatsError, OSError, TimeoutError) as error:
                self._check_deadline(deadline, error)
                await asyncio.sleep(0.25)


def split(chunk: Payload, chunk_index: int, max_part: int, skip: int = 0) -> list[Part]:
    """Parts of one handler chunk (an empty chunk is one empty part), minus the first `skip`."""
    if len(chunk) <= max_part and not skip:
        return [Part(chunk, chunk_index + 1, 0)]
    # Parts of an immutable chunk are views of it, not copies: one copy fewer of every byte.
    # A bytearray's are copies, since its handler may reuse it once it yielded it.
    whole = memoryview(chunk) if chunk.__class__ is bytes else chunk
    pieces = [whole[offset : offset + max_part] for offset in range(0, len(chunk), max_part)] or [
        b""
    ]
    last = len(pieces) - 1
    return [
        Part(piece, chunk_index + 1, 0) if k == last else Part(piece, chunk_index, k + 1)
        for k, piece in enumerate(pieces)
        if k >= skip
    ]


def _payload(payloads: list[Payload]) -> Payload:
    """One message's payload: a lone view of an immutable chunk goes as it is, not copied."""
    payload = payloads[0]
    if len(payloads) == 1 and isinstance(payload, memoryview) and payload.obj.__class__ is bytes:
        return payload
    return b"".join(payloads)


class ReadAhead:
    """Parts the handler made that are not yet published, bounded in bytes.

    Each part counts `PART_COST` bytes more than its payload, so even empty chunks are
    bounded. `take` hands out every part that is ready, up to a message's worth, and
    raises the handler's error only once the parts made before it are all taken. `add`
    does not wait, so a chunk costs no coroutine; it asks the caller to `settle` once a
    `turn` of bytes was added (a handler that never awaits then lets the publisher and
    other jobs' acks run once a message's worth is ready, not only once the whole
    read-ahead is full) or once the read-ahead is full.
    """

    PART_COST = 64

    def __init__(self, limit: int, turn: int) -> None:
        self._limit = limit
        self._turn = turn
        self._since_yield = 0
        self._parts: deque[tuple[Payload, int, int]] = deque()  # Part's fields, no Part
        self._bytes = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None

    def add(self, payload: Payload, chunk: int, skip: int) -> bool:
        """Add a part; True when the caller must `await settle()` before adding more."""
        cost = len(payload) + self.PART_COST
        self._parts.append((payload, chunk, skip))
        self._bytes += cost
        self._since_yield += cost
        self._ready.set()
        return self._since_yield >= self._turn or self._bytes >= self._limit

    async def settle(self) -> None:
        """Yield the loop after a turn's worth of parts; wait while the read-ahead is full."""
        if self._since_yield >= self._turn:
            self._since_yield = 0
            await asyncio.sleep(0)
        while self._bytes >= self._limit:
            self._room.clear()
            await self._room.wait()

    def close(self, error: BaseException | None = None) -> None:
        """No more parts: the handler finished, failed with `error`, or was stopped."""
        if not self._closed:
            self._closed, self._error = True, error
        self._ready.set()

    async def take(self, max_bytes: int, max_items: int) -> Ready | None:
        """Consecutive parts, at least one, of at most `max_bytes` together; None at the end."""
        parts = self._parts
        while not parts:
            if self._closed:
                if self._error is not None:
                    raise self._error
                return None
            self._ready.clear()
            await self._ready.wait()
        payload, chunk, skip = parts.popleft()
        payloads, size = [payload], len(payload)
        while parts and len(payloads) < max_items and size + len(parts[0][0]) <= max_bytes:
            payload, chunk, skip = parts.popleft()
            payloads.append(payload)
            size += len(payload)
        self._bytes -= size + len(payloads) * self.PART_COST
        self._room.set()
        return Ready(payloads, chunk, skip)


async def pump(
    chunks: AsyncIterator[bytes],
    writer: StreamWriter,
    *,
    max_part: int,
    max_batch: int,
    stop: asyncio.Event,
) -> bool:
    """Run the handler ahead of publishing by a bounded amount, coalescing ready parts.

    Returns True once the handler finished and all it made is published. Setting `stop`
    ends the handler, but never a publish in flight, so the writer always knows what
    landed; then it returns False.
    """
    ahead = ReadAhead(limit=4 * max(max_batch, max_part), turn=max_batch)
    # Each item adds at most 8 characters ("1048576,") to the Streamer-Sizes header.
    max_items = min(_MAX_ITEMS, max(1, (writer.max_payload - max_batch) // 8))
    producer = asyncio.create_task(_fill(ahead, chunks, writer.position, max_part))
    halt = asyncio.create_task(_halt_on(stop, producer, ahead))
    try:
        while ready := await ahead.take(max_batch, max_items):
            if stop.is_set():
                return False
            await writer.write(ready)
        return not stop.is_set()
    finally:
        halt.cancel()
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer


async def _halt_on(stop: asyncio.Event, producer: asyncio.Task[None], ahead: ReadAhead) -> None:
    await stop.wait()
    producer.cancel()
    ahead.close()


async def _fill(
    ahead: ReadAhead, chunks: AsyncIterator[bytes], start: Position, max_part: int
) -> None:
    index = start.chunk
    try:
        async for chunk in chunks:
            if chunk.__class__ is not bytes and not isinstance(chunk, Payload):
                # Caught here, the chunks before it are published first, and no attempt
                # is wasted on what a retry would repeat.
                raise PermanentError(
                    f"the job handler yielded a {type(chunk).__name__}, not bytes, "
                    f"as chunk {index + 1}"
                )
            skip = start.skip_parts if index == start.chunk else 0
            if skip or len(chunk) > max_part:
                for part in split(chunk, index, max_part, skip):
                    if ahead.add(*part):
                        await ahead.settle()
            elif ahead.add(chunk, index + 1, 0):  # most chunks: one part, no split
                await ahead.settle()
            index += 1
    except Exception as error:
        ahead.close(error)
        return
    ahead.close()
