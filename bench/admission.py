"""CPU per call start: `python -m bench.admission --streams 1000`.

Starts the stack as the benchmark does, and a bare grpcio server (G1), then alternates
rounds of `--streams` concurrent one-chunk calls against each (after one unmeasured round
each), and prints the CPU every server process spent per call. A one-chunk call is almost
all start and end: the stream-state read, the consumer, the job, the producer's attempt,
against G1's bare call.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.procstat import cpu_seconds
from bench.runner import Load, baseline_server, bench_stack
from streamer_devstack.stack import Stack


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.admission", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000, help="concurrent calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def calls(stack: Stack, target: str, streams: int) -> tuple[float, int]:
    """Run `streams` one-chunk calls at once against `target`; seconds taken, calls failed."""
    began = time.monotonic()
    load = Load(stack.tls.cert, target, "stream", f"admission{time.time_ns()}", streams, 1, 64)
    report = load.report()
    failed = sum(1 for stream in report["streams"] if stream["problem"])
    return time.monotonic() - began, failed


def measure(stack: Stack, target: str, pids: dict[str, int], streams: int) -> str:
    """One round: milliseconds of CPU per call in each process, and the round's wall time."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wall, failed = calls(stack, target, streams)
    spent = {name: (cpu_seconds(pid) - before[name]) * 1000 / streams for name, pid in pids.items()}
    figures = ", ".join(f"{name} {ms:.2f}" for name, ms in spent.items())
    failures = f", {failed} FAILED" if failed else ""
    return (
        f"CPU ms per call {sum(spent.values()):.2f} ({figures}); "
        f"{streams} calls in {wall:.1f} s{failures}"
    )


def main() -> None:
    """Start both servers, alternate rounds, print each."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-admission-") as tmp:
        workdir = Path(tmp)
        stack = bench_stack(workdir, args.streams)
        with stack.running(), baseline_server(stack) as (port, pid):
            assert stack.edge is not None
            ours = {"edge": stack.edge.pid, "nats": stack.nats.pid}
            ours |= {producer.name: producer.pid for producer in stack.producers}
            for target in (f"127.0.0.1:{port}", stack.target):  # warm both up, unmeasured
                calls(stack, target, args.streams)
            for round_ in range(1, args.rounds + 1):
                bare = measure(stack, f"127.0.0.1:{port}", {"G1": pid}, args.streams)
                print(f"round {round_} G1: {bare}", flush=True)
                streamer = measure(stack, stack.target, ours, args.streams)
                print(f"round {round_} Stream: {streamer}", flush=True)


if __name__ == "__main__":
    main()
