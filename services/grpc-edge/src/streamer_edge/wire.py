"""`Data` and `Batch` wire bytes, written straight from the relayed items.

Building a protobuf message per item and serialising it copies each item twice (into the
message, then into the serialised bytes) and costs more Python than the item's few header
bytes do. So the sinks write bytes: each item's tags, lengths and sequence, encoded here,
joined with the item's bytes, which are slices of the NATS payload. The server hands them
to gRPC unchanged (`serialize`). The bytes are those protobuf itself writes for the same
message, which `tests/test_wire.py` checks.
"""

from __future__ import annotations

from typing import Any

# Field keys: (field number << 3) | wire type.
_SEQUENCE = b"\x08"  # Data.sequence, varint
_DATA = b"\x12"  # Data.data, length-delimited
_ITEM = b"\x0a"  # Batch.items, length-delimited


def varint(value: int) -> bytes:
    """`value` (0 or more) as a protobuf base-128 varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_CACHED = 1 << 14  # every one- and two-byte varint: sizes under 16 KiB, early sequences
_VARINTS = [varint(value) for value in range(_CACHED)]


def _varint(value: int) -> bytes:
    return _VARINTS[value] if value < _CACHED else varint(value)


def data_head(sequence: int, size: int) -> bytes:
    """A `Data` message's bytes before its data, for `size` bytes of data.

    Like protobuf, it leaves out a field at its default: no sequence for the end marker
    (0), no data field for empty data.
    """
    head = _SEQUENCE + _varint(sequence) if sequence else b""
    return head + _DATA + _varint(size) if size else head


def item_head(sequence: int, size: int) -> bytes:
    """A `Batch` entry's bytes before its data: the item's key and length, then `data_head`."""
    head = data_head(sequence, size)
    return _ITEM + _varint(len(head) + size) + head


def data(sequence: int, payload: bytes | memoryview) -> bytes:
    """The wire bytes of `Data(sequence=sequence, data=payload)`."""
    return b"".join((data_head(sequence, len(payload)), payload))


def serialize(message: Any) -> bytes:
    """The server's response serializer: bytes from the sinks as they are, messages encoded."""
    return message if message.__class__ is bytes else message.SerializeToString()
