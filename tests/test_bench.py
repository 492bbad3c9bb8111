"""`make bench` works end to end: the quick harness on tiny inputs (no timing assertions)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pytest

from bench import report
from bench.runner import PACED_PROBES, PacedSearch, peak_open

ROOT = Path(__file__).resolve().parents[1]


def bench_tool(module: str, *argv: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module> <argv>` from the repository root; fail unless it exits 0."""
    run = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.mark.timeout(300)
def test_tiny_bench_measures_every_system_and_writes_every_output(tmp_path: Path) -> None:
    run = bench_tool("bench", "--mode", "tiny", "--out", str(tmp_path), timeout=280)

    document = json.loads((tmp_path / "tiny.json").read_text())
    results = document["results"]
    assert {r["system"] for r in results} == {"stream", "batches", "G1", "Gb", "N", "N-js"}
    assert all(r["ok"] for r in results), [r["problems"] for r in results if not r["ok"]]
    assert all(r["chunks"] == r["count"] * r["streams"] for r in results)
    ours = [r for r in results if r["system"] in ("stream", "batches")]
    assert all(r["latency_ms"]["p99"] is not None for r in ours)
    for r in ours:
        assert set(r["processes"]) == {"edge", "producer-0", "producer-1", "nats", "client"}
        assert all(p["cpu_s"] >= 0 and p["peak_rss_mib"] > 0 for p in r["processes"].values())
    assert {r["load"] for r in ours} == {"max", "paced", "half", "hold"}
    assert all(r["kept_rate"] for r in ours if r["load"] == "paced")
    markdown = (tmp_path / "tiny.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| batches 64 B x2 max |"))
    rss = row.rstrip(" |").rsplit("|", 1)[1]
    assert [part.split()[0] for part in rss.split(",")] == ["edge", "prod", "prod", "nats", "clie"]
    held = {r["system"]: r["kib_per_stream"] for r in results if r["load"] == "hold"}
    assert set(held) == {"stream", "G1"}, "memory is probed on the edge and on G1"
    assert "with 2 open, the edge" in markdown
    assert "### Targets" in markdown
    for plot in ("throughput.png", "latency.png", "latency-load.png", "scaling.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")
    assert "[1/18]" in run.stderr, "progress is shown while running"


def search(start: int, reach: Callable[[int], float]) -> tuple[list[int], int]:
    """The rates a paced search asks of a stack that reaches `reach(rate)`, and what it found."""
    paced = PacedSearch(start)
    asked = []
    for _ in range(PACED_PROBES):
        asked.append(paced.rate)
        if paced.record(reach(paced.rate)):
            break
    return asked, paced.found


def test_paced_search_steps_to_what_a_stack_far_behind_reached_then_bisects() -> None:
    asked, found = search(1000, lambda rate: min(rate, 220))
    # 0.8 of the 220 reached, below a quarter of 1000; then between 176 (kept up) and 1000.
    assert asked == [1000, 176, 419, 271, 218]
    assert found == 218  # within CLOSE_ENOUGH of 271, the lowest rate it fell behind at


def test_paced_search_quarters_while_a_stack_nearly_keeps_up_then_bisects() -> None:
    # A stack that coalesces under load reaches 0.95 of any rate above its capacity.
    asked, found = search(8000, lambda rate: rate if rate <= 900 else 0.95 * rate)
    assert asked == [8000, 2000, 500, 1000, 707, 840]
    assert found == 840  # within CLOSE_ENOUGH of 1000


def test_paced_search_ends_at_once_when_the_unpaced_maximum_keeps_up() -> None:
    assert search(300, lambda rate: rate) == ([300], 300)


def test_paced_search_that_never_keeps_up_reports_the_next_rate_it_would_ask() -> None:
    assert search(64, lambda rate: 0.9 * rate) == ([64, 16, 4, 1], 1)
    assert search(8000, lambda rate: 0.9 * rate)[0] == [8000, 2000, 500, 125, 31, 7, 1]
    nothing = PacedSearch(1)
    assert nothing.record(None)
    assert nothing.found == 1


@pytest.mark.timeout(120)
def test_admission_prints_cpu_per_call_of_each_server_process() -> None:
    run = bench_tool("bench.admission", "--streams", "4", "--rounds", "1")

    bare, ours = run.stdout.splitlines()
    assert bare.startswith("round 1 G1: CPU ms per call")
    assert "4 calls in" in bare
    assert "FAILED" not in run.stdout
    names = re.findall(r"(\w[\w-]*) \d+\.\d\d", ours.split("(", 1)[1])
    assert names == ["edge", "nats", "producer-0", "producer-1"]


