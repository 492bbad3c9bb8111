"""Runs a service module under cProfile: `BENCH_PROFILED=streamer_edge python -m bench.profiled`.

The stats land in BENCH_PROFILE_OUT when the service exits (on SIGTERM, as it does in the
stack), for `python -m bench.profile` to print.
"""

from __future__ import annotations

import cProfile
import os
import runpy


def main() -> None:
    """Run the module named in BENCH_PROFILED as __main__, profiled."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        runpy.run_module(os.environ["BENCH_PROFILED"], run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE_OUT"])


if __name__ == "__main__":
    main()
