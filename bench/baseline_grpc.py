"""Baselines G1 and Gb: a bare grpcio TLS server streaming pre-built messages.

G1 writes one `Data` per write (`Stream`); Gb writes `Batch`es filled to the same byte
bound as the edge's `StreamBatches`. Messages are built once per (count, size) before
the first call is timed, so the server does nothing per message but write it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from pathlib import Path

import grpc

from bench.payload import chunk, filler, pace
from streamer_common.proto import stream_pb2, stream_pb2_grpc

_ITEM_OVERHEAD = 16


@functools.cache
def messages(count: int, size: int) -> list[stream_pb2.Data]:
    """Items 1..count and the end marker."""
    tail = filler(size)
    items = [stream_pb2.Data(sequence=i + 1, data=chunk(i, size, tail)) for i in range(count)]
    return [*items, stream_pb2.Data(sequence=0)]


@functools.cache
def batches(count: int, size: int, max_bytes: int) -> list[stream_pb2.Batch]:
    """The same items in batches of at most `max_bytes` (one item alone if larger)."""
    out: list[stream_pb2.Batch] = []
    batch, used = stream_pb2.Batch(), 0
    for item in messages(count, size):
        cost = len(item.data) + _ITEM_OVERHEAD
        if used and used + cost > max_bytes:
            out.append(batch)
            batch, used = stream_pb2.Batch(), 0
        batch.items.append(item)
        used += cost
    return [*out, batch]


class Baseline(stream_pb2_grpc.StreamerServicer):
    """Streams `count` chunks of `size` bytes from the request params."""

    def __init__(self, max_batch_bytes: int) -> None:
        self._max_batch_bytes = max_batch_bytes

    async def Stream(self, request, context):  # type: ignore[no-untyped-def]
        rate = int(request.params.get("rate", "0"))
        started = time.monotonic()
        for index, message in enumerate(messages(*_shape(request))):
            await pace(started, index, rate)  # as the bench handler (memory probe: slow streams)
            await context.write(message)

    async def StreamBatches(self, request, context):  # type: ignore[no-untyped-def]
        for batch in batches(*_shape(request), self._max_batch_bytes):
            await context.write(batch)


def _shape(request: stream_pb2.Request) -> tuple[int, int]:
    return int(request.params["count"]), int(request.params["size"])


async def serve(credentials: grpc.ServerCredentials, max_batch_bytes: int) -> None:
    """Serve until killed; prints the bound port."""
    # As the edge does: with 1000 calls at once, a busy grpc.aio loop accepts them slowly,
    # and gRPC's default would cancel those still waiting after 30 s.
    server = grpc.aio.server(options=[("grpc.server_max_unrequested_time_in_server", 300)])
    stream_pb2_grpc.add_StreamerServicer_to_server(Baseline(max_batch_bytes), server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    print(f"port {port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="bench.baseline_grpc")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--max-batch-bytes", type=int, default=256 * 1024)
    args = parser.parse_args()
    credentials = grpc.ssl_server_credentials(
        [(Path(args.key).read_bytes(), Path(args.cert).read_bytes())]
    )
    asyncio.run(serve(credentials, args.max_batch_bytes))


if __name__ == "__main__":
    main()
