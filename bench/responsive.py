"""Answers under load: `python -m bench.responsive --method batches --size 1024 --streams 100`.

Starts the stack as the benchmark does and runs `--rounds` client loads. While each lasts,
it checks the edge's health every 50 ms and starts a one-chunk `Stream` call every 0.2 s,
on a channel of its own, then prints percentiles of both: how long a Kubernetes probe and
a new call wait on an edge that every stream keeps busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.runner import Load, bench_stack
from streamer_common.proto import stream_pb2, stream_pb2_grpc
from streamer_devstack.stack import Stack

HEALTH_EVERY = 0.05
CALL_EVERY = 0.2
SETTLE = 0.7  # seconds for the load's calls to start before probing begins


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.responsive", description=__doc__)
    parser.add_argument("--method", choices=["stream", "batches"], default="batches")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--count", type=int, default=6000, help="chunks per stream")
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args()


def start_load(stack: Stack, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """The client load, running in the background."""
    return Load(
        stack.tls.cert,
        stack.target,
        args.method,
        f"load{time.time_ns()}",
        args.streams,
        args.count,
        args.size,
    ).start()


def percentiles(name: str, seconds: list[float]) -> str:
    """`name n .. p50 .. p90 .. max .. ms` of the waits measured."""
    if not seconds:
        return f"{name} n 0"
    ms = sorted(s * 1000 for s in seconds)
    p50, p90 = ms[len(ms) // 2], ms[len(ms) * 9 // 10]
    return f"{name} n {len(ms)} p50 {p50:.0f} p90 {p90:.0f} max {ms[-1]:.0f} ms"


async def probe(stack: Stack, load: subprocess.Popen[bytes]) -> str:
    """Health checks and one-chunk calls for as long as `load` runs."""
    credentials = grpc.ssl_channel_credentials(stack.tls.cert.read_bytes())
    health: list[float] = []
    first_chunk: list[float] = []
    async with grpc.aio.secure_channel(stack.target, credentials) as channel:
        checks = health_pb2_grpc.HealthStub(channel)
        streamer = stream_pb2_grpc.StreamerStub(channel)
        await checks.Check(health_pb2.HealthCheckRequest())

        async def check_health() -> None:
            while load.poll() is None:
                began = time.monotonic()
                await checks.Check(health_pb2.HealthCheckRequest(), timeout=30)
                health.append(time.monotonic() - began)
                await asyncio.sleep(HEALTH_EVERY)

        async def start_calls() -> None:
            while load.poll() is None:
                request = stream_pb2.Request(
                    id=f"probe{time.time_ns()}", job="bench", params={"count": "1", "size": "64"}
                )
                began, first = time.monotonic(), 0.0
                async for _ in streamer.Stream(request, timeout=60):
                    first = first or time.monotonic()
                if load.poll() is None:
                    first_chunk.append(first - began)
                await asyncio.sleep(CALL_EVERY)

        await asyncio.sleep(SETTLE)
        await asyncio.gather(check_health(), start_calls())
    return f"{percentiles('health', health)}; {percentiles('new call first chunk', first_chunk)}"


def main() -> None:
    """Start the stack, then load and probe it `--rounds` times."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-responsive-") as tmp:
        stack = bench_stack(Path(tmp), args.streams + 1)
        with stack.running():
            for round_ in range(1, args.rounds + 1):
                began = time.monotonic()
                load = start_load(stack, args)
                figures = asyncio.run(probe(stack, load))
                report = json.loads(load.communicate()[0])
                failed = sum(1 for stream in report["streams"] if stream["problem"])
                if load.returncode or failed:
                    raise SystemExit(f"the load failed: {failed} streams with a problem")
                wall = time.monotonic() - began
                print(f"round {round_}: load {wall:.1f} s; {figures}", flush=True)


if __name__ == "__main__":
    main()
