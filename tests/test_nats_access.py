"""How the services reach NATS: passwords, `.creds` files, TLS and client certificates (read
again when they change), a server they cannot use, and a server gone as they stop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from conftest import StackFactory
from natsjwt import operator_mode
from streamer_common.natsio import connect
from streamer_common.settings import NatsSettings
from streamer_common.topology import Topology, ensure_topology
from streamer_devstack import tls
from streamer_devstack.processes import NatsServer, Service
from streamer_devstack.stack import edge_env, producer_env
from support import collect, free_port, log_events, new_id, request, wait_until

# The chart's bundled NATS: every client must log in.
PASSWORDS = "authorization { users [ { user: app, password: s3cret } ] }\n"


async def test_services_log_in_with_a_user_and_password(make_stack: StackFactory) -> None:
    login = {"NATS_USER": "app", "NATS_PASSWORD": "s3cret"}
    stack = make_stack(
        nats_config=PASSWORDS,
        edge={f"EDGE_{name}": value for name, value in login.items()},
        producer={f"PRODUCER_{name}": value for name, value in login.items()},
    )

    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))

    result.assert_complete(3)


def tls_config(pair: tls.KeyPair, handshake_first: bool = False) -> str:
    """nats-server configuration that takes TLS clients only, with `pair`."""
    first = ", handshake_first: true" if handshake_first else ""
    return f'tls {{ cert_file: "{pair.cert}", key_file: "{pair.key}"{first} }}\n'


async def test_services_reach_a_nats_server_that_requires_tls(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    pair = tls.self_signed(tmp_path / "nats-tls", stem="nats")
    stack = make_stack(
        nats_config=tls_config(pair),
        edge={"EDGE_NATS_TLS_CA_FILE": str(pair.cert)},
        producer={"PRODUCER_NATS_TLS_CA_FILE": str(pair.cert)},
    )

    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))

    result.assert_complete(3)


async def test_services_reach_a_nats_server_that_wants_tls_before_anything_else(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # nats-server's handshake_first, for NATS behind a load balancer that terminates TLS.
    pair = tls.self_signed(tmp_path / "nats-tls", stem="nats")
    settings = {"NATS_TLS_CA_FILE": str(pair.cert), "NATS_TLS_HANDSHAKE_FIRST": "true"}
    stack = make_stack(
        nats_config=tls_config(pair, handshake_first=True),
        edge={f"EDGE_{name}": value for name, value in settings.items()},
        producer={f"PRODUCER_{name}": value for name, value in settings.items()},
    )

    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))

    result.assert_complete(3)


async def test_a_tls_url_connects_with_the_configured_ca(tmp_path: Path) -> None:
    pair = tls.self_signed(tmp_path / "nats-tls", stem="nats")
    server = NatsServer(tmp_path, config=tls_config(pair))
    await asyncio.to_thread(server.start)
    try:
        url = server.url.replace("nats://", "tls://")
        settings = NatsSettings(nats_url=(url,), nats_tls_ca_file=str(pair.cert))
        nc = await connect(settings, "test", asyncio.Event())
        assert nc is not None
        try:
            assert await ensure_topology(nc, Topology.from_settings(settings))
        finally:
            await nc.close()
    finally:
        await asyncio.to_thread(server.stop)


def service(kind: str, workdir: Path, url: str, **settings: str) -> Service:
    """An edge or a producer reaching NATS at `url`, with `settings` under its prefix."""
    prefix = kind.upper()
    env = {f"{prefix}_{name}": value for name, value in settings.items()}
    if kind == "edge":
        env = edge_env(url, tls.ensure(workdir / "tls"), "127.0.0.1:0", **env)
        return Service("edge", "streamer_edge", workdir / "edge.log", env)
    return Service(
        "producer", "streamer_producer", workdir / "producer.log", producer_env(url, **env)
    )


@pytest.mark.parametrize("kind", ["edge", "producer"])
@pytest.mark.parametrize("cause", ["unreachable", "wrong password"])
async def test_a_service_that_cannot_use_nats_at_start_waits_and_stops_on_sigterm(
    tmp_path: Path, kind: str, cause: str
) -> None:
    server = NatsServer(tmp_path, config=PASSWORDS)
    if cause == "unreachable":
        url, login = f"nats://127.0.0.1:{free_port()}", {}
    else:
        await asyncio.to_thread(server.start)
        url, login = server.url, {"NATS_USER": "app", "NATS_PASSWORD": "wrong"}
    waiting = service(kind, tmp_path, url, **login)
    waiting.spawn()
    try:
        await wait_until(lambda: bool(log_events(waiting, "NATS connection error")), timeout=20)
        await asyncio.sleep(3)  # six more attempts, every reconnect_time_wait (0.5 s)
        waiting.signal(signal.SIGTERM)
        assert waiting.popen is not None
        code = await asyncio.to_thread(waiting.popen.wait, 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {kind} did not stop within 10 s of SIGTERM")
    finally:
        waiting.kill()
        await asyncio.to_thread(server.stop)

    assert code == 0
    errors = log_events(waiting, "NATS connection error")
    expected = "Connect call failed" if cause == "unreachable" else "Authorization Violation"
    assert expected in errors[0]
    # Each error once, not once per attempt; a refused login also resets the connection.
    assert len(errors) <= 2, errors


@pytest.mark.parametrize("name", ["CREDS", "TLS_CA"])
def test_a_nats_file_that_is_not_there_stops_start_up_clearly(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "absent"
    env = producer_env("nats://127.0.0.1:4222", **{f"PRODUCER_NATS_{name}_FILE": str(missing)})
    producer = Service("producer", "streamer_producer", tmp_path / "producer.log", env)

    assert f"NATS_{name}_FILE '{missing}' is not a file" in refused_start_up(producer)


def refused_start_up(producer: Service) -> str:
    """The log of `producer`, run until it exits, which it must do at once with code 1."""
    producer.spawn()
    assert producer.popen is not None
    try:
        code = producer.popen.wait(30)
    finally:
        producer.stop(5)
    log = producer.log.read_text()
    assert code == 1, log
    assert "Traceback" not in log
    return log


def broken_creds(creds: Path, flaw: str) -> str:
    """The text of the `.creds` file `creds` with `flaw`."""
    text = creds.read_text()
    jwt_block, seed_block = text.split("\n\n")
    if flaw == "no JWT":
        return seed_block
    if flaw == "no seed":
        return jwt_block + "\n"
    seed = seed_block.splitlines()[1]
    return text.replace(seed, seed[:20])  # too short to hold a key


@pytest.fixture
def operator_server(tmp_path: Path) -> Iterator[tuple[NatsServer, Path]]:
    """An operator-mode nats-server, which asks every client to sign with its `.creds`."""
    limits = {"disk_storage": -1, "consumer": -1}
    config, creds = operator_mode(tmp_path / "auth", limits, users=("app", "renewed"))
    server = NatsServer(tmp_path, config=config)
    server.start()
    try:
        yield server, creds
    finally:
        server.stop()


@pytest.mark.parametrize("flaw", ["no JWT", "no seed", "bad seed"])
def test_a_creds_file_without_a_valid_jwt_and_seed_stops_start_up_clearly(
    tmp_path: Path, operator_server: tuple[NatsServer, Path], flaw: str
) -> None:
    # nats-py reads on past the end of a file with no JWT for ever, deaf to SIGTERM, and
    # fails with a TypeError on one with no valid seed.
    server, creds = operator_server
    broken = tmp_path / "broken.creds"
    broken.write_text(broken_creds(creds, flaw))
    producer = service("producer", tmp_path, server.url, NATS_CREDS_FILE=str(broken))

    log = refused_start_up(producer)

    expected = {
        "no JWT": "no user JWT",
        "no seed": "no user nkey seed",
        "bad seed": "its user nkey seed is not a valid seed",
    }[flaw]
    assert f"NATS_CREDS_FILE '{broken}' is not a NATS credentials file: {expected}" in log
    seed = creds.read_text().split("\n\n")[1].splitlines()[1]
    assert seed[:16] not in log, "the seed is a secret"


def user_jwt(creds: Path | str) -> str:
    """The user JWT in `.creds` file text, or in the file at `creds`."""
    text = creds.read_text() if isinstance(creds, Path) else creds
    return text.splitlines()[1]


async def connect_noting_reconnection(settings: NatsSettings) -> tuple[Client, asyncio.Event]:
    """A connection made as the services make theirs, and an event set once it reconnects."""
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await connect(settings, "test", asyncio.Event(), on_reconnect=on_reconnect)
    assert nc is not None
    return nc, reconnected


async def restart_for_reconnection(server: NatsServer, reconnected: asyncio.Event) -> None:
    """Restart `server` on its port, a second after files changed, until nats-py is back."""
    await asyncio.sleep(1.1)  # the files are looked at once a second at most
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)
    await asyncio.wait_for(reconnected.wait(), 20)


@pytest.mark.parametrize("change", ["renewed", "no JWT"])
async def test_a_creds_file_changed_on_disk_is_used_from_the_next_reconnection(
    tmp_path: Path,
    operator_server: tuple[NatsServer, Path],
    caplog: pytest.LogCaptureFixture,
    change: str,
) -> None:
    # nats-py, reading the file itself at each reconnection, would hang on the one with no JWT.
    server, creds = operator_server
    mounted = tmp_path / "mounted.creds"
    mounted.write_text(creds.read_text())
    settings = NatsSettings(nats_url=(server.url,), nats_creds_file=str(mounted))
    nc, reconnected = await connect_noting_reconnection(settings)
    try:
        assert [c["jwt"] for c in server.monitor("connz?auth=true")["connections"]] == [
            user_jwt(creds)
        ]
        renewed = creds.with_name("renewed.creds").read_text()
        staged = tmp_path / ".staged"
        staged.write_text(renewed if change == "renewed" else broken_creds(creds, "no JWT"))
        os.replace(staged, mounted)
        with caplog.at_level(logging.INFO, logger="streamer_common.natsauth"):
            await restart_for_reconnection(server, reconnected)
        presented = [c["jwt"] for c in server.monitor("connz?auth=true")["connections"]]
    finally:
        await nc.close()

    messages = [record.message for record in caplog.records]
    if change == "renewed":
        assert presented == [user_jwt(renewed)]
        assert "reloaded the NATS credentials file" in messages
    else:
        assert presented == [user_jwt(creds)], "the credentials loaded before are kept"
        warning = "cannot load the changed NATS credentials file; using the one loaded before"
        assert warning in messages


@dataclasses.dataclass(frozen=True)
class MutualTls:
    """A nats-server's own certificate, and the CA its clients' certificates must come from."""

    server: tls.KeyPair
    clients: tls.KeyPair

    @classmethod
    def make(cls, directory: Path) -> MutualTls:
        return cls(tls.self_signed(directory, stem="nats"), tls.authority(directory))

    def config(self) -> str:
        """nats-server configuration that takes TLS clients with a certificate only."""
        return (
            f'tls {{ cert_file: "{self.server.cert}", key_file: "{self.server.key}", '
            f'ca_file: "{self.clients.cert}", verify: true }}\n'
        )


def peer_subjects(server: NatsServer) -> list[str]:
    """The subject of the certificate each client connection presented."""
    connections = server.monitor("connz?auth=true")["connections"]
    return [c["tls_peer_certs"][0]["subject"] for c in connections]


async def test_services_present_a_client_certificate_to_a_nats_server_that_asks(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    mtls = MutualTls.make(tmp_path / "nats-tls")
    client = tls.client_pair(tmp_path / "nats-tls", mtls.clients)
    files = {
        "NATS_TLS_CA_FILE": str(mtls.server.cert),
        "NATS_TLS_CERT_FILE": str(client.cert),
        "NATS_TLS_KEY_FILE": str(client.key),
    }
    stack = make_stack(
        nats_config=mtls.config(),
        edge={f"EDGE_{name}": path for name, path in files.items()},
        producer={f"PRODUCER_{name}": path for name, path in files.items()},
    )

    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))

    result.assert_complete(3)
    subjects = peer_subjects(stack.nats)
    assert len(subjects) >= 3  # the edge's connections and the producers'
    assert set(subjects) == {"CN=client"}


def install(pair: tls.KeyPair, directory: Path) -> None:
    """Put `pair` in `directory` as tls.crt and tls.key, each swapped in whole (as the kubelet
    swaps a Secret's files)."""
    for source, name in ((pair.cert, "tls.crt"), (pair.key, "tls.key")):
        staged = directory / f".{name}"
        staged.write_bytes(source.read_bytes())
        os.replace(staged, directory / name)


@pytest.mark.parametrize("renewal", ["renewed", "a key of another certificate"])
async def test_a_client_certificate_changed_on_disk_is_presented_from_the_next_reconnection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, renewal: str
) -> None:
    mtls = MutualTls.make(tmp_path / "nats-tls")
    live = tmp_path / "mounted"
    live.mkdir()
    install(tls.client_pair(tmp_path / "first", mtls.clients, stem="first"), live)
    server = NatsServer(tmp_path, config=mtls.config())
    await asyncio.to_thread(server.start)
    settings = NatsSettings(
        nats_url=(server.url,),
        nats_tls_ca_file=str(mtls.server.cert),
        nats_tls_cert_file=str(live / "tls.crt"),
        nats_tls_key_file=str(live / "tls.key"),
    )
    nc, reconnected = await connect_noting_reconnection(settings)
    try:
        assert peer_subjects(server) == ["CN=first"]
        renewed = tls.client_pair(tmp_path / "renewed", mtls.clients, stem="renewed")
        if renewal == "renewed":
            install(renewed, live)
        else:
            other = tls.client_pair(tmp_path / "other", mtls.clients, stem="other")
            install(tls.KeyPair(cert=renewed.cert, key=other.key), live)
        with caplog.at_level(logging.INFO, logger="streamer_common.natsauth"):
            await restart_for_reconnection(server, reconnected)
        subjects = peer_subjects(server)
    finally:
        await nc.close()
        await asyncio.to_thread(server.stop)

    messages = [record.message for record in caplog.records]
    if renewal == "renewed":
        assert subjects == ["CN=renewed"]
        assert "reloaded the NATS TLS files" in messages
    else:
        assert subjects == ["CN=first"], "the files loaded before are kept"
        assert "cannot load the changed NATS TLS files; using the ones loaded before" in messages


