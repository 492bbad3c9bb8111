"""`make bench` works end to end: the quick harness on tiny inputs (no timing assertions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import next_probe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_tiny_bench_measures_every_system_and_writes_every_output(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--mode", "tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert run.returncode == 0, run.stderr[-3000:]
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


def test_paced_search_stops_once_streams_keep_up_else_asks_less_than_they_reached() -> None:
    assert next_probe(1000, 970.0) is None
    assert next_probe(1000, 969.0) == 775
    assert next_probe(1000, 500.0) == 400
    assert next_probe(2, 1.9) == 1
    assert next_probe(1000, None) == 1


@pytest.mark.timeout(120)
def test_admission_prints_cpu_per_call_of_each_server_process() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.admission", "--streams", "4", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    bare, ours = run.stdout.splitlines()
    assert bare.startswith("round 1 G1: CPU ms per call")
    assert "4 calls in" in bare
    assert "FAILED" not in run.stdout
    names = re.findall(r"(\w[\w-]*) \d+\.\d\d", ours.split("(", 1)[1])
    assert names == ["edge", "nats", "producer-0", "producer-1"]
