"""Helpers for tests: a real gRPC client over TLS and what it received."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import nats
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from streamer_common.frames import Position
from streamer_common.metrics import ProducerMetrics
from streamer_common.natsio import stream_state
from streamer_common.proto import stream_pb2, stream_pb2_grpc
from streamer_devstack.processes import Process, Service
from streamer_devstack.stack import Stack, edge_env
from streamer_producer.publisher import StreamWriter

LAST_SEQUENCE_KEY = "streamer-last-sequence"


def new_id(prefix: str = "t") -> str:
    """A stream id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@dataclasses.dataclass
class Result:
    """Everything a client saw on one call."""

    items: list[tuple[int, bytes]]
    code: grpc.StatusCode
    details: str
    trailing: dict[str, str]
    seconds: float
    messages: int = 0

    @property
    def sequences(self) -> list[int]:
        """Sequences in arrival order, the end marker (0) included."""
        return [sequence for sequence, _ in self.items]

    def assert_complete(self, count: int, after: int = 0) -> None:
        """Sequences after+1..count in order, each once, then the end marker, then OK."""
        assert self.code == grpc.StatusCode.OK, (self.code, self.details)
        assert self.sequences == [*range(after + 1, count + 1), 0]


def channel(target: str, ca: Path) -> grpc.aio.Channel:
    """A TLS channel to `target` trusting `ca`, verifying the name `localhost`."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.aio.secure_channel(target, credentials)


async def collect(
    target: str,
    ca: Path,
    request: stream_pb2.Request,
    *,
    timeout: float | None = 60,
    on_item: Callable[[int], object] | None = None,
    stop_after: int | None = None,
    batches: bool = False,
) -> Result:
    """Call Stream (or StreamBatches) and record every item; `stop_after` cancels after that."""
    items: list[tuple[int, bytes]] = []
    messages = 0
    started = time.monotonic()
    async with channel(target, ca) as chan:
        stub = stream_pb2_grpc.StreamerStub(chan)
        call = (stub.StreamBatches if batches else stub.Stream)(request, timeout=timeout)
        try:
            async for message in call:
                messages += 1
                for data in message.items if batches else (message,):
                    items.append((data.sequence, data.data))
                    if on_item is not None:
                        outcome = on_item(data.sequence)
                        if asyncio.iscoroutine(outcome):
                            await outcome
                if stop_after is not None and len(items) >= stop_after:
                    call.cancel()
                    return Result(
                        items,
                        grpc.StatusCode.CANCELLED,
                        "cancelled by test",
                        {},
                        time.monotonic() - started,
                        messages,
                    )
            code, details = await call.code(), await call.details()
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as error:
            code, details, trailing = error.code(), error.details() or "", error.trailing_metadata()
    return Result(
        items, code, details or "", dict(trailing or ()), time.monotonic() - started, messages
    )


def request(stream_id: str, **params: object) -> stream_pb2.Request:
    """A Request for the default `produce` job with these params."""
    return stream_pb2.Request(id=stream_id, params={k: str(v) for k, v in params.items()})


def rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def log_events(process: Process, message: str) -> list[str]:
    """Log lines of `process` whose message is exactly `message`."""
    pattern = re.compile(rf'"message": "{re.escape(message)}"')
    return [line for line in process.log.read_text().splitlines() if pattern.search(line)]


async def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05
) -> float:
    """Poll `predicate` until true; returns seconds waited; AssertionError on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


HANDLERS_DIR = str(Path(__file__).parent / "handlers")
TEST_PYTHONPATH = os.pathsep.join(filter(None, [HANDLERS_DIR, os.environ.get("PYTHONPATH")]))


async def last_status(stack: Stack, stream_id: str) -> str | None:
    """Status of the last message on the stream's subject (None for a chunk)."""
    nc = await nats.connect(stack.nats.url)
    try:
        return (await stream_state(nc, "STREAMER_DATA", stream_id)).status
    finally:
        await nc.close()


async def wait_for_status(stack: Stack, stream_id: str, status: str, timeout: float) -> float:
    """Seconds until the stream's last message has `status`; fails after `timeout`."""
    started = asyncio.get_running_loop().time()
    while (found := await last_status(stack, stream_id)) != status:
        waited = asyncio.get_running_loop().time() - started
        assert waited < timeout, f"stream status still {found!r} after {waited:.1f}s"
        await asyncio.sleep(0.05)
    return asyncio.get_running_loop().time() - started


def start_second_edge(stack: Stack) -> Service:
    """Another edge on the stack's NATS, with the first edge's timeouts; the caller stops it."""
    assert stack.edge is not None
    other = Service(
        "edge-2",
        "streamer_edge",
        stack.workdir / "edge-2.log",
        edge_env(
            stack.nats.url,
            stack.tls,
            "127.0.0.1:0",
            **{k: v for k, v in stack.edge.env.items() if k.endswith("TIMEOUT")},
        ),
    )
    other.start()
    return other


async def calls_until_served(
    stack: Stack, timeout: float, also: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
) -> list[str]:
    """Call until a stream completes within `timeout`; the details of the calls that failed.

    Calls may fail UNAVAILABLE, or with `also`, until then.
    """
    failures: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))
        if result.code == grpc.StatusCode.OK:
            result.assert_complete(3)
            return failures
        assert result.code in (grpc.StatusCode.UNAVAILABLE, also), (result.code, result.details)
        failures.append(result.details)
        assert asyncio.get_running_loop().time() < deadline, failures
        await asyncio.sleep(0.2)


def stream_writer(
    nc: Client,
    stream_id: str,
    registry: CollectorRegistry | None = None,
    cls: type[StreamWriter] = StreamWriter,
) -> StreamWriter:
    """A producer's writer of `stream_id` on the data stream, from its start (a fresh stream)."""
    metrics = ProducerMetrics(registry or CollectorRegistry(), 1)
    return cls(
        nc, "STREAMER_DATA", stream_id, Position(), 0, max_message_bytes=1 << 20, metrics=metrics
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
