"""What resuming near the end of a long stream costs: `python -m bench.resume`.

Starts the stack as the benchmark does and writes one stream of `--count` chunks of
`--size` bytes. Then, in alternating rounds, replays it whole (`after_sequence` 0) and
resumes it for its last chunk (`after_sequence` = count - 1), and prints for each the
call's seconds, the edge's CPU seconds and the bytes nats-server sent the edge. Before the
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
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


async def call(stack: Stack, request: stream_pb2.Request) -> int:
    """Read the whole call; the number of data items it brought."""
    credentials = grpc.ssl_channel_credentials(stack.tls.cert.read_bytes())
    items = 0
    async with grpc.aio.secure_channel(stack.target, credentials) as chan:
        async for data in stream_pb2_grpc.StreamerStub(chan).Stream(request, timeout=600):
            items += data.sequence != 0
    return items


def edge_bytes_from_nats(stack: Stack) -> int:
    """Bytes nats-server has sent the edge's connections so far."""
    connections = stack.nats.monitor("connz?limit=1000")["connections"]
    return sum(c["out_bytes"] for c in connections if c.get("name", "").startswith("streamer-edge"))


def measured(stack: Stack, request: stream_pb2.Request, expect: int) -> tuple[float, float, int]:
    """One call's seconds, the edge's CPU seconds and the bytes it read from NATS."""
    assert stack.edge is not None
    cpu, read, began = cpu_seconds(stack.edge.pid), edge_bytes_from_nats(stack), time.monotonic()
    items = asyncio.run(call(stack, request))
    if items != expect:
        after = request.after_sequence
        raise SystemExit(f"{request.id} after {after}: {items} items, not {expect}")
    return (
        time.monotonic() - began,
        cpu_seconds(stack.edge.pid) - cpu,
        edge_bytes_from_nats(stack) - read,
    )


def main() -> None:
    """Write the stream, then alternate replays and resumes, printing each."""
    args = parse_args()
    params = {"count": str(args.count), "size": str(args.size)}
    stream = stream_pb2.Request(id=f"resume{time.time_ns()}", job="bench", params=params)
    with tempfile.TemporaryDirectory(prefix="streamer-resume-") as tmp:
        stack = bench_stack(Path(tmp), 10)
        with stack.running():
            asyncio.run(call(stack, stream))  # the job writes it; unmeasured
            resume = stream_pb2.Request()
            resume.CopyFrom(stream)
            resume.after_sequence = args.count - 1
            for round_ in range(1, args.rounds + 1):
                replay = measured(stack, stream, args.count)
                near_end = measured(stack, resume, 1)
                print(
                    f"round {round_}: {args.count} x {args.size} B; replay {replay[0]:.3f} s, "
                    f"edge CPU {replay[1]:.3f} s, read {replay[2] / 1e6:.1f} MB; resume for the "
                    f"last chunk {near_end[0]:.3f} s, edge CPU {near_end[1]:.3f} s, read "
                    f"{near_end[2] / 1e6:.2f} MB: {near_end[0] / replay[0]:.4f} of the replay's "
                    f"time, {near_end[2] / replay[2]:.4f} of its bytes",
                    flush=True,
                )


if __name__ == "__main__":
    main()
