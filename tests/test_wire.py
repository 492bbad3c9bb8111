"""The edge's own `Data` and `Batch` encoding writes the bytes protobuf writes."""

from __future__ import annotations

import asyncio

import pytest

from streamer_common.proto import stream_pb2
from streamer_edge import wire
from streamer_edge.sinks import BatchSink, DataSink

# Each side of every varint length from one byte to five, and the int32 limit.
SEQUENCES = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**31 - 1]
SIZES = [0, 1, 125, 126, 127, 128, 16377, 16383, 16384, 2**21 - 1, 2**21]


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_data_bytes_are_protobufs(sequence: int) -> None:
    for size in SIZES:
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        expected = stream_pb2.Data(sequence=sequence, data=payload).SerializeToString()
        assert wire.data(sequence, payload) == expected
        assert wire.data(sequence, memoryview(b"." + payload)[1:]) == expected


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_batch_entries_are_protobufs(sequence: int) -> None:
    for size in SIZES:
        payload = b"x" * size
        item = stream_pb2.Data(sequence=sequence, data=payload)
        expected = stream_pb2.Batch(items=[item]).SerializeToString()
        assert wire.item_head(sequence, size) + payload == expected


def test_the_serializer_passes_bytes_and_encodes_messages() -> None:
    encoded = wire.data(7, b"seven")
    assert wire.serialize(encoded) is encoded
    assert wire.serialize(stream_pb2.Data(sequence=7, data=b"seven")) == encoded


def test_a_batch_sink_writes_batches_within_its_bound() -> None:
    written: list[bytes] = []

    async def write(message: bytes) -> None:
        written.append(message)

    async def relay() -> BatchSink:
        sink = BatchSink(write, 0, max_bytes=1024)
        payload = b"".join(bytes([k]) * 100 for k in range(30))
        view = memoryview(payload)
        await sink.put_many(1, [view[k * 100 : (k + 1) * 100] for k in range(30)])
        await sink.put(31, b"y" * 5000)  # larger than the bound: alone
        await sink.put(0, b"")
        await sink.flush()
        return sink

    sink = asyncio.run(relay())
    batches = [stream_pb2.Batch.FromString(message) for message in written]
    assert all(len(message) <= 1024 for message in written[:-2])
    assert [len(batch.items) for batch in batches] == [9, 9, 9, 3, 1, 1]
    items = [(item.sequence, item.data) for batch in batches for item in batch.items]
    expected = [(k + 1, bytes([k]) * 100) for k in range(30)] + [(31, b"y" * 5000), (0, b"")]
    assert items == expected
    assert sink.written == sink.accepted == 31


def test_a_data_sink_writes_one_data_per_item() -> None:
    written: list[bytes] = []

    async def write(message: bytes) -> None:
        written.append(message)

    async def relay() -> None:
        sink = DataSink(write, 4)
        await sink.put_many(5, [b"five", memoryview(b"-six")[1:]])
        await sink.put(0, b"")

    asyncio.run(relay())
    assert [stream_pb2.Data.FromString(message) for message in written] == [
        stream_pb2.Data(sequence=5, data=b"five"),
        stream_pb2.Data(sequence=6, data=b"six"),
        stream_pb2.Data(),
    ]
