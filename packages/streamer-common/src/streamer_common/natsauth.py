"""How a service and NATS prove themselves to each other: TLS and a credentials file."""

from __future__ import annotations

import base64
import logging
import ssl
from typing import Any

import nkeys

from streamer_common.files import ChangeWatch

logger = logging.getLogger(__name__)


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
        self._load_into(self)
        self._watch = ChangeWatch(self._paths)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        """asyncio's call before each handshake."""
        self._reload_if_changed()
        return super().wrap_bio(*args, **kwargs)

    def _load_into(self, context: ssl.SSLContext) -> None:
        if self._ca_file:
            context.load_verify_locations(cafile=self._ca_file)
        else:
            context.load_default_certs()
        if self._pair is not None:
            context.load_cert_chain(*self._pair)

    def _reload_if_changed(self) -> None:
        try:
            if not self._watch.changed():
                return
            # A trial first: a key that does not match would leave this context half loaded.
            self._load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
            self._load_into(self)
        except (OSError, ssl.SSLError) as error:
            logger.warning(
                "cannot load the changed NATS TLS files; using the ones loaded before",
                extra={"files": self._paths, "error": repr(error)},
            )
            return
        logger.info("reloaded the NATS TLS files", extra={"files": self._paths})


def read_creds(path: str) -> tuple[bytes, bytes]:
    """The user JWT and nkey seed of the `.creds` file at `path`.

    ValueError naming what is wrong, never the seed; OSError if the file cannot be read.
    """
    with open(path, "rb") as file:
        lines = [line.strip() for line in file]
    found: dict[bytes, bytes] = {}
    for marker in (b"BEGIN NATS USER JWT", b"BEGIN USER NKEY SEED"):
        at = next((i for i, line in enumerate(lines) if marker in line), None)
        if at is not None and at + 1 < len(lines) and lines[at + 1]:
            found[marker] = lines[at + 1]
    if b"BEGIN NATS USER JWT" not in found:
        raise ValueError("no user JWT (after -----BEGIN NATS USER JWT-----)")
    if b"BEGIN USER NKEY SEED" not in found:
        raise ValueError("no user nkey seed (after -----BEGIN USER NKEY SEED-----)")
    seed = found[b"BEGIN USER NKEY SEED"]
    try:
        nkeys.from_seed(bytearray(seed)).wipe()
    except (nkeys.NkeysError, ValueError):  # ValueError: binascii's, from base32
        raise ValueError("its user nkey seed is not a valid seed") from None
    return found[b"BEGIN NATS USER JWT"], seed


class Credentials:
    """A `.creds` file that signs the server's challenge, read again when it changes.

    nats-py reads such a file itself at every (re)connection, and fails badly on a broken
    one: on a file with no JWT it reads on past the end for ever, hanging the service deaf
    to SIGTERM; on one with no valid seed its reconnecting task dies of an error it does not
    retry (a TypeError, or nkeys' own) and the service stays cut off. Here a changed file
    is read at the next connection's challenge (at most once a second); one that does not
    load is logged and the JWT and seed loaded before are kept. A renewed user JWT (they
    expire) is presented from the next reconnection on.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._jwt, self._seed = read_creds(path)
        self._watch = ChangeWatch([path])

    def sign(self, nonce: str) -> bytes:
        """nats-py's `signature_cb`: the server's nonce signed, base64; asked first."""
        self._reload_if_changed()
        key = nkeys.from_seed(bytearray(self._seed))
        try:
            return base64.b64encode(key.sign(nonce.encode()))
        finally:
            key.wipe()

    def jwt(self) -> bytes:
        """nats-py's `user_jwt_cb`: the user JWT loaded with the seed that signed."""
        return self._jwt

    def _reload_if_changed(self) -> None:
        try:
            if not self._watch.changed():
                return
            self._jwt, self._seed = read_creds(self._path)
        except (OSError, ValueError) as error:
            logger.warning(
                "cannot load the changed NATS credentials file; using the one loaded before",
                extra={"file": self._path, "error": str(error)},
            )
            return
        logger.info("reloaded the NATS credentials file", extra={"file": self._path})