@pytest.mark.timeout(120)
def test_callstart_prints_first_chunk_and_end_percentiles_of_both_servers() -> None:
    run = bench_tool("bench.callstart", "--calls", "3", "--rounds", "1")

    lines = run.stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["round 1 G1", "round 1 Stream"]
    figures = r"p50 \d+\.\d\d p90 \d+\.\d\d p99 \d+\.\d\d ms"
    for line in lines:
        assert re.fullmatch(rf".*: first chunk {figures}; end {figures}", line), line


@pytest.mark.timeout(120)
def test_jsops_prints_cpu_per_operation_of_each_kind() -> None:
    run = bench_tool("bench.jsops", "--calls", "5", "--rounds", "1")

    (line,) = run.stdout.splitlines()
    figures = re.findall(r"(\w+) nats-server \d+ client \d+", line)
    assert line.startswith("round 1: CPU µs per operation: "), line
    assert figures == ["state", "consumer", "direct"], line


@pytest.mark.timeout(120)
def test_dedupe_prints_cpu_and_memory_per_message_of_both_headers() -> None:
    run = bench_tool("bench.dedupe", "--messages", "20", "--subjects", "2", "--rounds", "1")

    figures = r"nats-server [\d.]+ µs of CPU and -?\d+ B of memory per message \(20 messages"
    headers = [re.match(rf"round 1: ([\w-]+): {figures}", line) for line in run.stdout.splitlines()]
    assert [match and match[1] for match in headers] == ["Nats-Msg-Id", "Streamer-Write-Id"], run


@pytest.mark.timeout(120)
def test_pyalloc_prints_the_edges_python_allocations_per_open_stream() -> None:
    run = bench_tool("bench.pyalloc", "--streams", "4", "--top", "3")

    first, *sites = run.stdout.splitlines()
    assert re.fullmatch(r"Python allocations per open stream \(4 open\): -?\d+\.\d\d KiB", first)
    assert len(sites) == 3
    assert all(re.fullmatch(r" +-?\d+ B +-?\d+\.\d\d blocks  \S.*", site) for site in sites), sites


@pytest.mark.timeout(120)
def test_memory_prints_the_edge_and_g1_growth_per_open_stream() -> None:
    run = bench_tool("bench.memory", "--streams", "4", "--rounds", "1")

    (line,) = run.stdout.splitlines()
    assert re.fullmatch(
        r"round 1: per open stream with 4 open: stream -?\d+\.\d KiB, G1 -?\d+\.\d KiB", line
    ), line
    assert "exact-once in order" in run.stderr


def test_latency_plot_takes_a_half_load_run_at_the_rate_of_a_paced_one(tmp_path: Path) -> None:
    def run(load: str, rate: int, p50: float) -> dict[str, object]:
        latency = {"p50": p50, "p99": 2 * p50, "p999": 3 * p50}
        shape = {"system": "stream", "size": 64, "streams": 10}
        return {**shape, "load": load, "rate": rate, "latency_ms": latency}

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [run("paced", 12, 4.0), run("paced", 6, 2.5), run("half", 6, 2.0)]
    path = report._latency_by_load(plt, results, tmp_path / "latency-load.png")
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(120)
def test_cpu_prints_cpu_per_chunk_of_each_process() -> None:
    # 16 calls a round: the edge's CPU is read in 10 ms ticks, and 4 calls could take less.
    run = bench_tool("bench.cpu", "--streams", "16", "--count", "50", "--rounds", "2")

    rounds = run.stdout.splitlines()
    assert [line.split(":")[0] for line in rounds] == ["round 1", "round 2"]
    for line in rounds:
        figures = dict(re.findall(r"(\w+) (\d+\.\d\d)", line.split("(", 1)[1]))
        assert list(figures) == ["edge", "producers", "nats", "client"]
        total = float(line.split("CPU us per chunk ")[1].split()[0])
        assert total == pytest.approx(sum(map(float, figures.values())), abs=0.05)
        assert float(figures["edge"]) > 0
        assert float(figures["client"]) > 0


@pytest.mark.timeout(120)
def test_responsive_prints_how_long_health_checks_and_new_calls_wait_under_load() -> None:
    load = ["--streams", "4", "--count", "50000", "--rounds", "1"]
    run = bench_tool("bench.responsive", *load)

    (line,) = run.stdout.splitlines()
    assert line.startswith("round 1: load ")
    health = re.search(r"health n (\d+) p50 \d+ p90 \d+ max \d+ ms", line)
    assert health is not None, line
    assert int(health.group(1)) > 0, "no health check ran while the load lasted"
    assert re.search(r"new call first chunk n \d+", line), line


