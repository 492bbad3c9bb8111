"""The edge picks up a renewed certificate without a restart, and survives a bad one."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import grpc

from conftest import StackFactory
from streamer_common.proto import stream_pb2_grpc
from streamer_devstack import tls
from streamer_devstack.stack import Stack
from support import collect, log_events, new_id, request, wait_until


def renew(live: tls.KeyPair, source: tls.KeyPair) -> None:
    """Put `source` in place of `live`, each file replaced whole, as a renewal does."""
    for name, path in (("key", source.key), ("cert", source.cert)):
        staged = live.cert.with_suffix(f".{name}.new")
        shutil.copy(path, staged)
        os.replace(staged, live.key if name == "key" else live.cert)


async def serves(stack: Stack, ca: Path) -> grpc.StatusCode:
    """The status of a short call trusting `ca` alone."""
    result = await collect(stack.target, ca, request(new_id(), count=1), timeout=5)
    return result.code


def started_with_own_files(make_stack: StackFactory, workdir: Path) -> tuple[Stack, tls.KeyPair]:
    """A stack whose edge reads a certificate and key that the test may replace."""
    live = tls.KeyPair(workdir / "live.crt", workdir / "live.key")
    first = tls.self_signed(workdir / "first")
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    edge = {"EDGE_TLS_CERT_FILE": str(live.cert), "EDGE_TLS_KEY_FILE": str(live.key)}
    return make_stack(edge=edge), live


async def test_a_renewed_certificate_serves_new_connections_without_a_restart(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack, live = started_with_own_files(make_stack, tmp_path)
    old = tls.KeyPair(tmp_path / "old.crt", tmp_path / "old.key")
    shutil.copy(live.cert, old.cert)
    renewed = tls.self_signed(tmp_path / "renewed")
    assert await serves(stack, old.cert) == grpc.StatusCode.OK

    renew(live, renewed)

    async def renewed_serves() -> bool:
        return await serves(stack, renewed.cert) == grpc.StatusCode.OK

    waited = 0.0
    while not await renewed_serves():
        waited += 0.2
        assert waited < 5, "the renewed certificate was not picked up"
        await asyncio.sleep(0.2)
    assert await serves(stack, old.cert) == grpc.StatusCode.UNAVAILABLE
    assert stack.edge is not None
    assert log_events(stack.edge, "reloaded the TLS certificate")


async def test_a_key_that_does_not_match_is_logged_and_the_old_pair_kept(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack, live = started_with_own_files(make_stack, tmp_path)
    assert stack.edge is not None
    edge = stack.edge
    old_cert = tmp_path / "old.crt"
    shutil.copy(live.cert, old_cert)
    other = tls.self_signed(tmp_path / "other")

    shutil.copy(other.key, live.key)  # a key without its certificate
    await asyncio.sleep(1.1)  # past the once-a-second look at the files
    assert await serves(stack, old_cert) == grpc.StatusCode.OK
    await wait_until(
        lambda: bool(
            log_events(edge, "cannot load the changed TLS files; serving the ones loaded before")
        ),
        5,
    )
    assert await serves(stack, old_cert) == grpc.StatusCode.OK
    assert not log_events(edge, "reloaded the TLS certificate")


async def mtls_status(stack: Stack, client: tls.KeyPair) -> grpc.StatusCode:
    """The status of a short call presenting `client`'s certificate."""
    credentials = grpc.ssl_channel_credentials(
        stack.tls.cert.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )
    async with grpc.aio.secure_channel(stack.target, credentials) as chan:
        call = stream_pb2_grpc.StreamerStub(chan).Stream(request(new_id(), count=1), timeout=5)
        try:
            [data.sequence async for data in call]
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK


async def test_a_changed_client_ca_is_picked_up_for_new_connections(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    first_ca = tls.self_signed(tmp_path / "first-ca")
    second_ca = tls.self_signed(tmp_path / "second-ca")
    client_ca = tmp_path / "client-ca.crt"
    shutil.copy(first_ca.cert, client_ca)
    stack = make_stack(edge={"EDGE_TLS_CLIENT_CA_FILE": str(client_ca)})
    first_client = tls.client_pair(tmp_path / "first-client", first_ca)
    second_client = tls.client_pair(tmp_path / "second-client", second_ca)
    assert await mtls_status(stack, first_client) == grpc.StatusCode.OK

    staged = tmp_path / "client-ca.new"
    shutil.copy(second_ca.cert, staged)
    os.replace(staged, client_ca)

    waited = 0.0
    while await mtls_status(stack, second_client) != grpc.StatusCode.OK:
        waited += 0.2
        assert waited < 5, "the new client CA was not picked up"
        await asyncio.sleep(0.2)
    assert await mtls_status(stack, first_client) == grpc.StatusCode.UNAVAILABLE
