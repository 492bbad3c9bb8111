"""Runs a service module under tracemalloc: `BENCH_TRACED=streamer_edge python -m
bench.tracemalloced`.

Each SIGUSR1 writes a snapshot of the Python allocations to `BENCH_TRACE_OUT.<n>` (n = 0,
1, ...), keeping `BENCH_TRACE_FRAMES` frames of each allocation's traceback, for
`python -m bench.pyalloc` to compare.
"""

from __future__ import annotations

import itertools
import os
import runpy
import signal
import tracemalloc
from types import FrameType


def main() -> None:
    """Run the module named in BENCH_TRACED as __main__, tracing its allocations."""
    tracemalloc.start(int(os.environ.get("BENCH_TRACE_FRAMES", "1")))
    snapshots = itertools.count()

    def dump(_signum: int, _frame: FrameType | None) -> None:
        path = f"{os.environ['BENCH_TRACE_OUT']}.{next(snapshots)}"
        tracemalloc.take_snapshot().dump(path)
        print(f"snapshot {path}", flush=True)

    signal.signal(signal.SIGUSR1, dump)
    runpy.run_module(os.environ["BENCH_TRACED"], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
