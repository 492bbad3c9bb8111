"""Watches whether any edge still has a client reading a stream, from the edges' announcements."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from streamer_common.interest import ANNOUNCEMENTS, INTERVAL_HEADER, decode_keys, reader_key
from streamer_common.natsio import barrier

logger = logging.getLogger(__name__)

MISSES_TO_STOP = 2
SILENCES_TO_FORGET = 8


@dataclasses.dataclass(frozen=True)
class _Edge:
    heard: float
    interval: float
    keys: frozenset[int]


class ReaderWatch:
    """The streams each edge last announced it reads, forgotten once an edge falls silent.

    A job stops after two checks in a row find its stream in no live edge's announcement.
    An edge is live until it has missed eight of its intervals (crashed, cut off from NATS,
    or this producer cut off), so an edge that announces late stops nothing. Stopping is safe
    either way: a reader that is still there sees the `stopped` marker and queues the job
    again.
    """

    def __init__(self, nc: Client, interval: float) -> None:
        self._nc = nc
        self._interval = interval
        self._edges: dict[str, _Edge] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Listen to every edge's announcements."""
        self._sub = await self._nc.subscribe(ANNOUNCEMENTS, cb=self._heard)
        await barrier(self._nc)

    async def stop(self) -> None:
        """Stop listening (safe to call twice)."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()

    async def wait_until_unread(self, stream_id: str) -> None:
        """Return once no live edge has announced `stream_id` at two checks in a row."""
        key = reader_key(stream_id)
        misses = 0
        while misses < MISSES_TO_STOP:
            # Two checks are at least one interval of every edge apart, so an announcement
            # sent before this job was queued is followed by one that names it before the
            # second check, unless the edge is late by more than an interval.
            await asyncio.sleep(self._period())
            misses = 0 if self.is_read(key) else misses + 1

    def is_read(self, key: int) -> bool:
        """Whether a live edge's last announcement has the stream of `key`."""
        return any(key in edge.keys for edge in self._live())

    @property
    def edges(self) -> int:
        """Edges heard from and not yet forgotten."""
        return len(self._live())

    def _live(self) -> list[_Edge]:
        now = time.monotonic()
        for name, edge in list(self._edges.items()):
            if now - edge.heard > SILENCES_TO_FORGET * edge.interval:
                del self._edges[name]
        return list(self._edges.values())

    def _period(self) -> float:
        return max([self._interval, *(edge.interval for edge in self._edges.values())])

    async def _heard(self, msg: Msg) -> None:
        try:
            interval = float((msg.headers or {})[INTERVAL_HEADER])
            if not 0 < interval <= 60:
                raise ValueError(f"interval {interval} is not 0 to 60 s")
            keys = decode_keys(msg.data)
        except (KeyError, ValueError) as error:
            logger.warning(
                "ignoring a malformed announcement",
                extra={"subject": msg.subject, "error": repr(error)},
            )
            return
        edge = msg.subject.rpartition(".")[2]
        self._edges[edge] = _Edge(time.monotonic(), interval, keys)
