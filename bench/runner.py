"""Runs the scenarios: the real stack, the bare baselines, and one client process per run."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.hist import Histogram
from bench.procstat import Sampler, rss_bytes
from streamer_devstack.processes import Process
from streamer_devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
PART = 256 * 1024  # PRODUCER_MAX_PART_BYTES: larger chunks travel as several items
CLIENT_TIMEOUT = 180  # seconds a run may take before it counts as failed
PACED_PROBES = 8  # paced runs at most, searching for the rate the stack keeps up with
# A paced run kept up if its median stream ran at this fraction of the asked rate, from first
# chunk to last: over a probe of 2.5 s, latency grew by less than 75 ms.
KEPT_UP = 0.97
STEP_DOWN = 0.8  # until a run keeps up, the next asks at most this fraction of what one reached
DIVIDE = 4  # and at most this fraction of what it asked: a stack that coalesces nearly keeps up
CLOSE_ENOUGH = 1.25  # the search ends once the rate kept up with is this close to one that was not
OURS = ("stream", "batches")
BASELINES = ("G1", "Gb", "N", "N-js")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one invocation measures."""

    mode: str
    points: tuple[tuple[int, int], ...]  # (chunk size, concurrent streams)
    max_chunks: int  # per run, all streams together
    max_bytes: int
    half_load_seconds: float
    probe_streams: int  # streams held open to measure edge memory per stream

    def count(self, size: int, streams: int) -> int:
        """Chunks per stream for a run at full speed (fewer below 10 streams: they are slow)."""
        chunks = self.max_chunks * min(streams, 10) // 10
        return max(1, min(chunks, self.max_bytes // size) // streams)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One run: a system reading `streams` streams of `count` chunks of `size` bytes."""

    system: str
    size: int
    streams: int
    count: int
    # "max"; "paced" (searching for the highest paced rate kept up with); "half" (paced at
    # half of that); "hold" (slow streams held open)
    load: str = "max"
    rate: int = 0

    @property
    def name(self) -> str:
        """Short label for progress lines and tables."""
        return f"{self.system} {_size(self.size)} x{self.streams} {self.load}"


def _size(size: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def bench_env() -> dict[str, str]:
    """This environment, with the repository on PYTHONPATH so `bench.*` imports."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclasses.dataclass(frozen=True)
class Load:
    """A `bench.client` gRPC load: `streams` concurrent calls of `count` chunks of `size` bytes."""

    ca: Path
    target: str
    method: str  # "stream" or "batches"
    prefix: str  # of the stream ids: unique per load, so no call replays an earlier one
    streams: int
    count: int
    size: int
    part: int = PART  # largest item the handler emits
    rate: int = 0  # chunks/s per stream (0: no limit)
    no_latency: bool = False  # the server does not stamp its chunks (the G baselines)

    def command(self) -> list[str]:
        """The client's command line."""
        return _python(
            "bench.client",
            "grpc",
            *("--ca-file", str(self.ca), "--target", self.target, "--method", self.method),
            *("--prefix", self.prefix, "--streams", str(self.streams)),
            *("--count", str(self.count), "--size", str(self.size), "--part", str(self.part)),
            *(("--rate", str(self.rate)) if self.rate else ()),
            *(("--no-latency",) if self.no_latency else ()),
        )

    def start(self, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
        """The client, running in the background; with `stdout` piped, its JSON report."""
        return subprocess.Popen(self.command(), stdout=stdout, cwd=ROOT, env=bench_env())

    def report(self) -> Any:
        """Run the client to its end: its JSON report (CalledProcessError if it failed)."""
        run = subprocess.run(
            self.command(), check=True, stdout=subprocess.PIPE, cwd=ROOT, env=bench_env()
        )
        return json.loads(run.stdout)


def bench_stack(workdir: Path, streams: int) -> Stack:
    """The stack every benchmark runs: two producers with the bench handler, slots for `streams`."""
    return Stack(
        workdir,
        producers=2,
        edge={"EDGE_FIRST_CHUNK_TIMEOUT": "60s"},
        producer={
            "PRODUCER_HANDLER_MODULES": "bench.handlers",
            "PYTHONPATH": bench_env()["PYTHONPATH"],
            "PRODUCER_CONCURRENCY": str(streams // 2 + 4),
            "PRODUCER_MAX_PART_BYTES": str(PART),
        },
    )


@contextmanager
def baseline_server(stack: Stack) -> Iterator[tuple[int, int]]:
    """The bare grpcio TLS server (G1, Gb) beside `stack`: its port and pid."""
    server = Process(
        "baseline-grpc",
        _python("bench.baseline_grpc", "--cert", str(stack.tls.cert), "--key", str(stack.tls.key)),
        stack.workdir / "baseline-grpc.log",
        bench_env(),
    )
    server.spawn()
    try:
        yield int(server.wait_for(re.compile(rb"port (\d+)"), 30).group(1)), server.pid
    finally:
        server.stop(5)


class Runner:
    """Runs every scenario of a plan, printing progress; results land in `results`."""

    def __init__(self, plan: Plan, workdir: Path, progress: Callable[[str], None]) -> None:
        self.plan = plan
        self.workdir = workdir
        self.progress = progress
        self.results: list[dict[str, Any]] = []
        self._done = 0
        self._extra_probes = 0
        self._server_pid = 0

    @property
    def total(self) -> int:
        """Runs this plan will make, for the progress counter (paced searches may add some)."""
        paced_and_half = sum(2 * len(OURS) for size, _ in self.plan.points if size <= 1024)
        probes = 2 * len({s for _, s in self.plan.points if self._probes_at(s)})
        runs = len(self.plan.points) * (len(OURS) + len(BASELINES)) + paced_and_half + probes
        return runs + self._extra_probes

    def run(self) -> list[dict[str, Any]]:
        """Every point, grouped by stream count so each group shares one stack."""
        for streams in sorted({streams for _, streams in self.plan.points}):
            sizes = [size for size, s in self.plan.points if s == streams]
            with self._stack(streams) as stack, self._baseline_server(stack) as port:
                if self._probes_at(streams):
                    self._probe(stack, port, min(streams, self.plan.probe_streams))
                for size in sizes:
                    self._point(stack, port, size, streams)
        return self.results

    def hold(self, streams: int) -> list[dict[str, Any]]:
        """Only the memory probe, on a stack of its own: its edge and G1 runs."""
        with self._stack(streams) as stack, self._baseline_server(stack) as port:
            self._probe(stack, port, streams)
        return self.results

    @contextmanager
    def _stack(self, streams: int) -> Iterator[Stack]:
        stack = bench_stack(self.workdir / f"stack-{streams}", streams)
        self.progress(f"starting nats-server, 2 producers and the edge for {streams} streams")
        with stack.running():
            yield stack

    @contextmanager
    def _baseline_server(self, stack: Stack) -> Iterator[int]:
        with baseline_server(stack) as (port, pid):
            self._server_pid = pid
            yield port

    def _point(self, stack: Stack, port: int, size: int, streams: int) -> None:
        count = self.plan.count(size, streams)
        measured: dict[str, dict[str, Any]] = {}
        for system in (*OURS, *BASELINES):
            measured[system] = self._run(stack, port, Scenario(system, size, streams, count))
        if size > 1024:
            return
        for system in OURS:
            peak = max(1, int(measured[system]["chunks_per_s"] / streams))
            rate = max(1, self._kept_up_rate(stack, port, system, size, streams, peak) // 2)
            half_count = max(1, int(rate * self.plan.half_load_seconds))
            self._run(stack, port, Scenario(system, size, streams, half_count, "half", rate))

    def _kept_up_rate(
        self, stack: Stack, port: int, system: str, size: int, streams: int, rate: int
    ) -> int:
        """The highest paced rate per stream the stack keeps up with, searched down from `rate`.

        A paced handler hands over a few chunks at a time, so each NATS message carries few
        chunks and costs more per chunk than in a run at full speed: the unpaced maximum
        overstates the paced traffic the stack sustains, and half of it can be overload.
        """
        search = PacedSearch(rate)
        for probe in range(PACED_PROBES):
            if probe:
                self._extra_probes += 1
            count = max(2, int(search.rate * self.plan.half_load_seconds / 2))
            scenario = Scenario(system, size, streams, count, "paced", search.rate)
            if search.record(self._run(stack, port, scenario)["kept_rate"]):
                break
        return search.found

    def _probes_at(self, streams: int) -> bool:
        """Memory is probed on the stack for 100 streams and more (tiny plans: any)."""
        return bool(self.plan.probe_streams) and streams >= min(100, self.plan.probe_streams)

    def _probe(self, stack: Stack, port: int, streams: int) -> None:
        """Hold `streams` slow streams open on the edge, then on G1: memory per open stream."""
        assert stack.edge is not None
        for system, process, pid in (
            ("stream", "edge", stack.edge.pid),
            ("G1", "baseline-grpc", self._server_pid),
        ):
            before = rss_bytes(pid)
            result = self._run(stack, port, Scenario(system, 64, streams, 10, "hold", 2))
            if not result["ok"]:  # streams that failed early held nothing open
                self.progress(f"    {process} memory per open stream not measured: runs failed")
                continue
            grown = result["processes"][process]["peak_rss_mib"] * 2**20 - before
            result["kib_per_stream"] = round(grown / streams / 1024, 1)
            self.progress(f"    {process} memory per open stream: {result['kib_per_stream']} KiB")

    def _run(self, stack: Stack, port: int, scenario: Scenario) -> dict[str, Any]:
        self._done += 1
        self.progress(
            f"[{self._done}/{self.total}] {scenario.name}: {scenario.count} chunks "
            f"per stream{f' at {scenario.rate}/s' if scenario.rate else ''} ..."
        )
        sampler = Sampler()
        if scenario.system in OURS:
            for service in [stack.edge, *stack.producers]:
                assert service is not None
                sampler.add(service.name, service.pid)
        if scenario.system in ("G1", "Gb"):
            sampler.add("baseline-grpc", self._server_pid)
            self._client(stack, port, dataclasses.replace(scenario, streams=1))
        sampler.add("nats", stack.nats.pid)
        sampler.start()
        raw = self._client(stack, port, scenario)
        result = summarise(scenario, raw, sampler.stop())
        self.results.append(result)
        self.progress(
            f"    {result['chunks_per_s']:,.0f} chunks/s, {result['mb_per_s']:,.1f} MB/s, "
            f"p99 {result['latency_ms']['p99']} ms, "
            f"{'exact-once in order' if result['ok'] else result['problems'][:1]}"
        )
        return result

    def _client(self, stack: Stack, port: int, scenario: Scenario) -> Any:
        prefix = f"b{time.time_ns() % 10**12}"
        if scenario.system in ("N", "N-js"):
            shape = ["--prefix", prefix, "--streams", str(scenario.streams)]
            shape += ["--count", str(scenario.count), "--size", str(scenario.size)]
            return self._nats(stack, scenario, shape)
        load = Load(
            ca=stack.tls.cert,
            target=stack.target,
            method=scenario.system,
            prefix=prefix,
            streams=scenario.streams,
            count=scenario.count,
            size=scenario.size,
            rate=scenario.rate,
        )
        if scenario.system not in OURS:  # G1 and Gb: the bare server, sending whole chunks
            load = dataclasses.replace(
                load,
                target=f"127.0.0.1:{port}",
                method="stream" if scenario.system == "G1" else "batches",
                part=scenario.size,
                no_latency=True,
            )
        return self._collect(load.start())

    def _nats(self, stack: Stack, scenario: Scenario, shape: list[str]) -> Any:
        jetstream = scenario.system == "N-js"
        client = subprocess.Popen(
            _python(
                "bench.client",
                "nats-js" if jetstream else "nats",
                "--target",
                stack.nats.url,
                "--timeout",
                # Plain NATS drops what a slow subscriber cannot take: do not wait for it.
                # JetStream keeps everything, only slowly (an ack per publish).
                str(CLIENT_TIMEOUT - 10 if jetstream else 60),
                *shape,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=bench_env(),
        )
        assert client.stderr is not None
        client.stderr.readline()  # "ready": subscribed before the first publish
        publisher = subprocess.Popen(
            _python(
                "bench.natspub",
                "--url",
                stack.nats.url,
                *shape,
                *(["--jetstream"] if jetstream else []),
            ),
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=bench_env(),
        )
        assert publisher.stdout is not None
        started = float(publisher.stdout.readline().split()[1])
        usage = publisher.stdout.read().split(b"usage ", 1)[-1]
        publisher.wait()
        raw = self._collect(client)
        if raw is not None:
            raw["publisher"] = json.loads(usage) if usage.strip() else None
            for tally in raw["streams"]:
                tally["started"] = started  # timed from the first publish, not the process start
        return raw

    def _collect(self, client: subprocess.Popen[bytes]) -> Any:
        try:
            out, _ = client.communicate(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            client.kill()
            out, _ = client.communicate()
        try:
            return json.loads(out)
        except ValueError:
            return None


@dataclasses.dataclass
class PacedSearch:
    """Where the search for the highest paced rate kept up with stands, and what to ask next.

    Until a run keeps up, each asks at most a quarter of the last rate, and at most
    `STEP_DOWN` of what that run reached (a stack far behind says where its capacity is;
    one that coalesces what it is late with nearly keeps up at any rate); once one has
    kept up, the runs bisect (geometrically) between the highest rate kept up with and the
    lowest one not, until the two are `CLOSE_ENOUGH`.
    """

    rate: int  # the rate the next run asks, per stream
    kept: int = 0  # the highest rate a run kept up with (0: none yet)
    behind: int = 0  # the lowest rate a run fell behind at (0: none yet)

    def record(self, reached: float | None) -> bool:
        """Record what the run at `rate` reached (None: nothing); True when the search is done."""
        asked = self.rate
        if reached is not None and reached >= KEPT_UP * asked:
            self.kept = max(self.kept, asked)
            if not self.behind:  # kept up at the unpaced maximum: nothing above to try
                return True
        else:
            self.behind = min(self.behind or asked, asked)
            if asked == 1:
                return True
        if self.kept:
            self.rate = int(math.sqrt(self.kept * self.behind))
            return self.behind <= CLOSE_ENOUGH * self.kept or self.rate in (self.kept, self.behind)
        self.rate = max(1, min(asked // DIVIDE, int((reached or 0) * STEP_DOWN)))
        return False

    @property
    def found(self) -> int:
        """The rate kept up with; if none was, the rate a next run would have asked."""
        return self.kept or self.rate


def _kept_rate(tallies: list[dict[str, Any]]) -> float | None:
    """Median chunks/s of the streams from their first chunk to their last (start excluded)."""
    rates = [
        ((t["next_sequence"] - 1) // t["parts"] - 1) / (t["done"] - t["first"])
        for t in tallies
        if t["first"] and t["done"] > t["first"] and (t["next_sequence"] - 1) // t["parts"] > 1
    ]
    return round(statistics.median(rates), 1) if rates else None


def peak_open(tallies: list[dict[str, Any]]) -> int:
    """The most streams open at once, from each one's start to its end."""
    # (time, -1) sorts before (time, 1): a stream ending as another starts is not overlap.
    events = sorted([(t["started"], 1) for t in tallies] + [(t["done"], -1) for t in tallies])
    peak = open_ = 0
    for _, step in events:
        open_ += step
        peak = max(peak, open_)
    return peak


def summarise(
    scenario: Scenario, raw: dict[str, Any] | None, processes: dict[str, Any]
) -> dict[str, Any]:
    """Throughput, per-stream spread, latency and the exact-once check of one run."""
    if raw is None:
        raw = {
            "histogram": None,
            "streams": [
                {
                    "problem": "client failed or timed out",
                    "started": 0.0,
                    "first": 0.0,
                    "done": 1.0,
                    "total_bytes": 0,
                    "next_sequence": 1,
                    "parts": 1,
                }
            ],
        }
    tallies = raw["streams"]
    own = {"client": raw.get("usage"), "publisher": raw.get("publisher")}
    processes = {**processes, **{name: usage for name, usage in own.items() if usage}}
    problems = [t["problem"] for t in tallies if t["problem"]]
    wall = max(t["done"] for t in tallies) - min(t["started"] for t in tallies)
    total_bytes = sum(t["total_bytes"] for t in tallies)
    chunks = sum((t["next_sequence"] - 1) // t["parts"] for t in tallies)
    per_stream = sorted(
        t["total_bytes"] / max(t["done"] - t["started"], 1e-9) / 1e6 for t in tallies
    )
    first = sorted(t["first"] - t["started"] for t in tallies if t["first"])
    hist = Histogram.from_json(raw["histogram"]) if raw["histogram"] is not None else None
    return {
        **dataclasses.asdict(scenario),
        "ok": not problems,
        "problems": problems[:5],
        "seconds": round(wall, 3),
        "chunks": chunks,
        "bytes": total_bytes,
        "chunks_per_s": round(chunks / wall, 1),
        "mb_per_s": round(total_bytes / wall / 1e6, 2),
        "kept_rate": _kept_rate(tallies),
        "peak_open": peak_open(tallies),
        "stream_mb_per_s": {
            "min": round(per_stream[0], 3),
            "median": round(statistics.median(per_stream), 3),
        },
        "latency_ms": {
            key: _round(hist.percentile(q)) if hist else None
            for key, q in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))
        },
        "latency_histogram": hist.to_json() if hist else None,
        "first_chunk_ms": {
            "median": _round(statistics.median(first) * 1000) if first else None,
            "max": _round(first[-1] * 1000) if first else None,
        },
        "processes": processes,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
