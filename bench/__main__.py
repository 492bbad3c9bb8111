"""`python -m bench`: run the plan, then write JSON, Markdown and plots (and docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.runner import ROOT, Plan, Runner

KiB, MiB = 1024, 1024 * 1024
SIZES = (64, KiB, 64 * KiB, MiB)
PLANS = {
    "quick": Plan(
        "quick",
        ((64, 10), (64 * KiB, 10), (64, 100), (KiB, 100)),
        max_chunks=150_000,
        max_bytes=256 * MiB,
        half_load_seconds=3,
        probe_streams=100,
    ),
    "full": Plan(
        "full",
        tuple((size, streams) for streams in (1, 10, 100, 1000) for size in SIZES),
        max_chunks=400_000,
        max_bytes=512 * MiB,
        half_load_seconds=5,
        probe_streams=1000,
    ),
    "tiny": Plan(
        "tiny",
        ((64, 2), (4 * KiB, 2)),
        max_chunks=200,
        max_bytes=MiB,
        half_load_seconds=0.5,
        probe_streams=2,
    ),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--mode", choices=sorted(PLANS), default=os.environ.get("BENCH", "quick"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--docs", action="store_true", help="also update docs/benchmarks.md")
    parser.add_argument("--from-json", type=Path, help="write the outputs of an earlier run")
    return parser.parse_args()


def machine() -> dict[str, Any]:
    """What the numbers were taken on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) * KiB
    import grpc
    from nats.aio.client import __version__ as nats_version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": report.fmt_bytes(memory),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "nats-py": nats_version,
        "note": "shared 2-core machine with other work running: numbers are noisy",
    }


def progress(line: str) -> None:
    """Progress on stderr, as it happens."""
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def main() -> None:
    """Run and write the outputs."""
    args = parse_args()
    if args.from_json:
        document = json.loads(args.from_json.read_text())
        document["targets"] = report.targets(document["results"])
        args.mode = document["mode"]
    else:
        document = run(args.mode)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.mode}.json").write_text(json.dumps(document, indent=1))
    markdown = render(document)
    (args.out / f"{args.mode}.md").write_text(markdown)
    plots = report.plots(document["results"], args.out)
    if args.docs:
        publish(markdown, plots, args.mode)
    progress(f"wrote {args.out / args.mode}.json, .md and {len(plots)} plots")
    print(report.targets_markdown(document["targets"]))


def run(mode: str) -> dict[str, Any]:
    """Run the plan of `mode`; the whole record of the run."""
    started = time.time()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as workdir:
        results = Runner(PLANS[mode], Path(workdir), progress).run()
    return {
        "mode": mode,
        "command": "make bench" if mode == "quick" else f"make bench BENCH={mode}",
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "minutes": round((time.time() - started) / 60, 1),
        "load_average": round(load, 2),
        "results": results,
        "targets": report.targets(results),
    }


def render(document: dict[str, Any]) -> str:
    """The Markdown report: machine, command, targets, table."""
    m = document["machine"]
    return f"""\
Run `{document["command"]}` ({document["mode"]} mode, {document["minutes"]} min) at \
{document["started"]} on {m["cpu"]}, {m["cores"]} cores, {m["memory"]}, Linux {m["kernel"]}, \
Python {m["python"]}, grpcio {m["grpcio"]}, nats-py {m["nats-py"]}.

> Taken on a shared machine (1-minute load average {document.get("load_average", "unknown")} \
as the run began): compare figures only with the baselines of the same run, and expect \
run-to-run spread.

Systems: `stream` and `batches` are the streamer's `Stream` and `StreamBatches` through the \
real stack (nats-server, 2 producers, edge over TLS); `G1`/`Gb` a bare grpcio TLS server \
writing pre-built messages one per write / in batches of the same byte bound; `N`/`N-js` \
plain nats-py publish to subscribe through the same nats-server (core / JetStream with an \
ack per publish). Latency is from the producer stamping the chunk to the client receiving it \
(G has no producer, so none). Ratios xG1, xGb, xN are chunks/s against the baseline at the \
same chunk size and stream count. `paced` runs search, from the `max` rate down, for the \
highest rate a handler pacing its chunks (a few every millisecond) can sustain: each NATS \
message then carries a few chunks, not thousands, so paced traffic costs more per chunk \
than a run at full speed. A run kept up when its median stream, from first chunk to last, \
ran at 0.97 of the asked rate or more. Until one keeps up, each run asks at most a quarter \
of the last rate and at most 0.8 of what it reached; then the runs bisect between the \
highest rate kept up with and the lowest one not, until the two are within 1.25 of each \
other; at most eight runs. `half` runs are paced at half the rate found (if none kept up, \
half the rate a ninth run would ask). CPU s and peak RSS MiB: per process \
(edge, producers, nats-server, client, baseline server or publisher), during the run.

### Targets

{report.targets_markdown(document["targets"])}

{report.memory_markdown(document["results"])}

### Every run

{report.table(document["results"])}
"""


def publish(markdown: str, plots: list[Path], mode: str) -> None:
    """docs/benchmarks.md and its plots under docs/benchmarks/."""
    docs = ROOT / "docs"
    (docs / "benchmarks").mkdir(exist_ok=True)
    for plot in plots:
        shutil.copy(plot, docs / "benchmarks" / plot.name)
    images = "\n\n".join(f"![{plot.stem}](benchmarks/{plot.name})" for plot in plots)
    (docs / "benchmarks.md").write_text(f"""\
# Benchmarks

The latest `make bench` results ({mode} mode); `make bench BENCH=full` runs the whole matrix
(chunk sizes 64 B, 1 KiB, 64 KiB, 1 MiB x 1, 10, 100, 1000 concurrent streams). The harness
lives in `bench/`; every run also leaves JSON, Markdown and plots in `bench/results/`.
What limits these figures, from profiles, and what would close the gaps:
[performance.md](performance.md).

{markdown}
{images}
""")


if __name__ == "__main__":
    main()
