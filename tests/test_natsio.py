"""`natsio.barrier`: what was sent before it is in effect at nats-server once it returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.aio.msg import Msg

from streamer_common.natsio import barrier
from streamer_devstack.processes import NatsServer

ROUNDS = 300


async def test_a_subscription_made_before_a_barrier_hears_the_next_publish(
    tmp_path: Path,
) -> None:
    # With nc.flush() in place of the barrier, 42 of 300 of these messages went unheard.
    server = NatsServer(tmp_path, jetstream=False)
    server.start()
    try:
        async with (
            await nats.connect(server.url) as publisher,
            await nats.connect(server.url) as subscriber,
        ):
            unheard = []
            for index in range(ROUNDS):
                heard = asyncio.Event()

                async def hear(msg: Msg, heard: asyncio.Event = heard) -> None:
                    heard.set()

                sub = await subscriber.subscribe(f"barrier.{index}", cb=hear)
                await barrier(subscriber)
                await publisher.publish(f"barrier.{index}", b"")
                try:
                    await asyncio.wait_for(heard.wait(), 1.0)
                except TimeoutError:
                    unheard.append(index)
                await sub.unsubscribe()
    finally:
        server.stop()

    assert unheard == []
