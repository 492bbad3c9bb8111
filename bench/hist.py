"""A log-linear latency histogram: 32 buckets per doubling (about 2% wide), mergeable as JSON."""

from __future__ import annotations

import math
from collections import Counter

_PER_DOUBLING = 32


def bucket(micros: float) -> int:
    """Bucket of a latency in microseconds (anything under 1 us lands in bucket 0)."""
    return 0 if micros < 1 else int(math.log2(micros) * _PER_DOUBLING) + 1


def upper_micros(index: int) -> float:
    """Upper edge of a bucket in microseconds."""
    return 1.0 if index == 0 else 2 ** (index / _PER_DOUBLING)


class Histogram:
    """Counts of latencies by bucket."""

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    def add(self, micros: float) -> None:
        """Record one latency."""
        self.counts[bucket(micros)] += 1

    def merge(self, other: Histogram) -> None:
        """Add another histogram's counts to this one."""
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        """Number of recorded latencies."""
        return sum(self.counts.values())

    def percentile(self, fraction: float) -> float | None:
        """Latency in ms at or below which `fraction` of the samples fall (bucket upper edge)."""
        total = self.total
        if not total:
            return None
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= fraction * total:
                return upper_micros(index) / 1000
        return None

    def to_json(self) -> dict[str, int]:
        """Buckets as a JSON object."""
        return {str(k): v for k, v in sorted(self.counts.items())}

    @classmethod
    def from_json(cls, raw: dict[str, int]) -> Histogram:
        """Inverse of `to_json`."""
        return cls({int(k): v for k, v in raw.items()})
