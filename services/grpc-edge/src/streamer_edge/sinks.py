"""How a call hands relayed items to its client: one `Data` per write, or `Batch`es of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from streamer_common.proto import stream_pb2

# Wire bytes of an item besides its data: tags, lengths and the sequence.
_ITEM_OVERHEAD = 16


class Sink(Protocol):
    """Receives items in order.

    `accepted` is the last data sequence handed to the sink, `written` the last one the
    client was sent; they differ only while a batch is being gathered.
    """

    accepted: int
    written: int

    async def put(self, sequence: int, data: bytes) -> None:
        """Send (or queue) one item; sequence 0 is the end marker."""

    async def put_many(self, sequence: int, items: list[bytes]) -> None:
        """Send (or queue) consecutive data items, the first with `sequence`."""

    async def flush(self) -> None:
        """Send whatever is queued."""


class DataSink:
    """`Stream`: one `Data` message per item, written at once."""

    def __init__(self, write: Callable[[stream_pb2.Data], Awaitable[None]], written: int) -> None:
        self._write = write
        self.accepted = self.written = written

    async def put(self, sequence: int, data: bytes) -> None:
        await self._write(stream_pb2.Data(sequence=sequence, data=data))
        self.accepted = self.written = sequence or self.written

    async def put_many(self, sequence: int, items: list[bytes]) -> None:
        write, data_type = self._write, stream_pb2.Data
        for data in items:
            await write(data_type(sequence=sequence, data=data))
            self.accepted = self.written = sequence
            sequence += 1

    async def flush(self) -> None:
        return None


class BatchSink:
    """`StreamBatches`: items gathered into one `Batch` of at most `max_bytes` until flushed.

    The relay flushes whenever it has no more items at hand, so a batch never waits for
    data that has not arrived; a single item larger than `max_bytes` travels alone.
    """

    def __init__(
        self, write: Callable[[stream_pb2.Batch], Awaitable[None]], written: int, max_bytes: int
    ) -> None:
        self._write = write
        self._max_bytes = max_bytes
        self._batch = stream_pb2.Batch()
        self._bytes = 0
        self.accepted = self.written = written

    async def put(self, sequence: int, data: bytes) -> None:
        await self.put_many(sequence, [data])

    async def put_many(self, sequence: int, items: list[bytes]) -> None:
        add, limit = self._batch.items.add, self._max_bytes
        for data in items:
            size = len(data) + _ITEM_OVERHEAD
            if self._bytes and self._bytes + size > limit:
                await self.flush()
                add = self._batch.items.add
            add(sequence=sequence, data=data)
            self._bytes += size
            self.accepted = sequence or self.accepted
            sequence += 1

    async def flush(self) -> None:
        if not self._bytes:
            return
        batch, self._batch, self._bytes = self._batch, stream_pb2.Batch(), 0
        await self._write(batch)
        self.written = self.accepted
