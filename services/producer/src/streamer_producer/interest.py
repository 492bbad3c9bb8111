"""Watches whether any edge still has a client reading a stream."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from streamer_common.topology import interest_subject

MISSES_TO_STOP = 2
SILENCES_TO_STOP = 8


async def wait_until_unread(nc: Client, stream_id: str, interval: float) -> None:
    """Return once no edge has answered for `stream_id`.

    Two definite "no responders" in a row stop the job; so do eight checks in a row with
    no answer at all (a broken path to the edges). Stopping is safe either way: a reader
    that is still there sees the `stopped` marker and queues the job again.
    """
    misses = silences = 0
    while misses < MISSES_TO_STOP and silences < SILENCES_TO_STOP:
        await asyncio.sleep(interval)
        try:
            await nc.request(interest_subject(stream_id), b"", timeout=interval)
            misses = silences = 0
        except NoRespondersError:
            misses += 1
        except (NatsError, OSError, TimeoutError):
            silences += 1
