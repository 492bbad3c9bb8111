"""What an edge tells producers about the streams its clients read: the announcement format.

Every edge publishes, every interval and soon after a stream's last local reader leaves,
the set of streams it has readers for, on `streamer.readers.<edge>`. A stream is named in
it by an 8-byte key, a hash of its id, so an edge holding 10,000 streams announces 80 KB
whatever the ids' length. Two ids with the same key would keep each other's jobs running
while either is read, which is the safe side: a job is stopped only when nobody reads it.
"""

from __future__ import annotations

import hashlib
import struct

ANNOUNCEMENTS = "streamer.readers.*"
INTERVAL_HEADER = "Streamer-Interval"
_KEY = struct.Struct("<Q")


def announcement_subject(edge: str) -> str:
    """Subject one edge announces its read streams on."""
    return f"streamer.readers.{edge}"


def reader_key(stream_id: str) -> int:
    """The key that names `stream_id` in announcements."""
    digest = hashlib.blake2b(stream_id.encode(), digest_size=_KEY.size).digest()
    return int(_KEY.unpack(digest)[0])


def encode_keys(keys: list[int]) -> bytes:
    """An announcement's payload: the keys of the streams read."""
    return struct.pack(f"<{len(keys)}Q", *keys)


def decode_keys(payload: bytes) -> frozenset[int]:
    """The keys in an announcement's payload; ValueError if it is not one."""
    if len(payload) % _KEY.size:
        raise ValueError(f"announcement of {len(payload)} bytes is not a list of 8-byte keys")
    return frozenset(struct.unpack(f"<{len(payload) // _KEY.size}Q", payload))
