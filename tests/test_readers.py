"""The edge spreads its readers over NATS connections, each with one inbox for their replies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from conftest import StackFactory
from streamer_common.inbox import SharedInbox
from streamer_common.pull import ConsumerGone, PullConsumer
from streamer_devstack.processes import NatsServer
from streamer_devstack.stack import Stack
from support import collect, new_id, request

READER = "streamer-edge-reader"


async def test_readers_share_connections_of_the_configured_size(make_stack: StackFactory) -> None:
    stack = make_stack(edge={"EDGE_READERS_PER_CONNECTION": "2"})
    results = await asyncio.gather(
        *(
            collect(stack.target, stack.tls.cert, request(new_id(), count=30, interval_ms=20))
            for _ in range(5)
        )
    )
    readers = subscriptions_of(stack.nats, READER)

    for result in results:
        result.assert_complete(30)
    assert len(readers) == 3, "five readers, at most two per connection"


async def test_readers_on_a_connection_share_one_subscription(make_stack: StackFactory) -> None:
    stack = make_stack(edge={"EDGE_READERS_PER_CONNECTION": "8"})
    calls = asyncio.gather(
        *(
            collect(stack.target, stack.tls.cert, request(new_id(), count=40, interval_ms=50))
            for _ in range(4)
        )
    )
    readers = subscriptions = 0
    while not calls.done():
        readers = max(readers, consumers_on(stack, "STREAMER_DATA"))
        subscriptions = max(subscriptions, *subscriptions_of(stack.nats, READER), 0)
        await asyncio.sleep(0.05)

    for result in await calls:
        result.assert_complete(40)
    assert readers == 4, "four readers followed their streams at once"
    # nats-py's inbox for the consumers' API requests, and the readers' one for pull replies.
    assert subscriptions == 2, "one subscription for all four readers' pulls"


async def test_a_shared_inbox_hands_each_pull_consumer_its_own_messages(tmp_path: Path) -> None:
    server = NatsServer(tmp_path)
    server.start()
    nc = await nats.connect(server.url, name="inbox-test")
    try:
        js = nc.jetstream()
        await js.add_stream(name="INBOX", subjects=["inbox.>"])
        names = {}
        for key in "ab":
            config = ConsumerConfig(filter_subject=f"inbox.{key}", ack_policy=AckPolicy.NONE)
            names[key] = (await js.add_consumer("INBOX", config)).name
        for subject, data in (("a", b"1"), ("b", b"2"), ("a", b"3")):
            await js.publish(f"inbox.{subject}", data)
        (before,) = subscriptions_of(server, "inbox-test")  # nats-py's own, for API requests
        inbox = SharedInbox(nc)
        async with (
            pull(inbox, names["a"]) as a,
            pull(inbox, names["b"]) as b,
        ):
            got = {"a": await fetch_all(a, 2), "b": await fetch_all(b, 1)}
            routed = inbox.routes
            (subscriptions,) = subscriptions_of(server, "inbox-test")
            with pytest.raises(ValueError, match="already has a reader"):
                await inbox.route(names["a"], lambda msg: None)
            await js.delete_consumer("INBOX", names["a"])
            with pytest.raises(ConsumerGone):  # its status came on its own reply subject
                await a.fetch(5)

        assert got == {"a": [b"1", b"3"], "b": [b"2"]}
        assert routed == 2
        assert inbox.routes == 0
        assert subscriptions == before + 1, "one subscription for both consumers"
    finally:
        await nc.close()
        server.stop()


def pull(inbox: SharedInbox, consumer: str) -> PullConsumer:
    """A reader of `consumer` on the stream INBOX, replies through `inbox`."""
    return PullConsumer(inbox.nc, "INBOX", consumer, batch=10, max_bytes=2**20, inbox=inbox)


async def fetch_all(puller: PullConsumer, count: int) -> list[bytes]:
    """The data of the next `count` messages."""
    got: list[bytes] = []
    while len(got) < count:
        got += [msg.data for msg in await puller.fetch(5)]
    return got


def consumers_on(stack: Stack, stream: str) -> int:
    """Consumers nats-server has on `stream` now."""
    details = stack.nats.monitor("jsz?streams=true")["account_details"]
    counts = [
        s["state"]["consumer_count"]
        for account in details
        for s in account.get("stream_detail", [])
        if s["name"] == stream
    ]
    return sum(counts)


def subscriptions_of(server: NatsServer, name: str) -> list[int]:
    """Subscriptions of each connection called `name`."""
    connections = server.monitor("connz?limit=1000")["connections"]
    return [c["subscriptions"] for c in connections if c.get("name") == name]
