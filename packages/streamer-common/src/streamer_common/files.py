"""Files a service reads again when they change (certificates, keys, credentials)."""

from __future__ import annotations

import os
import time

_LOOK_EVERY = 1.0  # seconds between looks at the files, at most


class ChangeWatch:
    """Whether files changed since the last look, looking at most every `interval`.

    A change is a new inode, modification time or size: the kubelet swaps a mounted
    Secret's files through a symlink, cert-manager rewrites them in place. Raises OSError
    when a file cannot be looked at.
    """

    def __init__(self, paths: list[str], interval: float = _LOOK_EVERY) -> None:
        self._paths = paths
        self._interval = interval
        self._looked = time.monotonic()
        self._seen = self._fingerprint()

    def changed(self) -> bool:
        """True once for each change, seen at the first look after it."""
        now = time.monotonic()
        if now - self._looked < self._interval:
            return False
        self._looked = now
        seen = self._fingerprint()
        if seen == self._seen:
            return False
        self._seen = seen
        return True

    def _fingerprint(self) -> tuple[tuple[int, int, int], ...]:
        stats = [os.stat(path) for path in self._paths]  # through the kubelet's symlinks
        return tuple((stat.st_ino, stat.st_mtime_ns, stat.st_size) for stat in stats)
