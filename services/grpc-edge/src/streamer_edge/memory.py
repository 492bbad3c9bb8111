"""The most memory the edge may hold, checked at start-up against its cgroup's limit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from streamer_edge.settings import EdgeSettings

logger = logging.getLogger(__name__)

PROCESS_BYTES = 128 * 1024 * 1024
CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a number near 2**63


def worst_case_bytes(settings: EdgeSettings) -> int:
    """Memory with every client slow: per stream, its buffer and two Batches' worth in gRPC.

    One item or Batch is being encoded (protobuf copies the bytes) while gRPC still holds the
    previous one: 100 slow readers of 1 MiB chunks grew the edge by 2.48 MiB each.
    """
    per_stream = settings.stream_buffer_bytes + 2 * settings.max_batch_bytes
    return settings.max_streams * per_stream + PROCESS_BYTES


def cgroup_limit(paths: Sequence[Path] = CGROUP_LIMITS) -> int | None:
    """This process's cgroup memory limit in bytes; None without one."""
    for path in paths:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        return int(text) if text.isdigit() and int(text) < _UNLIMITED else None
    return None


def check_memory_limit(settings: EdgeSettings, paths: Sequence[Path] = CGROUP_LIMITS) -> None:
    """Warn when slow clients could make the edge exceed its memory limit (and be killed)."""
    limit, needed = cgroup_limit(paths), worst_case_bytes(settings)
    if limit is not None and needed > limit:
        logger.warning(
            "the memory limit is below what slow clients can make the edge hold: lower "
            "EDGE_MAX_STREAMS or EDGE_STREAM_BUFFER_BYTES, or raise the limit",
            extra={"limit_mib": round(limit / 2**20), "worst_case_mib": round(needed / 2**20)},
        )
