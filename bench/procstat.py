"""CPU seconds and peak resident memory of running processes, read from /proc."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` now (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def own_usage(cpu_at_start: float) -> dict[str, float]:
    """This process's CPU seconds since `cpu_at_start` (a `time.process_time()`) and peak RSS."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "cpu_s": round(time.process_time() - cpu_at_start, 3),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


class Sampler:
    """Samples CPU and RSS of named processes from `start()` to `stop()`.

    A process added after start (a client) is measured from when it is added, and its
    CPU is read once more at `final()` before it is reaped.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self._interval = interval
        self._pids: dict[str, int] = {}
        self._cpu_start: dict[str, float] = {}
        self._cpu_end: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def add(self, name: str, pid: int) -> None:
        """Measure `pid` under `name` from now on."""
        self._pids[name] = pid
        self._cpu_start[name] = cpu_seconds(pid)
        self.peak[name] = rss_bytes(pid)

    def start(self) -> None:
        """Begin sampling memory."""
        self._thread.start()

    def final(self, name: str) -> None:
        """Read `name`'s CPU now, while it still exists."""
        self._cpu_end[name] = cpu_seconds(self._pids[name])
        self._sample(name)

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop sampling; CPU seconds and peak RSS (MiB) per process."""
        self._stop.set()
        self._thread.join()
        for name in self._pids:
            if name not in self._cpu_end:
                self.final(name)
        return {
            name: {
                "cpu_s": round(self._cpu_end[name] - self._cpu_start[name], 3),
                "peak_rss_mib": round(self.peak[name] / 2**20, 1),
            }
            for name in self._pids
        }

    def _sample(self, name: str) -> None:
        self.peak[name] = max(self.peak[name], rss_bytes(self._pids[name]))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for name in list(self._pids):
                self._sample(name)
