"""NATS connections for the edge's readers, a bounded number of readers on each.

nats-server cuts a client off as a slow consumer once more than its `max_pending`
(64 MiB by default) waits to be read on one connection. Every reader may have up to
`EDGE_STREAM_BUFFER_BYTES` requested, so a thousand readers on one connection could be
owed gigabytes; spread over connections of `EDGE_READERS_PER_CONNECTION` readers each,
what one connection can be owed stays under the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client
from nats.errors import ConnectionClosedError

_LINGER = 2.0  # seconds an idle connection stays open for the next reader


class ReaderPool:
    """Hands each reader the least busy connection with room, opening one when none has.

    A connection left without readers closes after a short linger.
    """

    def __init__(
        self, connect: Callable[[], Awaitable[Client | None]], per_connection: int, timeout: float
    ) -> None:
        self._connect = connect
        self._per_connection = per_connection
        self._timeout = timeout
        self._readers: dict[Client, int] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Future[None]] = set()

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Client]:
        """A connection for one reader, for the duration of the block."""
        nc = await self._acquire()
        try:
            yield nc
        finally:
            self._readers[nc] -= 1
            if not self._readers[nc]:
                asyncio.get_running_loop().call_later(_LINGER, self._close_if_idle, nc)

    @property
    def connections(self) -> int:
        """Connections open for readers."""
        return len(self._readers)

    async def close(self) -> None:
        """Close every reader connection."""
        for nc in list(self._readers):
            with contextlib.suppress(Exception):
                await nc.close()
        self._readers.clear()

    def _close_if_idle(self, nc: Client) -> None:
        if self._readers.get(nc) == 0:
            del self._readers[nc]
            task = asyncio.ensure_future(nc.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _acquire(self) -> Client:
        async with self._lock:
            for closed in [nc for nc in self._readers if nc.is_closed]:
                del self._readers[closed]
            nc = min(self._readers, key=self._readers.__getitem__, default=None)
            if nc is None or self._readers[nc] >= self._per_connection:
                nc = await asyncio.wait_for(self._connect(), self._timeout)
                if nc is None:
                    raise ConnectionClosedError
                self._readers[nc] = 0
            self._readers[nc] += 1
            return nc