@pytest.mark.timeout(120)
def test_cpu_records_the_named_process_with_perf(tmp_path: Path) -> None:
    if shutil.which("perf") is None:
        # A profiling aid, not part of the service; .ci/run installs it (install-perf.sh).
        pytest.skip("perf is not on PATH (Debian: apt-get install linux-perf)")
    out = tmp_path / "nats.data"
    argv = ["--streams", "16", "--count", "50", "--rounds", "1", "--perf", "nats"]
    run = bench_tool("bench.cpu", *argv, "--perf-out", str(out))

    assert run.stdout.splitlines()[-1] == f"perf report -i {out} --children --sort sym"
    report = subprocess.run(
        ["perf", "report", "-i", str(out), "--stdio", "--sort", "comm"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "nats-server" in report.stdout


def test_targets_say_how_busy_a_half_load_run_kept_the_cores_and_when_calls_started() -> None:
    def run(load: str, streams: int, seconds: float, cpu: float, last_first_ms: float) -> dict:
        return {
            **{"system": "batches", "size": 64, "streams": streams, "load": load, "rate": 0},
            **{"ok": True, "seconds": seconds, "chunks_per_s": 1000.0 * streams},
            "latency_ms": {"p50": 24.2, "p99": 230.0, "p99.9": 300.0},
            "first_chunk_ms": {"median": 10.0, "max": last_first_ms},
            "processes": {"edge": {"cpu_s": cpu / 2}, "client": {"cpu_s": cpu / 2}},
        }

    results = [run("half", 10, 5.0, 9.5, 50.0), run("max", 100, 2.0, 4.0, 400.0)]
    results.append({**run("max", 1000, 10.2, 20.0, 10_100.0), "peak_open": 150})
    markdown = report.targets_markdown(report.targets(results))

    assert "batches 64 B x10 p50 ms (1.9 cores busy): 24.2 (needs < 2) missed" in markdown
    started = "(last first chunk 10.1 s into 10.2 s, at most 150 open at once): 10 (needs"
    assert f"batches 64 B x1000 ÷ x100 {started}" in markdown


def test_large_chunk_targets_say_where_each_process_spent_its_cpu_per_byte() -> None:
    def run(system: str, mb_per_s: float, cpu: dict[str, float]) -> dict:
        processes = {name: {"cpu_s": seconds} for name, seconds in cpu.items()}
        shape = {"system": system, "size": 64 * 1024, "streams": 10, "load": "max"}
        return {**shape, "mb_per_s": mb_per_s, "bytes": 10**9, "processes": processes}

    ours = {"edge": 6.5, "producer-0": 1.5, "producer-1": 1.1, "nats": 5.2, "client": 4.1}
    results = [run("stream", 80.0, ours), run("G1", 200.0, {"baseline-grpc": 3.0, "client": 4.1})]
    markdown = report.targets_markdown(report.targets(results))

    budget = "(CPU ns/B: edge 6.5, prod 2.6, nats 5.2, clie 4.1; G1 base 3.0, clie 4.1)"
    assert f"stream 64 KiB x10 MB/s ÷ G1 {budget}: 0.4 (needs >= 0.5) missed" in markdown
    results.append(run("N-js", 90.0, {"nats": 8.0, "client": 3.5, "publisher": 2.5}))
    markdown = report.targets_markdown(report.targets(results))
    hop = "G1 base 3.0, clie 4.1; N-js, the JetStream hop alone, ÷ G1 0.45)"
    assert f"{hop}: 0.4 (needs >= 0.5) missed" in markdown


def test_peak_open_counts_the_streams_open_at_the_same_time() -> None:
    def tally(started: float, done: float) -> dict[str, float]:
        return {"started": started, "done": done}

    # Three overlap in 2..3; the one starting as another ends does not add to it.
    tallies = [tally(0, 3), tally(1, 4), tally(2, 5), tally(5, 6), tally(6, 7)]
    assert peak_open(tallies) == 3


@pytest.mark.timeout(120)
def test_resume_prints_a_replay_and_a_resume_for_the_last_chunk() -> None:
    # 40 chunks of 256 KiB are 40 messages: enough for the edge to search.
    run = bench_tool("bench.resume", "--count", "40", "--size", str(256 * 1024), "--rounds", "1")

    (line,) = run.stdout.splitlines()
    match = re.fullmatch(
        r"round 1: 1 x 40 x 262144 B; replay [\d.]+ s, edge CPU [\d.]+ s, read ([\d.]+) MB; resume"
        r" for the last chunk [\d.]+ s, edge CPU [\d.]+ s, read ([\d.]+) MB: [\d.]+ of the"
        r" replay's time, [\d.]+ of its bytes",
        line,
    )
    assert match, line
    assert float(match[2]) < float(match[1]) / 2, line
