"""Watches whether any edge still has a client reading a stream."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from streamer_common.topology import interest_subject

MISSES_TO_STOP = 2


async def wait_until_unread(nc: Client, stream_id: str, interval: float) -> None:
    """Return once no edge has answered for `stream_id` on two checks in a row.

    Only a definite "no responders" counts as a miss: a timeout or a dropped connection
    says nothing about the readers, so it never stops a job on its own.
    """
    misses = 0
    while misses < MISSES_TO_STOP:
        await asyncio.sleep(interval)
        try:
            await nc.request(interest_subject(stream_id), b"", timeout=interval)
            misses = 0
        except NoRespondersError:
            misses += 1
        except (NatsError, OSError, TimeoutError):
            continue
