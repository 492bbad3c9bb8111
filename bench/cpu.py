"""CPU per chunk: `python -m bench.cpu --method batches --size 64 --streams 100`.

Starts the stack as the benchmark does, runs one unmeasured load, then `--rounds` measured
ones, and prints the microseconds of CPU each process spent per chunk: the edge, the
producers together, nats-server and the client. Throughput moves with whatever else the
machine runs; CPU per chunk moves much less, so this is the figure for an A/B of a hot-path
change: run it on both versions, alternating, and compare the same process's figures.
`--perf nats` (or `edge`, `producer`) also records that process with Linux `perf` during
the measured rounds, into `--perf-out`, for `perf report` to say where its time went.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.procstat import cpu_seconds
from bench.runner import Load, bench_stack
from streamer_devstack.stack import Stack


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.cpu", description=__doc__)
    parser.add_argument("--method", choices=["stream", "batches"], default="batches")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--count", type=int, default=4000, help="chunks per stream")
    parser.add_argument("--rate", type=int, default=0, help="chunks/s per stream (0: no limit)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--perf", choices=["edge", "producer", "nats"], help="perf record it")
    parser.add_argument("--perf-out", type=Path, default=Path("perf.data"))
    return parser.parse_args()


def load(stack: Stack, args: argparse.Namespace) -> tuple[float, float]:
    """One client load; its wall seconds and the client's CPU seconds."""
    began = time.monotonic()
    load = Load(
        stack.tls.cert,
        stack.target,
        args.method,
        f"cpu{time.time_ns()}",
        args.streams,
        args.count,
        args.size,
        rate=args.rate,
    )
    report = load.report()
    problems = [stream["problem"] for stream in report["streams"] if stream["problem"]]
    if problems:
        raise SystemExit(f"{len(problems)} streams failed, the first: {problems[0]}")
    return time.monotonic() - began, float(report["usage"]["cpu_s"])


def measure(stack: Stack, args: argparse.Namespace) -> str:
    """One round: microseconds of CPU per chunk in each process, and the round's wall time."""
    assert stack.edge is not None
    pids = {"edge": [stack.edge.pid], "producers": [p.pid for p in stack.producers]}
    pids["nats"] = [stack.nats.pid]
    before = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
    wall, client = load(stack, args)
    spent = {name: sum(map(cpu_seconds, group)) - before[name] for name, group in pids.items()}
    spent["client"] = client
    chunks = args.streams * args.count
    figures = ", ".join(f"{name} {seconds * 1e6 / chunks:.2f}" for name, seconds in spent.items())
    return f"CPU us per chunk {sum(spent.values()) * 1e6 / chunks:.2f} ({figures}); {wall:.1f} s"


@contextlib.contextmanager
def recorded(stack: Stack, args: argparse.Namespace) -> Iterator[None]:
    """`perf record -g` of the process `--perf` names while the block runs, if asked."""
    if args.perf is None:
        yield
        return
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("--perf needs Linux perf on PATH (Debian: apt-get install linux-perf)")
    assert stack.edge is not None
    pid = {"edge": stack.edge, "producer": stack.producers[0], "nats": stack.nats}[args.perf].pid
    argv = [perf, "record", "-F", "499", "-g", "-o", str(args.perf_out), "-p", str(pid)]
    recorder = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches before the first measured round
    if recorder.poll() is not None:
        raise SystemExit(f"perf record exited at once ({recorder.returncode}): {' '.join(argv)}")
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    print(f"perf report -i {args.perf_out} --children --sort sym", flush=True)


def main() -> None:
    """Start the stack, warm it up, print each round."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-cpu-") as tmp:
        stack = bench_stack(Path(tmp), args.streams)
        with stack.running():
            load(stack, args)
            with recorded(stack, args):
                for round_ in range(1, args.rounds + 1):
                    print(f"round {round_}: {measure(stack, args)}", flush=True)


if __name__ == "__main__":
    main()
