"""Many concurrent streams complete, and leave nothing behind on the edge or NATS."""

from __future__ import annotations

import asyncio
import re
import urllib.request

from conftest import StackFactory
from support import collect, new_id, request, wait_until


def edge_subscriptions(stack: object) -> int:
    """Subscriptions the edge's NATS connection holds right now."""
    connz = stack.nats.monitor("connz?subs=1")  # type: ignore[attr-defined]
    return sum(c["subscriptions"] for c in connz["connections"] if c.get("name") == "streamer-edge")


def edge_tasks(stack: object) -> int:
    """asyncio tasks alive in the edge, from its metrics endpoint."""
    port = stack.edge.ready["metrics_port"]  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(float(re.search(r"^streamer_edge_asyncio_tasks (\S+)$", text, re.M).group(1)))  # type: ignore[union-attr]


def data_consumers(stack: object) -> int:
    """Consumers on the data stream (the edge makes one per call)."""
    jsz = stack.nats.monitor("jsz?consumers=1")  # type: ignore[attr-defined]
    details = jsz.get("account_details") or [{}]
    streams = details[0].get("stream_detail") or []
    return sum(s["state"].get("consumer_count", 0) for s in streams if s["name"] == "STREAMER_DATA")


async def test_two_hundred_concurrent_streams_complete_without_leaks(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        producers=2,
        producer={"PRODUCER_CONCURRENCY": "100"},
        edge={"EDGE_FIRST_CHUNK_TIMEOUT": "60s"},
    )
    baseline = edge_subscriptions(stack)
    idle_tasks = edge_tasks(stack)
    ids = [new_id() for _ in range(200)]

    results = await asyncio.gather(
        *(
            collect(
                stack.target,
                stack.tls.cert,
                request(stream_id, count=20, interval_ms=10),
                timeout=120,
            )
            for stream_id in ids
        )
    )

    for result in results:
        result.assert_complete(20)
    await wait_until(lambda: edge_subscriptions(stack) == baseline, 10)
    await wait_until(lambda: data_consumers(stack) == 0, 10)
    await wait_until(lambda: edge_tasks(stack) <= idle_tasks, 10)
