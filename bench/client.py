"""Load generator: read many streams at once (gRPC or NATS), check and time every chunk.

Runs as its own process so its CPU and memory are measured apart from the harness. Prints
one JSON object: per-stream tallies and a latency histogram.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import nats
from nats.js.api import AckPolicy, ConsumerConfig

from bench.hist import Histogram
from bench.payload import stamp
from bench.procstat import own_usage
from streamer_common.natsio import barrier
from streamer_common.proto import stream_pb2, stream_pb2_grpc

_STREAMS_PER_CHANNEL = 100


@dataclasses.dataclass
class Tally:
    """What one stream delivered: checked in order, exactly once, and timed."""

    chunks: int
    parts: int
    started: float = 0.0
    first: float = 0.0
    done: float = 0.0
    next_sequence: int = 1
    total_bytes: int = 0
    problem: str = ""

    def item(self, sequence: int, data: bytes, now_ns: int, hist: Histogram | None) -> None:
        """One delivered item; the first part of each chunk carries its index and emit time."""
        if self.problem:
            return
        if sequence != self.next_sequence:
            self.problem = f"expected sequence {self.next_sequence}, got {sequence}"
            return
        self.next_sequence += 1
        self.total_bytes += len(data)
        if (sequence - 1) % self.parts == 0:
            index, emitted = stamp(data)
            if index != (sequence - 1) // self.parts:
                self.problem = f"sequence {sequence} holds chunk {index}"
            elif hist is not None:
                hist.add((now_ns - emitted) / 1000)

    def end(self) -> None:
        """The end marker (or the last message) arrived."""
        self.done = time.monotonic()
        if not self.problem and self.next_sequence - 1 != self.chunks * self.parts:
            self.problem = f"ended after {self.next_sequence - 1} of {self.chunks * self.parts}"

    def to_json(self) -> dict[str, Any]:
        """Times relative to nothing in particular: only differences are meaningful."""
        return dataclasses.asdict(self)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.client")
    parser.add_argument("kind", choices=["grpc", "nats", "nats-js"])
    parser.add_argument("--target", default="", help="gRPC host:port, or the NATS URL")
    parser.add_argument("--ca-file", default="")
    parser.add_argument("--method", choices=["stream", "batches"], default="stream")
    parser.add_argument("--prefix", required=True, help="stream id (or subject) prefix")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--count", type=int, default=100, help="chunks per stream")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--part", type=int, default=256 * 1024, help="largest item size")
    parser.add_argument("--rate", type=int, default=0, help="chunks/s per stream (0: no limit)")
    parser.add_argument("--job", default="bench")
    parser.add_argument("--no-latency", action="store_true", help="chunks carry no useful time")
    parser.add_argument("--timeout", type=float, default=300)
    return parser.parse_args(argv)


async def read_grpc(
    args: argparse.Namespace,
    index: int,
    chan: grpc.aio.Channel,
    tally: Tally,
    hist: Histogram | None,
) -> None:
    """One Stream or StreamBatches call, recorded into `tally`."""
    params = {"count": str(args.count), "size": str(args.size)}
    if args.rate:
        params["rate"] = str(args.rate)
    request = stream_pb2.Request(id=f"{args.prefix}-{index}", job=args.job, params=params)
    stub = stream_pb2_grpc.StreamerStub(chan)
    batches = args.method == "batches"
    tally.started = time.monotonic()
    call = (stub.StreamBatches if batches else stub.Stream)(request, timeout=args.timeout)
    try:
        async for message in call:
            now = time.time_ns()
            tally.first = tally.first or time.monotonic()
            for data in message.items if batches else (message,):
                if data.sequence:
                    tally.item(data.sequence, data.data, now, hist)
    except grpc.aio.AioRpcError as error:
        tally.problem = tally.problem or f"{error.code().name}: {error.details()}"
    tally.end()


async def run_grpc(args: argparse.Namespace, tallies: list[Tally], hist: Histogram | None) -> None:
    """All streams at once, a channel per hundred streams."""
    credentials = grpc.ssl_channel_credentials(args.ca)
    channels = [
        grpc.aio.secure_channel(args.target, credentials)
        for _ in range(0, args.streams, _STREAMS_PER_CHANNEL)
    ]
    try:
        await asyncio.gather(
            *(
                read_grpc(args, index, channels[index // _STREAMS_PER_CHANNEL], tally, hist)
                for index, tally in enumerate(tallies)
            )
        )
    finally:
        for chan in channels:
            await chan.close()


async def run_nats(args: argparse.Namespace, tallies: list[Tally], hist: Histogram | None) -> None:
    """Subscribe to `<prefix>.*` (core, or a JetStream pull consumer) until every stream is done."""
    nc = await nats.connect(args.target, pending_size=1024 * 1024 * 1024)
    remaining = len(tallies)
    finished = asyncio.Event()
    for tally in tallies:
        tally.started = time.monotonic()

    def on_message(subject: str, data: bytes, now: int) -> None:
        nonlocal remaining
        tally = tallies[int(subject.rsplit(".", 1)[1])]
        tally.first = tally.first or time.monotonic()
        index, _ = stamp(data)
        tally.item(index + 1, data, now, hist)
        if tally.next_sequence > tally.chunks:
            tally.end()
            remaining -= 1
            if not remaining:
                finished.set()

    async def on_core(msg: Any) -> None:
        on_message(msg.subject, msg.data, time.time_ns())

    try:
        if args.kind == "nats":
            await nc.subscribe(
                f"{args.prefix}.*", cb=on_core, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
            await barrier(nc)
            print("ready", file=sys.stderr, flush=True)
            await asyncio.wait_for(finished.wait(), args.timeout)
        else:
            js = nc.jetstream()
            await js.add_stream(name=f"BENCH_{args.prefix}", subjects=[f"{args.prefix}.*"])
            sub = await js.pull_subscribe(
                f"{args.prefix}.*", durable=None, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
            )
            print("ready", file=sys.stderr, flush=True)
            # nats-py's fetch has no byte bound: keep what one fetch brings under 32 MiB, or
            # nats-server cuts the connection off as a slow consumer (max_pending, 64 MiB),
            # as the edge's readers bound theirs.
            batch = max(1, min(1024, (32 << 20) // max(args.size, 1)))
            deadline = time.monotonic() + args.timeout
            while not finished.is_set() and time.monotonic() < deadline:
                try:
                    messages = await sub.fetch(batch, timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                now = time.time_ns()
                for msg in messages:
                    on_message(msg.subject, msg.data, now)
    except TimeoutError:
        pass
    finally:
        if args.kind == "nats-js":
            await nc.jetstream().delete_stream(f"BENCH_{args.prefix}")
        await nc.close()
    for tally in tallies:
        if not tally.done:
            tally.end()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load and summarise it."""
    cpu_at_start = time.process_time()
    parts = max(1, -(-args.size // args.part))
    tallies = [Tally(args.count, parts if args.kind == "grpc" else 1) for _ in range(args.streams)]
    hist = None if args.no_latency else Histogram()
    if args.kind == "grpc":
        await run_grpc(args, tallies, hist)
    else:
        await run_nats(args, tallies, hist)
    return {
        "streams": [tally.to_json() for tally in tallies],
        "histogram": hist.to_json() if hist is not None else None,
        "usage": own_usage(cpu_at_start),
    }


def main() -> None:
    """Entry point: JSON on stdout."""
    args = parse_args()
    args.ca = Path(args.ca_file).read_bytes() if args.ca_file else b""
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
