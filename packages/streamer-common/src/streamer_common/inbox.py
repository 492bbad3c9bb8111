"""One wildcard reply subject per connection, shared by the pull consumers read on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

_ACK_PREFIX = "$JS.ACK."


class SharedInbox:
    """Routes what pull requests on a connection bring back to each consumer's reader.

    JetStream delivers a message with its own subject, not the request's reply subject, and
    names the consumer in its ack subject; statuses (timeouts, a deleted consumer) come on
    the reply subject, `<inbox>.<consumer>`. A subscription of its own per pull consumer
    costs nats-py a task, a queue and about 4.7 KiB, and nats-server a SUB and an UNSUB;
    a route costs a dict entry.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = f"{nc.new_inbox()}."
        self._routes: dict[str, Callable[[Msg], None]] = {}
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()

    async def route(self, consumer: str, deliver: Callable[[Msg], None]) -> str:
        """The reply subject for pull requests on `consumer`, whose messages go to `deliver`."""
        if consumer in self._routes:
            raise ValueError(f"consumer {consumer} already has a reader on this connection")
        if self._sub is None:
            async with self._lock:
                if self._sub is None:
                    # What arrives is bounded by the pull requests' max_bytes, so nats-py's
                    # pending limits (meant for subjects nobody bounds) must not drop any.
                    self._sub = await self.nc.subscribe(
                        f"{self._prefix}*",
                        cb=self._deliver,
                        pending_msgs_limit=0,
                        pending_bytes_limit=0,
                    )
        self._routes[consumer] = deliver
        return f"{self._prefix}{consumer}"

    def drop(self, consumer: str) -> None:
        """Stop routing `consumer`'s messages: what still arrives for it is discarded."""
        self._routes.pop(consumer, None)

    @property
    def routes(self) -> int:
        """Consumers currently routed."""
        return len(self._routes)

    async def _deliver(self, msg: Msg) -> None:
        if msg.reply.startswith(_ACK_PREFIX):
            consumer = msg.metadata.consumer
        else:
            consumer = msg.subject.removeprefix(self._prefix)
        deliver = self._routes.get(consumer)
        if deliver is not None:
            deliver(msg)
