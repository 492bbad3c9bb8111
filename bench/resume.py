"""What resuming near the end of a long stream costs: `python -m bench.resume`.

Starts the stack as the benchmark does and writes `--streams` streams of `--count` chunks
of `--size` bytes. Then, in alternating rounds, replays them whole (`after_sequence` 0) and
resumes them for their last chunk (`after_sequence` = count - 1), all streams at once, and
prints for each the seconds until every call ended, the edge's CPU seconds and the bytes
nats-server sent the edge. Before the
edge searched for where to resume, a resume read from NATS every byte that a replay does
(tests/test_resume.py measured 26.3 MB of a 26.2 MB stream), so the replay is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from bench.procstat import cpu_seconds
from bench.runner import bench_stack
from streamer_common.proto import stream_pb2, stream_pb2_grpc
from streamer_devstack.stack import Stack


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.resume", description=__doc__)
    parser.add_argument("--count", type=int, default=4096, help="chunks in the stream")
    parser.add_argument("--size", type=int, default=65536, help="bytes per chunk")
    parser.add_argument("--streams", type=int, default=1, help="streams, called at once")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


async def calls(stack: Stack, requests: list[stream_pb2.Request]) -> list[int]:
    """Make every call at once and read each to its end; the data items each brought."""
    credentials = grpc.ssl_channel_credentials(stack.tls.cert.read_bytes())
    async with grpc.aio.secure_channel(stack.target, credentials) as chan:
        stub = stream_pb2_grpc.StreamerStub(chan)

        async def call(request: stream_pb2.Request) -> int:
            items = 0
            async for data in stub.Stream(request, timeout=600):
                items += data.sequence != 0
            return items

        return await asyncio.gather(*map(call, requests))


def measured(
    stack: Stack, requests: list[stream_pb2.Request], expect: int
) -> tuple[float, float, int]:
    """The calls' seconds, the edge's CPU seconds and the bytes it read from NATS."""
    assert stack.edge is not None
    cpu, read = cpu_seconds(stack.edge.pid), stack.nats.bytes_sent("streamer-edge")
    began = time.monotonic()
    for request, items in zip(requests, asyncio.run(calls(stack, requests)), strict=True):
        if items != expect:
            after = request.after_sequence
            raise SystemExit(f"{request.id} after {after}: {items} items, not {expect}")
    return (
        time.monotonic() - began,
        cpu_seconds(stack.edge.pid) - cpu,
        stack.nats.bytes_sent("streamer-edge") - read,
    )


def figures(measure: tuple[float, float, int]) -> str:
    """What `measured` returned, in words."""
    seconds, cpu, read = measure
    return f"{seconds:.3f} s, edge CPU {cpu:.3f} s, read {read / 1e6:.2f} MB"


def main() -> None:
    """Write the streams, then alternate replays and resumes, printing each."""
    args = parse_args()
    params = {"count": str(args.count), "size": str(args.size)}
    prefix = f"resume{time.time_ns()}"
    ids = [f"{prefix}-{index}" for index in range(args.streams)]
    streams = [stream_pb2.Request(id=id_, job="bench", params=params) for id_ in ids]
    resumes = [
        stream_pb2.Request(id=id_, job="bench", params=params, after_sequence=args.count - 1)
        for id_ in ids
    ]
    with tempfile.TemporaryDirectory(prefix="streamer-resume-") as tmp:
        stack = bench_stack(Path(tmp), args.streams)
        with stack.running():
            asyncio.run(calls(stack, streams))  # the jobs write them; unmeasured
            for round_ in range(1, args.rounds + 1):
                replay = measured(stack, streams, args.count)
                near_end = measured(stack, resumes, 1)
                print(
                    f"round {round_}: {args.streams} x {args.count} x {args.size} B; "
                    f"replay {figures(replay)}; resume for the last chunk {figures(near_end)}: "
                    f"{near_end[0] / replay[0]:.4f} of the replay's time, "
                    f"{near_end[2] / replay[2]:.4f} of its bytes",
                    flush=True,
                )


if __name__ == "__main__":
    main()
