"""Tells producers which streams still have readers on this edge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from streamer_common.topology import interest_subject


class Interest:
    """Answers `streamer.interest.<id>` while at least one local client reads `<id>`.

    A producer whose request finds no responder knows nobody reads its stream any more
    and stops the job; a subscription per id makes that answer immediate.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._readers: dict[str, int] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self, stream_id: str) -> AsyncIterator[None]:
        """Declare interest in `stream_id` for the duration of the block."""
        self._readers[stream_id] = self._readers.get(stream_id, 0) + 1
        try:
            async with self._lock:
                if stream_id not in self._subscriptions:
                    self._subscriptions[stream_id] = await self._nc.subscribe(
                        interest_subject(stream_id), cb=self._answer
                    )
            yield
        finally:
            self._readers[stream_id] -= 1
            if not self._readers[stream_id]:
                del self._readers[stream_id]
            # Shielded: a handler cancelled again while unsubscribing would leave the
            # subscription answering for a stream nobody reads, and its job running.
            await asyncio.shield(self._release(stream_id))

    async def _release(self, stream_id: str) -> None:
        async with self._lock:
            if stream_id not in self._readers and stream_id in self._subscriptions:
                with contextlib.suppress(Exception):
                    await self._subscriptions.pop(stream_id).unsubscribe()

    @property
    def streams(self) -> int:
        """Number of distinct stream ids with local readers."""
        return len(self._readers)

    async def _answer(self, msg: Msg) -> None:
        if msg.reply:
            await self._nc.publish(msg.reply, b"reading")
