"""The commands a user runs: the demo, the client, and the stack left up for grpcurl."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from streamer_devstack.stack import Stack
from support import new_id

PYTHON = sys.executable


def client(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run streamer-client against `stack` as a user would."""
    port = stack.edge.ready["port"]  # type: ignore[union-attr]
    return subprocess.run(
        [
            PYTHON,
            "-m",
            "streamer_client",
            "--target",
            f"localhost:{port}",
            "--ca-file",
            str(stack.tls.cert),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_runs_the_whole_stack_and_stops_it(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            PYTHON,
            "-m",
            "streamer_devstack",
            "demo",
            "--workdir",
            str(tmp_path),
            "--param",
            "count=3",
            "--param",
            "interval_ms=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1:] == [
        "Sequence[1]: DATA 0",
        "Sequence[2]: DATA 1",
        "Sequence[3]: DATA 2",
        "Stream is over",
    ]
    assert (tmp_path / "tls" / "app.crt").exists()
    assert (tmp_path / "tls" / "app.key").exists()


def test_client_prints_the_stream_and_resumes(shared_stack: Stack) -> None:
    stream_id = new_id()
    full = client(shared_stack, "--id", stream_id, "--param", "count=4", "--param", "interval_ms=1")
    resumed = client(shared_stack, "--id", stream_id, "--after-sequence", "2")

    assert full.returncode == 0
    assert full.stdout.splitlines() == [
        "Sequence[1]: DATA 0",
        "Sequence[2]: DATA 1",
        "Sequence[3]: DATA 2",
        "Sequence[4]: DATA 3",
        "Stream is over",
    ]
    assert resumed.stdout.splitlines() == [
        "Sequence[3]: DATA 2",
        "Sequence[4]: DATA 3",
        "Stream is over",
    ]


def test_client_exits_non_zero_with_the_status(shared_stack: Stack) -> None:
    run = client(shared_stack, "--id", "a.b")

    assert run.returncode == 1
    assert run.stderr.startswith("error: INVALID_ARGUMENT: id 'a.b' has characters outside")


def test_up_leaves_the_stack_running_until_down(tmp_path: Path) -> None:
    command = [PYTHON, "-m", "streamer_devstack"]
    up = subprocess.run(
        [*command, "up", "--workdir", str(tmp_path), "--edge-address", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert up.returncode == 0, up.stderr
        port = re.search(r"edge localhost:(\d+)", up.stdout).group(1)  # type: ignore[union-attr]
        streamed = subprocess.run(
            [
                PYTHON,
                "-m",
                "streamer_client",
                "--target",
                f"localhost:{port}",
                "--ca-file",
                str(tmp_path / "tls" / "app.crt"),
                "--param",
                "count=2",
                "--param",
                "interval_ms=1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        pids = json.loads((tmp_path / "stack.json").read_text()).values()
    finally:
        down = subprocess.run(
            [*command, "down", "--workdir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert streamed.stdout.splitlines()[-1] == "Stream is over"
    assert down.returncode == 0
    assert not (tmp_path / "stack.json").exists()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    assert os.path.exists(tmp_path / "edge.log")
