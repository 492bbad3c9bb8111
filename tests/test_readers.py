"""The edge spreads its readers over NATS connections, so none is cut off as a slow consumer."""

from __future__ import annotations

import asyncio

from conftest import StackFactory
from support import collect, new_id, request


async def test_readers_share_connections_of_the_configured_size(make_stack: StackFactory) -> None:
    stack = make_stack(edge={"EDGE_READERS_PER_CONNECTION": "2"})
    results = await asyncio.gather(
        *(
            collect(stack.target, stack.tls.cert, request(new_id(), count=30, interval_ms=20))
            for _ in range(5)
        )
    )
    connections = stack.nats.monitor("connz?limit=1000")["connections"]
    readers = [c for c in connections if c.get("name") == "streamer-edge-reader"]

    for result in results:
        result.assert_complete(30)
    assert len(readers) == 3, "five readers, at most two per connection"
