"""A nats-server in operator mode: an operator, one account with JetStream limits, its users.

This is how managed NATS services (and `nsc`-run clusters) give out access: the server
trusts an operator's key, accounts are JWTs the operator signs, and a client connects with
a `.creds` file holding its user's JWT and nkey seed. Only such accounts can have
JetStream limits per replica count (tiers), which a server's configuration file cannot set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "conn": -1}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def _public(key: nkeys.KeyPair) -> str:
    return bytes(key.public_key).decode()


def _jwt(signer: nkeys.KeyPair, subject: nkeys.KeyPair, name: str, nats: dict[str, Any]) -> str:
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": _public(signer),
        "name": name,
        "sub": _public(subject),
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.sha512(json.dumps(claims, sort_keys=True).encode()).digest()[:32]
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    body = _b64(json.dumps(_HEADER).encode()) + "." + _b64(json.dumps(claims).encode())
    return body + "." + _b64(signer.sign(body.encode()))


def operator_mode(
    workdir: Path, jetstream: dict[str, Any], users: tuple[str, ...] = ("app",)
) -> tuple[str, Path]:
    """Server configuration text, and the path of the first user's `.creds` file.

    Each of `users` gets `<user>.creds` in `workdir`. `jetstream` is the account's
    JetStream limits as the account JWT spells them, such as
    `{"tiered_limits": {"R1": {"disk_storage": -1, "consumer": 600, ...}}}`.
    """
    operator = _key(nkeys.PREFIX_BYTE_OPERATOR)
    account = _key(nkeys.PREFIX_BYTE_ACCOUNT)
    account_jwt = _jwt(
        operator,
        account,
        "APP",
        {"type": "account", "limits": {**_UNLIMITED, "wildcards": True, **jetstream}},
    )
    system = _key(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream needs one
    system_jwt = _jwt(operator, system, "SYS", {"type": "account", "limits": _UNLIMITED})
    workdir.mkdir(parents=True, exist_ok=True)
    for name in users:
        user = _key(nkeys.PREFIX_BYTE_USER)
        user_jwt = _jwt(
            account,
            user,
            name,
            {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
        )
        (workdir / f"{name}.creds").write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{user_jwt}\n"
            "------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{bytes(user.seed).decode()}\n"
            "------END USER NKEY SEED------\n"
        )
    config = (
        f"operator: {_jwt(operator, operator, 'OP', {'type': 'operator'})}\n"
        f"system_account: {_public(system)}\n"
        "resolver: MEMORY\n"
        "resolver_preload: {\n"
        f"  {_public(system)}: {system_jwt}\n"
        f"  {_public(account)}: {account_jwt}\n"
        "}\n"
    )
    return config, workdir / f"{users[0]}.creds"
