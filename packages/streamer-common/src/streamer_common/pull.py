"""Pull from a JetStream consumer with one request outstanding, bounded in bytes.

Only one pull request is open at a time and it asks for at most `max_bytes`, so the
messages a reader holds or has in flight never exceed that bound, however slow the
reader is: this is the edge's backpressure. Replies come on a subscription of the
consumer's own, or on a route of a `SharedInbox` on the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

from streamer_common.inbox import SharedInbox

_TERMINAL_409 = ("Consumer Deleted", "Consumer is push based")


class ConsumerGone(Exception):
    """The consumer no longer exists on the server (deleted, or lost in a restart)."""


class PullConsumer:
    """Fetches batches from one consumer of `stream`, never more than `max_bytes` in flight."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        *,
        batch: int,
        max_bytes: int,
        expires: float = 5.0,
        inbox: SharedInbox | None = None,
    ) -> None:
        self._nc = nc
        self._inbox = inbox
        self._consumer = consumer
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.batch = batch  # messages asked for by the next request
        self._request_batch = batch
        self._max_bytes = max_bytes
        self._expires = expires
        self._sub: Subscription | None = None
        self._reply = ""
        self._open_until = 0.0
        self._epoch = -1
        self._released = False
        self._received = 0
        self._received_bytes = 0
        self._arrived: deque[Msg] = deque()
        self._signal = asyncio.Event()

    async def __aenter__(self) -> PullConsumer:
        if self._inbox is not None:
            self._reply = await self._inbox.route(self._consumer, self._arrive)
        else:
            self._sub = await self._nc.subscribe(self._nc.new_inbox(), cb=self._on_msg)
            self._reply = self._sub.subject
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._inbox is not None and self._reply:
            self._inbox.drop(self._consumer)
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        self._reply = ""

    def _arrive(self, msg: Msg) -> None:
        self._arrived.append(msg)
        self._signal.set()

    async def _on_msg(self, msg: Msg) -> None:
        self._arrive(msg)

    async def _request(self) -> None:
        assert self._reply, "used outside its async with block"
        self._request_batch = self.batch
        request = {
            "batch": self._request_batch,
            "max_bytes": self._max_bytes,
            "expires": int(self._expires * 1e9),
        }
        await self._nc.publish(self._next_subject, json.dumps(request).encode(), self._reply)
        self._open_until = time.monotonic() + self._expires + 1.0
        self._epoch = self._nc.stats["reconnects"]
        self._received = self._received_bytes = 0

    async def fetch(self, timeout: float) -> list[Msg]:
        """Messages available within `timeout` seconds (possibly none); ConsumerGone if gone."""
        deadline = time.monotonic() + timeout
        while True:
            closed = time.monotonic() >= self._open_until
            # A reconnect loses the open request along with the old connection.
            if (closed or self._epoch != self._nc.stats["reconnects"]) and not self._released:
                await self._request()
            elif closed and not self._arrived:
                return []
            if not self._arrived:
                self._signal.clear()
                wait = min(deadline, self._open_until) - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.001)):  # no task per wait
                        await self._signal.wait()
            messages: list[Msg] = []
            while self._arrived:
                self._take(self._arrived.popleft(), messages)
            if messages or time.monotonic() >= deadline:
                return messages

    def _take(self, msg: Msg, messages: list[Msg]) -> None:
        headers = msg.headers or {}
        status = None if msg.data else headers.get("Status")
        if status is None:
            messages.append(msg)
            self._received += 1
            self._received_bytes += len(msg.data)
            if self._received >= self._request_batch or self._received_bytes >= self._max_bytes:
                self._open_until = 0.0
            return
        description = str(headers.get(Header.DESCRIPTION, ""))
        if status == "503" or (status == "409" and description.startswith(_TERMINAL_409)):
            raise ConsumerGone(description or "no JetStream responder for the consumer")
        if status != "100":
            self._open_until = 0.0

    async def release(self, timeout: float) -> list[Msg]:
        """Stop pulling: collect what the open request still delivers within `timeout`."""
        self._released = True
        self._open_until = min(self._open_until, time.monotonic() + timeout)
        leftovers: list[Msg] = []
        while batch := await self.fetch(timeout):
            leftovers += batch
        return leftovers
