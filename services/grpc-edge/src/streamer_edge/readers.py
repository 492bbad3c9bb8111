"""NATS connections for the edge's readers, a bounded number of readers on each.

nats-server cuts a client off as a slow consumer once more than its `max_pending`
(64 MiB by default) waits to be read on one connection. Every reader may have up to
`EDGE_STREAM_BUFFER_BYTES` requested, so a thousand readers on one connection could be
owed gigabytes; spread over connections of `EDGE_READERS_PER_CONNECTION` readers each,
what one connection can be owed stays under the limit. The readers of a connection take
their replies on its one `SharedInbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client
from nats.errors import ConnectionClosedError

from streamer_common.inbox import SharedInbox

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
        self._readers: dict[SharedInbox, int] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Future[None]] = set()

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[SharedInbox]:
        """A connection for one reader (by its inbox), for the duration of the block."""
        inbox = await self._acquire()
        try:
            yield inbox
        finally:
            self._readers[inbox] -= 1
            if not self._readers[inbox]:
                asyncio.get_running_loop().call_later(_LINGER, self._close_if_idle, inbox)

    @property
    def connections(self) -> int:
        """Connections open for readers."""
        return len(self._readers)

    async def close(self) -> None:
        """Close every reader connection."""
        for inbox in list(self._readers):
            with contextlib.suppress(Exception):
                await inbox.nc.close()
        self._readers.clear()

    def _close_if_idle(self, inbox: SharedInbox) -> None:
        if self._readers.get(inbox) == 0:
            del self._readers[inbox]
            task = asyncio.ensure_future(inbox.nc.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _acquire(self) -> SharedInbox:
        async with self._lock:
            for closed in [inbox for inbox in self._readers if inbox.nc.is_closed]:
                del self._readers[closed]
            inbox = min(self._readers, key=self._readers.__getitem__, default=None)
            if inbox is None or self._readers[inbox] >= self._per_connection:
                nc = await asyncio.wait_for(self._connect(), self._timeout)
                if nc is None:
                    raise ConnectionClosedError
                inbox = SharedInbox(nc)
                self._readers[inbox] = 0
            self._readers[inbox] += 1
            return inbox
