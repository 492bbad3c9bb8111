"""Publishes a job's chunks to `stream.<id>` in order, exactly once, as the only writer.

Every publish asserts the subject's last JetStream sequence, so two producers that
both believe they own a job can never interleave: the one that falls behind gets
`wrong last sequence` and stops. Chunks that are ready together travel in one
message; a chunk larger than a part is split across consecutive messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import APIError

from streamer_common import frames
from streamer_common.frames import Position
from streamer_common.metrics import ProducerMetrics
from streamer_common.topology import data_subject

logger = logging.getLogger(__name__)

_WRONG_LAST_SEQUENCE = 10071
_HEADER_ROOM = 1024


class LostOwnership(Exception):
    """Another producer wrote to this stream: this one must stop without touching it."""


class PublishOutage(Exception):
    """NATS did not accept a publish within the allowed time."""


@dataclasses.dataclass(frozen=True)
class Part:
    """One `Data` item: part `index` of handler chunk `chunk`, and the position after it."""

    payload: bytes
    after: Position


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
        self._stream_id = stream_id
        self._subject = data_subject(stream_id)
        self.position = position
        self._subject_sequence = subject_sequence
        self._max_payload = max_message_bytes - _HEADER_ROOM
        self._outage = outage
        self._metrics = metrics
        self.published_items = 0
        self.published_bytes = 0
        self.published_messages = 0

    async def write(self, parts: list[Part]) -> None:
        """Publish consecutive parts as one message."""
        first = self.position.next_sequence
        after = dataclasses.replace(parts[-1].after, next_sequence=first + len(parts))
        headers = frames.data_headers(
            self._stream_id, first, [len(part.payload) for part in parts], after
        )
        payload = b"".join(part.payload for part in parts)
        await self._publish(payload, headers)
        self.position = after
        self.published_items += len(parts)
        self.published_bytes += len(payload)
        self._metrics.chunks_published.inc(len(parts))
        self._metrics.bytes_published.inc(len(payload))

    async def mark(self, status: str, error: str = "") -> None:
        """Publish an end, error or stopped marker after everything written so far."""
        await self._publish(b"", frames.control_headers(self._stream_id, status, self.position, error))

    async def _publish(self, payload: bytes, headers: dict[str, str]) -> None:
        headers[frames.EXPECTED_LAST_SUBJECT_SEQ] = str(self._subject_sequence)
        deadline = time.monotonic() + self._outage
        while True:
            try:
                began = time.monotonic()
                ack = await self._js.publish(self._subject, payload, headers=headers, timeout=2.0)
                self._metrics.publish_seconds.observe(time.monotonic() - began)
                self._subject_sequence = ack.seq
                self.published_messages += 1
                return
            except APIError as error:
                if error.err_code != _WRONG_LAST_SEQUENCE:
                    raise
                self._subject_sequence = await self._own_earlier_publish(headers)
                return
            except (NatsError, OSError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise PublishOutage(f"NATS did not accept a publish for {self._outage:g}s") from error
                await asyncio.sleep(0.25)

    async def _own_earlier_publish(self, headers: dict[str, str]) -> int:
        """After `wrong last sequence`: our own retried publish landed, or someone else wrote."""
        last = await self._js.get_last_msg(self._data_stream, self._subject, direct=True)
        mine = headers.get(frames.MSG_ID)
        theirs = (last.headers or {}).get(frames.MSG_ID)
        if mine is None or mine != theirs:
            raise LostOwnership(f"another producer is writing {self._subject}")
        return int(last.seq or 0)


def split(chunk: bytes, chunk_index: int, max_part: int, skip: int = 0) -> list[Part]:
    """Parts of one handler chunk (an empty chunk is one empty part), minus the first `skip`."""
    pieces = [chunk[offset : offset + max_part] for offset in range(0, len(chunk), max_part)] or [b""]
    last = len(pieces) - 1
    return [
        Part(piece, Position(0, chunk_index + 1, 0) if k == last else Position(0, chunk_index, k + 1))
        for k, piece in enumerate(pieces)
        if k >= skip
    ]


async def pump(
    chunks: AsyncIterator[bytes], writer: StreamWriter, *, max_part: int, max_batch: int
) -> None:
    """Run the handler ahead of publishing by a bounded amount, coalescing ready parts."""
    queue: asyncio.Queue[Part | None] = asyncio.Queue(maxsize=max(16, 4 * max_batch // max_part))
    producer = asyncio.create_task(_fill(queue, chunks, writer.position, max_part))
    try:
        while (part := await _next(queue, producer)) is not None:
            batch, size = [part], len(part.payload)
            while not queue.empty() and size + max_part <= max_batch:
                if (part := queue.get_nowait()) is None:
                    await writer.write(batch)
                    return
                batch.append(part)
                size += len(part.payload)
            await writer.write(batch)
    finally:
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer


async def _fill(
    queue: asyncio.Queue[Part | None], chunks: AsyncIterator[bytes], start: Position, max_part: int
) -> None:
    index = start.chunk
    async for chunk in chunks:
        for part in split(chunk, index, max_part, start.skip_parts if index == start.chunk else 0):
            await queue.put(part)
        index += 1
    await queue.put(None)


async def _next(queue: asyncio.Queue[Part | None], producer: asyncio.Task[None]) -> Part | None:
    """The next part; parts already made are published before a handler error surfaces."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    producer.result()
    return await queue.get()
