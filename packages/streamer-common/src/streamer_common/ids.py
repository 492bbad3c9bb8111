"""Validation of stream ids and job names before they are used in NATS subjects."""

from __future__ import annotations

import re

MAX_ID_LENGTH = 128
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_JOB = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def id_problem(stream_id: str) -> str | None:
    """Why `stream_id` cannot name a stream, or None when it can.

    Ids become NATS subject tokens, so `.`, `*`, `>` and whitespace would change which
    subject is read or written; only 1 to 128 characters of A-Z a-z 0-9 _ - are allowed.
    """
    if not stream_id:
        return "id is empty: give 1 to 128 characters of A-Z a-z 0-9 _ -"
    if len(stream_id) > MAX_ID_LENGTH:
        return f"id is {len(stream_id)} characters long: at most {MAX_ID_LENGTH} are allowed"
    if _ID.fullmatch(stream_id) is None:
        return f"id {stream_id!r} has characters outside A-Z a-z 0-9 _ -"
    return None


def job_problem(job: str) -> str | None:
    """Why `job` cannot name a job handler, or None when it can."""
    if _JOB.fullmatch(job) is None:
        return f"job {job[:80]!r} must be 1 to 64 characters of A-Z a-z 0-9 _ . -"
    return None
