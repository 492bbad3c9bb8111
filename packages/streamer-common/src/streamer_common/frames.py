"""How chunks, end markers and jobs are laid out in NATS messages.

A data message holds one or more consecutive `Data` items as raw bytes; headers carry
the first sequence, the item sizes when there is more than one, where a job resumes
after this message, and the publish time. A control message ends or pauses a stream.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

SEQ = "Streamer-Seq"
SIZES = "Streamer-Sizes"
NEXT = "Streamer-Next"
TIME = "Streamer-Time"
STATUS = "Streamer-Status"
ERROR = "Streamer-Error"
MSG_ID = "Nats-Msg-Id"  # the job message's: JetStream drops a second one within its window
WRITE_ID = "Streamer-Write-Id"  # which writer wrote a data message or marker: `writer:what`
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

END = "end"
FAILED = "error"
STOPPED = "stopped"


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a job stands: the next sequence to publish and the handler chunk to resume at."""

    next_sequence: int = 1
    chunk: int = 0
    skip_parts: int = 0

    def encode(self) -> str:
        """Header form `chunk:skip_parts`."""
        return f"{self.chunk}:{self.skip_parts}"


@dataclasses.dataclass(frozen=True)
class DataFrame:
    """Consecutive `Data` items, starting at `first_sequence`."""

    first_sequence: int
    items: list[bytes]
    published_ns: int

    @property
    def last_sequence(self) -> int:
        """Sequence of the last item in this frame."""
        return self.first_sequence + len(self.items) - 1


@dataclasses.dataclass(frozen=True)
class ControlFrame:
    """End of a stream (`end`), a failure (`error`) or a pause (`stopped`)."""

    status: str
    last_sequence: int
    error: str = ""


Frame = DataFrame | ControlFrame


def new_writer() -> str:
    """An id for one writer of a stream, unique to it: no two attempts at a job share one."""
    return uuid.uuid4().hex[:16]


def data_headers(
    writer: str, first_sequence: int, sizes: list[int], after: Position
) -> dict[str, str]:
    """Headers of `writer`'s message holding items of `sizes`, after which the job is at `after`."""
    headers = {
        SEQ: str(first_sequence),
        NEXT: after.encode(),
        TIME: str(time.time_ns()),
        WRITE_ID: f"{writer}:{first_sequence}",
    }
    if len(sizes) > 1:
        headers[SIZES] = ",".join(map(str, sizes))
    return headers


def control_headers(
    writer: str, status: str, position: Position, error: str = ""
) -> dict[str, str]:
    """Headers of `writer`'s end, error or stopped marker; a retry resumes at `position`."""
    headers = {
        STATUS: status,
        SEQ: str(position.next_sequence - 1),
        NEXT: position.encode(),
        TIME: str(time.time_ns()),
        WRITE_ID: f"{writer}:{status}",
    }
    if error:
        headers[ERROR] = error.replace("\r", " ").replace("\n", " ")[:1024]
    return headers


def decode(headers: Mapping[str, str] | None, payload: bytes) -> Frame:
    """Turn a message on `stream.<id>` back into a frame; ValueError if it is not ours."""
    if not headers or SEQ not in headers:
        raise ValueError("message has no Streamer-Seq header")
    sequence = int(headers[SEQ])
    status = headers.get(STATUS)
    if status is not None:
        return ControlFrame(status, sequence, headers.get(ERROR, ""))
    sizes = headers.get(SIZES)
    if sizes is None:
        items = [payload]
    else:
        items, offset = [], 0
        for size in map(int, sizes.split(",")):
            items.append(payload[offset : offset + size])
            offset += size
        if offset != len(payload):
            raise ValueError("Streamer-Sizes does not add up to the payload length")
    return DataFrame(sequence, items, int(headers.get(TIME, "0")))


def position_after(headers: Mapping[str, str]) -> Position:
    """Where a job resumes after the message with these headers.

    A marker's `Streamer-Seq` is the last sequence before it; a data message's is its first
    item's, and it holds one item per `Streamer-Sizes` entry.
    """
    chunk, _, skip = headers[NEXT].partition(":")
    last = int(headers[SEQ])
    sizes = headers.get(SIZES)
    if sizes is not None and STATUS not in headers:
        last += sizes.count(",")
    return Position(last + 1, int(chunk), int(skip or 0))


def first_item(headers: Mapping[str, str]) -> int:
    """The sequence of a data message's first item or, for a marker, of the item after it.

    Along a stream's subject it never decreases, which is what a search for where to resume
    relies on; KeyError or ValueError if the headers are not ours.
    """
    sequence = int(headers[SEQ])
    return sequence + 1 if STATUS in headers else sequence


@dataclasses.dataclass(frozen=True)
class Job:
    """A request to produce stream `id` with handler `job` and its parameters."""

    id: str
    job: str
    params: dict[str, str]

    def encode(self) -> bytes:
        """JSON body of the job message (the chunks themselves never travel as JSON)."""
        return json.dumps({"id": self.id, "job": self.job, "params": self.params}).encode()

    @classmethod
    def decode(cls, body: bytes) -> Job:
        """Parse a job message body; ValueError when it is malformed."""
        raw: Any = json.loads(body)
        if not isinstance(raw, dict) or not isinstance(raw.get("params", {}), dict):
            raise ValueError("job message is not an object with id, job and params")
        return cls(
            str(raw["id"]), str(raw["job"]), {str(k): str(v) for k, v in raw["params"].items()}
        )
