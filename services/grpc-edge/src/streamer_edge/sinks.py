"""How a call hands relayed items to its client: one `Data` per write, or `Batch`es of them.

Both write wire bytes (`wire`), not protobuf messages: an item's data is copied once, into
the bytes handed to gRPC.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from streamer_edge import wire

Item = bytes | memoryview  # an item's data: a slice of the NATS message that carried it
Write = Callable[[bytes], Awaitable[None]]


class Sink(Protocol):
    """Receives items in order.

    `accepted` is the last data sequence handed to the sink, `written` the last one the
    client was sent; they differ only while a batch is being gathered.
    """

    accepted: int
    written: int

    async def put(self, sequence: int, data: Item) -> None:
        """Send (or queue) one item; sequence 0 is the end marker."""

    async def put_many(self, sequence: int, items: list[Item]) -> None:
        """Send (or queue) consecutive data items, the first with `sequence`."""

    async def flush(self) -> None:
        """Send whatever is queued."""


class DataSink:
    """`Stream`: one `Data` message per item, written at once."""

    def __init__(self, write: Write, written: int) -> None:
        self._write = write
        self.accepted = self.written = written

    async def put(self, sequence: int, data: Item) -> None:
        await self._write(wire.data(sequence, data))
        self.accepted = self.written = sequence or self.written

    async def put_many(self, sequence: int, items: list[Item]) -> None:
        write, encode = self._write, wire.data
        for data in items:
            await write(encode(sequence, data))
            self.accepted = self.written = sequence
            sequence += 1

    async def flush(self) -> None:
        return None


class BatchSink:
    """`StreamBatches`: items gathered into one `Batch` of at most `max_bytes` until flushed.

    The relay flushes whenever it has no more items at hand, so a batch never waits for
    data that has not arrived; a single item larger than `max_bytes` travels alone.
    """

    def __init__(self, write: Write, written: int, max_bytes: int) -> None:
        self._write = write
        self._max_bytes = max_bytes
        self._pieces: list[Item] = []  # the batch's wire bytes: each item's head, then its data
        self._bytes = 0
        self.accepted = self.written = written

    async def put(self, sequence: int, data: Item) -> None:
        await self.put_many(sequence, [data])

    async def put_many(self, sequence: int, items: list[Item]) -> None:
        pieces, limit, head_of = self._pieces, self._max_bytes, wire.item_head
        for data in items:
            head = head_of(sequence, len(data))
            size = len(head) + len(data)
            if self._bytes and self._bytes + size > limit:
                await self.flush()
                pieces = self._pieces
            pieces.append(head)
            pieces.append(data)
            self._bytes += size
            self.accepted = sequence or self.accepted
            sequence += 1

    async def flush(self) -> None:
        if not self._bytes:
            return
        pieces, self._pieces, self._bytes = self._pieces, [], 0
        await self._write(b"".join(pieces))
        self.written = self.accepted
