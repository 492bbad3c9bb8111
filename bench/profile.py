"""Profile the edge and a producer under load: `python -m bench.profile --method batches`.

Starts nats-server, one producer and the edge, both under cProfile (bench.profiled), runs
one client load against them, stops them, and prints where each spent its time.
"""

from __future__ import annotations

import argparse
import pstats
import tempfile
from pathlib import Path

from bench.runner import PART, Load, bench_env
from streamer_devstack import tls
from streamer_devstack.processes import NatsServer, Service
from streamer_devstack.stack import edge_env, producer_env


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__)
    parser.add_argument("--method", choices=["stream", "batches"], default="batches")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--count", type=int, default=5000, help="chunks per stream")
    parser.add_argument("--rate", type=int, default=0, help="chunks/s per stream (0: no limit)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="pstats sort key")
    return parser.parse_args()


def profiled(name: str, module: str, workdir: Path, env: dict[str, str]) -> Service:
    """A service started under cProfile, its stats written to `<workdir>/<name>.prof`."""
    env = {
        **env,
        "PYTHONPATH": bench_env()["PYTHONPATH"],
        "BENCH_PROFILED": module,
        "BENCH_PROFILE_OUT": str(workdir / f"{name}.prof"),
    }
    return Service(name, "bench.profiled", workdir / f"{name}.log", env)


def main() -> None:
    """Run, stop, print."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-profile-") as tmp:
        workdir = Path(tmp)
        pair = tls.ensure(workdir / "tls")
        nats = NatsServer(workdir)
        nats.start()
        producer = profiled(
            "producer",
            "streamer_producer",
            workdir,
            producer_env(
                nats.url,
                PRODUCER_HANDLER_MODULES="bench.handlers",
                PRODUCER_CONCURRENCY=str(args.streams + 2),
                PRODUCER_MAX_PART_BYTES=str(PART),
            ),
        )
        edge = profiled("edge", "streamer_edge", workdir, edge_env(nats.url, pair, "127.0.0.1:0"))
        try:
            producer.start()
            edge.start()
            target = f"127.0.0.1:{edge.ready['port']}"
            Load(
                pair.cert,
                target,
                args.method,
                "profile",
                args.streams,
                args.count,
                args.size,
                rate=args.rate,
            ).report()
        finally:
            edge.stop()
            producer.stop()
            nats.stop()
        for name in ("edge", "producer"):
            print(f"\n===== {name}: top {args.top} by {args.sort} =====")
            stats = pstats.Stats(str(workdir / f"{name}.prof"))
            stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
