"""CPU per JetStream operation of a call start: `python -m bench.jsops --calls 2000`.

Starts a nats-server, stores one message on each of `--calls` subjects of a stream shaped
like the data stream, then times rounds of `--calls` concurrent operations of each kind,
alternating, and prints the CPU nats-server and this client spent per operation:

- `state`: the stream-state read (the subject's last message, a direct get);
- `consumer`: what a reader costs now (an ephemeral consumer, one pull, its delete);
- `direct`: reading the same messages without a consumer (a batched direct get).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from bench.procstat import cpu_seconds
from streamer_devstack.processes import NatsServer

_STREAM = "DATA"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.jsops", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def operations(nc: Client) -> dict[str, Callable[[int], Awaitable[None]]]:
    """Each operation, on subject `stream.s<index>`."""
    js = nc.jetstream()

    async def state(index: int) -> None:
        await js.get_last_msg(_STREAM, f"stream.s{index}", direct=True)

    async def replies(subject: str, request: dict[str, object], until: str) -> None:
        """Send `request` and read replies until one with status `until` ("data": a message)."""
        sub = await nc.subscribe(nc.new_inbox())
        try:
            await nc.publish(subject, json.dumps(request).encode(), sub.subject)
            while ((await sub.next_msg(5)).headers or {}).get("Status", "data") != until:
                pass
        finally:
            await sub.unsubscribe()

    async def consumer(index: int) -> None:
        config = ConsumerConfig(
            filter_subject=f"stream.s{index}",
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
        )
        info = await js.add_consumer(_STREAM, config)
        pull = {"batch": 10, "no_wait": True}
        await replies(f"$JS.API.CONSUMER.MSG.NEXT.{_STREAM}.{info.name}", pull, "data")
        await nc.publish(f"$JS.API.CONSUMER.DELETE.{_STREAM}.{info.name}")

    async def direct(index: int) -> None:
        get = {"seq": 1, "next_by_subj": f"stream.s{index}", "batch": 10}
        await replies(f"$JS.API.DIRECT.GET.{_STREAM}", get, "204")

    return {"state": state, "consumer": consumer, "direct": direct}


async def measure(args: argparse.Namespace, server: NatsServer) -> None:
    """Store the messages, then alternate rounds of each operation."""
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        config = StreamConfig(
            name=_STREAM,
            subjects=["stream.*"],
            storage=StorageType.FILE,
            allow_direct=True,
            max_consumers=3 * args.calls,  # room for deletes still in flight from a round
        )
        await js.add_stream(config)
        for index in range(args.calls):
            await js.publish(f"stream.s{index}", b"x" * 64)
        ops = operations(nc)
        for round_ in range(1, args.rounds + 1):
            figures = []
            for name, op in ops.items():
                server_before, client_before = cpu_seconds(server.pid), time.process_time()
                await asyncio.gather(*(op(index) for index in range(args.calls)))
                served = (cpu_seconds(server.pid) - server_before) * 1e6 / args.calls
                asked = (time.process_time() - client_before) * 1e6 / args.calls
                figures.append(f"{name} nats-server {served:.0f} client {asked:.0f}")
            print(f"round {round_}: CPU µs per operation: {'; '.join(figures)}", flush=True)
    finally:
        await nc.close()


def main() -> None:
    """Start nats-server, measure, stop it."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-jsops-") as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        try:
            asyncio.run(measure(args, server))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
