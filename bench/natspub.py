"""Baseline N: plain nats-py publishing stamped chunks, core or JetStream, one stream per task."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import nats
from nats.js import JetStreamContext
from nats.js.errors import APIError

from bench.payload import chunk, filler
from bench.procstat import own_usage
from streamer_common.natsio import barrier


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.natspub")
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--jetstream", action="store_true", help="publish and await each ack")
    return parser.parse_args()


async def stored(js: JetStreamContext, subject: str, payload: bytes) -> None:
    """A JetStream publish, repeated while nats-server's ingest queue is full (429, not stored).

    With a thousand streams of 1 MiB chunks, a gigabyte waits to be stored at once: more than
    nats-server's `max_buffered_size`. The producers back off the same way.
    """
    pause = 0.01
    while True:
        try:
            await js.publish(subject, payload, timeout=120)
            return
        except APIError as error:
            if error.err_code != 10167:
                raise
        await asyncio.sleep(pause * random.uniform(0.5, 1.0))
        pause = min(1.0, pause * 2)


async def publish(args: argparse.Namespace) -> None:
    """Every stream's chunks, streams concurrently, each stream in order."""
    nc = await nats.connect(args.url)
    js = nc.jetstream()
    tail = filler(args.size)
    cpu_at_start = time.process_time()
    print(f"start {time.monotonic()}", flush=True)

    async def one(index: int) -> None:
        subject = f"{args.prefix}.{index}"
        for sequence in range(args.count):
            if args.jetstream:
                await stored(js, subject, chunk(sequence, args.size, tail))
            else:
                await nc.publish(subject, chunk(sequence, args.size, tail))

    try:
        await asyncio.gather(*(one(index) for index in range(args.streams)))
        await barrier(nc)
    finally:
        await nc.close()
    print(f"usage {json.dumps(own_usage(cpu_at_start))}", flush=True)


if __name__ == "__main__":
    asyncio.run(publish(parse_args()))
