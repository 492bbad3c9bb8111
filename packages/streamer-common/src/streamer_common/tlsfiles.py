"""TLS files read again when they change: a watch on them, and the TLS context to NATS."""

from __future__ import annotations

import logging
import os
import ssl
import time
from typing import Any

logger = logging.getLogger(__name__)

_RELOAD_CHECK = 1.0  # seconds between looks at the files, at most


class ChangeWatch:
    """Whether files changed since the last look, looking at most every `interval`.

    A change is a new inode, modification time or size: the kubelet swaps a mounted
    Secret's files through a symlink, cert-manager rewrites them in place. Raises OSError
    when a file cannot be looked at.
    """

    def __init__(self, paths: list[str], interval: float = _RELOAD_CHECK) -> None:
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


class ClientTls(ssl.SSLContext):
    """The client TLS context a NATS connection uses, reading its files again when they change.

    Verifies servers with `ca_file` (the system's CAs without one) and, given `cert_file`
    and `key_file`, presents that certificate to servers that ask for one (nats-server's
    `verify: true`). Each TLS handshake, the first connection's and every reconnection's,
    starts with a look at the files, at most once a second: certificates that cert-manager
    renewed are presented from the next reconnection on, while open connections keep their
    session. Files that do not load together are logged and the ones loaded before kept.
    A renewed CA is trusted beside the one loaded before it, until the service restarts.
    """

    def __new__(cls, ca_file: str, cert_file: str = "", key_file: str = "") -> ClientTls:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, ca_file: str, cert_file: str = "", key_file: str = "") -> None:
        self._ca_file = ca_file
        self._pair = (cert_file, key_file) if cert_file else None
        self._paths = [path for path in (ca_file, cert_file, key_file) if path]
        self._load()
        self._watch = ChangeWatch(self._paths)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        """asyncio's call before each handshake."""
        self._reload_if_changed()
        return super().wrap_bio(*args, **kwargs)

    def _load(self) -> None:
        if self._ca_file:
            self.load_verify_locations(cafile=self._ca_file)
        else:
            self.load_default_certs()
        if self._pair is not None:
            self.load_cert_chain(*self._pair)

    def _reload_if_changed(self) -> None:
        try:
            if not self._watch.changed():
                return
            # A trial first: a key that does not match would leave this context half loaded.
            ClientTls(self._ca_file, *(self._pair or ("", "")))
            self._load()
        except (OSError, ssl.SSLError) as error:
            logger.warning(
                "cannot load the changed NATS TLS files; using the ones loaded before",
                extra={"files": self._paths, "error": repr(error)},
            )
            return
        logger.info("reloaded the NATS TLS files", extra={"files": self._paths})
