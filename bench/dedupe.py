"""What JetStream's duplicate window costs per message: `python -m bench.dedupe`.

Starts a nats-server per round, makes a file stream with a two-minute duplicate window
(as the data stream has), and publishes `--messages` fenced 64 B messages over
`--subjects` subjects, one publish at a time per subject as the producers do. Rounds
alternate between messages that carry a `Nats-Msg-Id` (which nats-server remembers for
the window) and messages that carry the same id under a header of their own
(`Streamer-Write-Id`, which it does not). Prints nats-server's CPU per message and the
growth of its resident memory over the round.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from bench.procstat import cpu_seconds, rss_bytes
from streamer_devstack.processes import NatsServer

HEADERS = ("Nats-Msg-Id", "Streamer-Write-Id")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.dedupe", description=__doc__)
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each header")
    return parser.parse_args()


async def publish(server: NatsServer, header: str, args: argparse.Namespace) -> str:
    """One round's figures, for messages identified by `header`."""
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        config = StreamConfig(
            name="DATA", subjects=["stream.*"], storage=StorageType.FILE, duplicate_window=120
        )
        await js.add_stream(config)
        per_subject = args.messages // args.subjects
        rss, cpu, began = rss_bytes(server.pid), cpu_seconds(server.pid), time.monotonic()

        async def write(subject: int) -> None:
            last = 0
            for index in range(per_subject):
                headers = {
                    header: f"w{subject}:{index + 1}",
                    "Nats-Expected-Last-Subject-Sequence": str(last),
                }
                last = (await js.publish(f"stream.s{subject}", b"x" * 64, headers=headers)).seq

        await asyncio.gather(*(write(subject) for subject in range(args.subjects)))
        sent = per_subject * args.subjects
        return (
            f"{header}: nats-server {(cpu_seconds(server.pid) - cpu) * 1e6 / sent:.1f} µs of CPU "
            f"and {(rss_bytes(server.pid) - rss) / sent:.0f} B of memory per message "
            f"({sent} messages in {time.monotonic() - began:.1f} s)"
        )
    finally:
        await nc.close()


def main() -> None:
    """Alternate the rounds, a fresh nats-server each."""
    args = parse_args()
    for round_ in range(1, args.rounds + 1):
        for header in HEADERS:
            with tempfile.TemporaryDirectory(prefix="streamer-dedupe-") as tmp:
                server = NatsServer(Path(tmp))
                server.start()
                try:
                    print(f"round {round_}: {asyncio.run(publish(server, header, args))}")
                finally:
                    server.stop()


if __name__ == "__main__":
    main()
