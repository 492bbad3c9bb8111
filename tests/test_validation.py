"""Bad input is rejected with INVALID_ARGUMENT before anything reaches NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import nats
import pytest
from nats.aio.msg import Msg

from streamer_common.natsio import barrier
from streamer_common.proto import stream_pb2
from streamer_devstack.stack import Stack
from support import collect, new_id, request

BAD_IDS = {
    "empty": "",
    "wildcard-tail": ">",
    "wildcard-token": "*",
    "dotted": "a.b",
    "space": "a b",
    "crlf": "a\r\nb",
    "lf": "ab\n",
    "too-long": "x" * 129,
    "unicode": "caf\u00e9",
}
# The producers' own polling for jobs and the edge's periodic announcement of the streams
# it reads are the only NATS traffic allowed while the edge rejects a call.
ALLOWED_PREFIXES = ("$JS.API.CONSUMER.MSG.NEXT.STREAMER_JOBS.", "_INBOX.", "streamer.readers.")


@pytest.fixture
async def nats_traffic(shared_stack: Stack) -> AsyncIterator[list[str]]:
    """Subjects of every message that crosses the nats-server while the test runs."""
    seen: list[str] = []
    nc = await nats.connect(shared_stack.nats.url)

    async def record(msg: Msg) -> None:
        seen.append(msg.subject)

    await nc.subscribe(">", cb=record)
    await barrier(nc)
    yield seen
    await nc.close()


@pytest.mark.parametrize("bad_id", BAD_IDS.values(), ids=BAD_IDS.keys())
async def test_bad_id_is_invalid_argument_and_never_reaches_nats(
    shared_stack: Stack, nats_traffic: list[str], bad_id: str
) -> None:
    result = await collect(
        shared_stack.target, shared_stack.tls.cert, stream_pb2.Request(id=bad_id)
    )
    await asyncio.sleep(0.2)

    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "id" in result.details
    assert result.items == []
    assert [s for s in nats_traffic if not s.startswith(ALLOWED_PREFIXES)] == []


async def test_longest_valid_id_streams(shared_stack: Stack) -> None:
    stream_id = "A-z_0" * 25 + "abc"
    assert len(stream_id) == 128
    result = await collect(
        shared_stack.target, shared_stack.tls.cert, request(stream_id, count=3, interval_ms=1)
    )

    result.assert_complete(3)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("after_sequence", -1, "after_sequence"),
        ("job", "bad job!", "job"),
        ("job", "x" * 65, "job"),
        ("params", {"k": "v" * 5000}, "params"),
    ],
)
async def test_other_bad_fields_are_invalid_argument(
    shared_stack: Stack, nats_traffic: list[str], field: str, value: object, message: str
) -> None:
    req = stream_pb2.Request(id=new_id())
    if field == "params":
        req.params.update(value)  # type: ignore[arg-type]
    else:
        setattr(req, field, value)
    result = await collect(shared_stack.target, shared_stack.tls.cert, req)
    await asyncio.sleep(0.2)

    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in result.details
    assert [s for s in nats_traffic if not s.startswith(ALLOWED_PREFIXES)] == []


async def test_oversized_request_is_refused(make_stack: object) -> None:
    stack = make_stack(edge={"EDGE_MAX_REQUEST_BYTES": "2048", "EDGE_MAX_PARAMS_BYTES": "100000"})  # type: ignore[operator]
    req = stream_pb2.Request(id=new_id(), params={"k": "v" * 4096})
    result = await collect(stack.target, stack.tls.cert, req)

    assert result.code == grpc.StatusCode.RESOURCE_EXHAUSTED
