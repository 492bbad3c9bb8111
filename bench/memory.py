"""Memory per open stream, the edge against G1: `python -m bench.memory --streams 1000`.

Each round starts a stack of its own, as a full run does for each stream count, and holds
`--streams` slow streams (2 chunks/s) open on the edge, then on the bare grpcio server:
the growth of each server's peak RSS over the streams it held.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.runner import Plan, Runner


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.memory", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000, help="streams held open")
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    """A fresh stack per round; each round's figures on stdout, progress on stderr."""
    args = parse_args()
    plan = Plan("memory", (), 0, 0, 0.0, probe_streams=args.streams)
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="streamer-memory-") as tmp:
            runner = Runner(plan, Path(tmp), lambda line: print(line, file=sys.stderr))
            results = runner.hold(args.streams)
        figures = ", ".join(
            f"{r['system']} {r['kib_per_stream']} KiB"
            if "kib_per_stream" in r
            else f"{r['system']} FAILED ({r['problems'][0]})"
            for r in results
        )
        print(f"round {round_}: per open stream with {args.streams} open: {figures}", flush=True)
        if not all(r["ok"] for r in results):
            sys.exit(1)


if __name__ == "__main__":
    main()
