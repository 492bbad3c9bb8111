"""`streamer-stack`: run the local stack: `demo`, `up`, `down`.

Options after `demo` that are not the stack's own go to streamer-client.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from streamer_devstack.processes import StartError
from streamer_devstack.stack import Stack

STATE = "stack.json"


def demo(workdir: Path, client_args: list[str]) -> int:
    """Start everything, stream once with the bundled client, stop everything."""
    with Stack(workdir).running() as stack:
        print(
            f"stack up: nats {stack.nats.url}, edge {stack.target} (logs in {workdir})", flush=True
        )
        command = [
            sys.executable,
            "-m",
            "streamer_client",
            "--target",
            f"localhost:{stack.edge.ready['port']}",  # type: ignore[union-attr]
            "--ca-file",
            str(stack.tls.cert),
            *client_args,
        ]
        return subprocess.call(command)


def up(workdir: Path, address: str) -> int:
    """Start the stack in the background (edge on `address`) and remember its processes."""
    if (workdir / STATE).exists():
        print(f"already up ({workdir / STATE}); run `make down` first", file=sys.stderr)
        return 1
    stack = Stack(workdir, edge_address=address)
    try:
        stack.start(detach=True)
    except StartError:
        stack.stop()
        raise
    processes = [stack.edge, *stack.producers, stack.nats]
    (workdir / STATE).write_text(json.dumps({p.name: p.pid for p in processes if p}))
    print(
        f"stack up: edge localhost:{stack.edge.ready['port']} (TLS, CA {stack.tls.cert}), "  # type: ignore[union-attr]
        f"nats {stack.nats.url}, logs in {workdir}/"
    )
    return 0


def down(workdir: Path) -> int:
    """Stop what `up` started: edge first, NATS last."""
    state = workdir / STATE
    if not state.exists():
        print("nothing is up")
        return 0
    for name, pid in json.loads(state.read_text()).items():
        with_signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            with_signal(pid, signal.SIGKILL)
        print(f"stopped {name} ({pid})")
    state.unlink()
    return 0


def with_signal(pid: int, signum: signal.Signals) -> None:
    """Signal `pid`, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def alive(pid: int) -> bool:
    """True while `pid` exists (and is not a zombie we could reap)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="streamer-stack", description=__doc__)
    parser.add_argument("command", choices=["demo", "up", "down"])
    parser.add_argument("--workdir", default=".local", type=Path)
    parser.add_argument("--edge-address", default="127.0.0.1:50051", help="up: the edge's address")
    args, client_args = parser.parse_known_args()
    client_args = [a for a in client_args if a != "--"]
    try:
        if args.command == "demo":
            sys.exit(demo(args.workdir.resolve(), client_args))
        if args.command == "up":
            sys.exit(up(args.workdir.resolve(), args.edge_address))
        sys.exit(down(args.workdir.resolve()))
    except StartError as error:
        sys.exit(f"streamer-stack: {error}")


if __name__ == "__main__":
    main()
