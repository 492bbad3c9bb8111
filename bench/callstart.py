"""How long one call takes to start and end on an idle stack: `python -m bench.callstart`.

Starts the stack as the benchmark does, and a bare grpcio server (G1), then makes
`--calls` one-chunk `Stream` calls one after another against each, in alternating rounds,
and prints percentiles of the time to the first chunk and to the call's end. Unlike
`bench.admission` (CPU per call, many at once), this is the latency of the round trips a
call start and end wait for: the stream-state read, the consumer, the job, the producer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from bench.runner import baseline_server, bench_stack
from streamer_common.proto import stream_pb2, stream_pb2_grpc


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.callstart", description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="calls per round, one at a time")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


async def one_at_a_time(target: str, ca: bytes, calls: int) -> tuple[list[float], list[float]]:
    """Seconds to the first chunk and to the end of each of `calls` one-chunk calls."""
    firsts, ends = [], []
    prefix = f"callstart{time.time_ns()}"
    async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca)) as chan:
        stub = stream_pb2_grpc.StreamerStub(chan)
        for index in range(calls):
            params = {"count": "1", "size": "64"}
            request = stream_pb2.Request(id=f"{prefix}-{index}", job="bench", params=params)
            began = time.perf_counter()
            first = 0.0
            async for _ in stub.Stream(request, timeout=30):
                first = first or time.perf_counter()
            if not first:
                raise SystemExit(f"call {request.id} ended without a chunk")
            firsts.append(first - began)
            ends.append(time.perf_counter() - began)
    return firsts, ends


def summary(name: str, seconds: list[float]) -> str:
    """p50, p90 and p99 in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100)
    return f"{name} p50 {cuts[49] * 1e3:.2f} p90 {cuts[89] * 1e3:.2f} p99 {cuts[98] * 1e3:.2f} ms"


def main() -> None:
    """Start both servers, alternate rounds, print each."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-callstart-") as tmp:
        workdir = Path(tmp)
        stack = bench_stack(workdir, 10)
        with stack.running(), baseline_server(stack) as (port, _):
            ca = stack.tls.cert.read_bytes()
            targets = {"G1": f"127.0.0.1:{port}", "Stream": stack.target}
            for target in targets.values():  # warm both up, unmeasured
                asyncio.run(one_at_a_time(target, ca, 20))
            for round_ in range(1, args.rounds + 1):
                for name, target in targets.items():
                    firsts, ends = asyncio.run(one_at_a_time(target, ca, args.calls))
                    print(
                        f"round {round_} {name}: {summary('first chunk', firsts)}; "
                        f"{summary('end', ends)}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