@pytest.mark.parametrize("flaw", ["a CA that is no certificate", "a key of another", "no key"])
def test_nats_tls_files_that_do_not_load_stop_start_up_clearly(tmp_path: Path, flaw: str) -> None:
    mtls = MutualTls.make(tmp_path / "nats-tls")
    client = tls.client_pair(tmp_path / "client", mtls.clients)
    other = tls.client_pair(tmp_path / "other", mtls.clients)
    files = {
        "NATS_TLS_CA_FILE": str(mtls.server.cert),
        "NATS_TLS_CERT_FILE": str(client.cert),
        "NATS_TLS_KEY_FILE": str(client.key),
    }
    if flaw == "a CA that is no certificate":
        files["NATS_TLS_CA_FILE"] = str(client.key)
        expected = "NATS_TLS_CA_FILE holds no CA certificate"
    elif flaw == "a key of another":
        files["NATS_TLS_KEY_FILE"] = str(other.key)
        expected = "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE are not a certificate and its key"
    else:
        del files["NATS_TLS_KEY_FILE"]
        expected = "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together"
    producer = service("producer", tmp_path, "nats://127.0.0.1:4222", **files)

    assert expected in refused_start_up(producer)


async def test_services_stopped_while_nats_is_down_close_and_exit_cleanly(
    make_stack: StackFactory,
) -> None:
    # nats-py's drain raises once NATS is gone: both services exited 1 with a traceback.
    stack = make_stack(producers=1)
    assert stack.edge is not None
    services = [stack.edge, *stack.producers]
    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=2))
    result.assert_complete(2)

    stack.nats.kill()
    for service in services:
        await wait_until(lambda s=service: bool(log_events(s, "NATS connection error")), 10)
    codes = []
    for service in services:
        service.signal(signal.SIGTERM)
        assert service.popen is not None
        codes.append(await asyncio.to_thread(service.popen.wait, 30))

    assert codes == [0, 0]
    for service in services:
        assert log_events(service, "cannot drain the NATS connection; closing it")
        assert "Traceback" not in service.log.read_text()


