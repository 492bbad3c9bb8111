"""Python allocations per open stream in the edge: `python -m bench.pyalloc --streams 500`.

Starts nats-server, a producer and the edge under tracemalloc (bench.tracemalloced), warms
the edge up, takes a snapshot, holds `--streams` slow streams (2 chunks/s) open, takes
another once every one has its first chunk, and prints the growth per open stream and
the allocation sites that grew most. Unlike the RSS that `bench.memory` reads, which
moves by a few KiB per stream from run to run, this count repeats to within a few bytes:
it is the figure to A/B a change by. It does not see gRPC core's or OpenSSL's memory.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

from bench.runner import PART, Load, bench_env
from streamer_devstack import tls
from streamer_devstack.processes import NatsServer, Service
from streamer_devstack.stack import edge_env, producer_env

_SNAPSHOT = re.compile(rb"snapshot (\S+)")
_ACTIVE = re.compile(r"^streamer_edge_streams_active (\S+)$", re.MULTILINE)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.pyalloc", description=__doc__)
    parser.add_argument("--streams", type=int, default=500, help="streams held open")
    parser.add_argument("--frames", type=int, default=1, help="traceback frames per site")
    parser.add_argument("--top", type=int, default=20, help="allocation sites to print")
    return parser.parse_args()


def snapshot(edge: Service) -> tracemalloc.Snapshot:
    """Ask the edge for a snapshot of its allocations and load it."""
    offset = edge.log_size()
    edge.popen.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
    path = edge.wait_for(_SNAPSHOT, 60, offset).group(1).decode()
    return tracemalloc.Snapshot.load(path)


def active_streams(edge: Service) -> float:
    """The edge's `streamer_edge_streams_active`."""
    url = f"http://127.0.0.1:{edge.ready['metrics_port']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as page:
        found = _ACTIVE.search(page.read().decode())
    return float(found.group(1)) if found else 0.0


def streams(target: str, ca: Path, count: int, chunks: int, rate: int) -> subprocess.Popen[bytes]:
    """`count` concurrent `Stream` calls of `chunks` 64 B chunks at `rate` a second."""
    prefix = f"pyalloc{time.time_ns()}"
    load = Load(ca, target, "stream", prefix, count, chunks, 64, rate=rate)
    return load.start(stdout=subprocess.DEVNULL)


def measure(args: argparse.Namespace, workdir: Path) -> None:
    """Run the stack, hold the streams, print the growth."""
    pair = tls.ensure(workdir / "tls")
    nats = NatsServer(workdir)
    nats.start()
    producer_settings = producer_env(
        nats.url,
        PRODUCER_HANDLER_MODULES="bench.handlers",
        PRODUCER_CONCURRENCY=str(args.streams + 4),
        PRODUCER_MAX_PART_BYTES=str(PART),
    )
    producer = Service(
        "producer",
        "streamer_producer",
        workdir / "producer.log",
        {**producer_settings, "PYTHONPATH": bench_env()["PYTHONPATH"]},
    )
    traced = {
        "PYTHONPATH": bench_env()["PYTHONPATH"],
        "BENCH_TRACED": "streamer_edge",
        "BENCH_TRACE_OUT": str(workdir / "edge.snapshot"),
        "BENCH_TRACE_FRAMES": str(args.frames),
    }
    edge_settings = edge_env(
        nats.url, pair, "127.0.0.1:0", EDGE_MAX_STREAMS=str(max(1000, args.streams))
    )
    edge = Service("edge", "bench.tracemalloced", workdir / "edge.log", edge_settings | traced)
    try:
        producer.start()
        edge.start()
        target = f"127.0.0.1:{edge.ready['port']}"
        if streams(target, pair.cert, 50, 4, 0).wait():  # warm up: first calls allocate caches
            sys.exit("warm-up calls failed")
        time.sleep(1.0)
        before = snapshot(edge)
        held = streams(target, pair.cert, args.streams, 60, 2)  # 30 s each
        deadline = time.monotonic() + 25
        while active_streams(edge) < args.streams and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # every stream has its first chunk (one every 0.5 s)
        open_now = active_streams(edge)
        after = snapshot(edge)
        held.kill()
    finally:
        edge.stop()
        producer.stop()
        nats.stop()
    if open_now < args.streams:
        sys.exit(f"only {open_now:.0f} of {args.streams} streams were open")
    report(before, after, args)


def report(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, args: argparse.Namespace
) -> None:
    """The growth per open stream, in total and by allocation site."""
    grown = after.compare_to(before, "traceback")
    per_stream = sum(stat.size_diff for stat in grown) / args.streams
    print(f"Python allocations per open stream ({args.streams} open): {per_stream / 1024:.2f} KiB")
    for stat in grown[: args.top]:
        frames = reversed(stat.traceback)
        where = " <- ".join(f"{Path(frame.filename).name}:{frame.lineno}" for frame in frames)
        size, blocks = stat.size_diff / args.streams, stat.count_diff / args.streams
        print(f"  {size:7.0f} B {blocks:5.2f} blocks  {where}")


def main() -> None:
    """Measure in a scratch directory."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-pyalloc-") as tmp:
        measure(args, Path(tmp))


if __name__ == "__main__":
    main()