@pytest.mark.parametrize("asks_for_tls", ["a tls:// URL", "a CA file"])
async def test_a_service_that_asks_for_tls_logs_in_to_no_server_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, asks_for_tls: str
) -> None:
    # nats-py upgrades only when the server asks, so it sent this password in plaintext.
    server = NatsServer(tmp_path, config=PASSWORDS)
    await asyncio.to_thread(server.start)
    if asks_for_tls == "a tls:// URL":
        url, ca = server.url.replace("nats://", "tls://"), ""
    else:
        url, ca = server.url, str(tls.self_signed(tmp_path / "tls", stem="nats").cert)
    settings = NatsSettings(
        nats_url=(url,), nats_user="app", nats_password="s3cret", nats_tls_ca_file=ca
    )
    stop = asyncio.Event()
    try:
        with caplog.at_level(logging.WARNING, logger="streamer_common.natsio"):
            connecting = asyncio.ensure_future(connect(settings, "test", stop))
            await wait_until(lambda: len(caplog.records) > 0, 10)
            await asyncio.sleep(1)  # two more attempts
            logged_in = [
                c
                for c in server.monitor("connz?auth=true")["connections"]
                if "authorized_user" in c
            ]
            stop.set()
            assert await asyncio.wait_for(connecting, 10) is None
    finally:
        await asyncio.to_thread(server.stop)

    assert logged_in == []
    assert caplog.records[0].message == "NATS connection error"
    assert "SSL" in caplog.records[0].error  # type: ignore[attr-defined]
