"""JetStream streams are created idempotently and a mismatch stops start-up clearly."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import grpc
import nats
import pytest
from nats.js.api import ConsumerConfig

from conftest import StackFactory
from natsjwt import operator_mode
from streamer_devstack.processes import NatsServer, Service, StartError
from streamer_devstack.stack import Stack, producer_env
from support import calls_until_served, collect, log_events, new_id, request, wait_until


def test_second_producer_with_same_settings_starts(make_stack: StackFactory) -> None:
    stack = make_stack(producers=1)

    assert stack.add_producer().alive()


def test_producer_with_different_retention_refuses_to_start(make_stack: StackFactory) -> None:
    stack = make_stack(producers=1)

    with pytest.raises(StartError) as error:
        stack.add_producer(PRODUCER_RETENTION="2h")

    assert "STREAMER_DATA exists with a different definition" in str(error.value)
    assert "max_age=3600" in str(error.value)


def test_producer_with_different_ack_wait_refuses_to_start(make_stack: StackFactory) -> None:
    stack = make_stack(producers=1)

    with pytest.raises(StartError) as error:
        stack.add_producer(PRODUCER_ACK_WAIT="99s")

    assert "jobs consumer exists with another definition" in str(error.value)


async def data_stream_limit(stack: Stack, creds: Path | None = None) -> int:
    """The data stream's max_consumers as nats-server reports it."""
    options = {"user_credentials": str(creds)} if creds else {}
    async with await nats.connect(stack.nats.url, **options) as nc:
        info = await nc.jetstream().stream_info("STREAMER_DATA")
    return info.config.max_consumers or -1


async def test_the_data_stream_takes_more_consumers_than_nats_servers_default(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=1)
    async with await nats.connect(stack.nats.url) as nc:
        js = nc.jetstream()
        # nats-server 2.15 caps a stream that sets no limit at 1000 consumers.
        for index in range(1001):
            config = ConsumerConfig(filter_subject=f"stream.s{index}", inactive_threshold=60.0)
            await js.add_consumer("STREAMER_DATA", config)

    assert await data_stream_limit(stack) == 10000


async def test_a_lower_consumer_limit_is_raised_and_never_lowered(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=1)
    async with await nats.connect(stack.nats.url) as nc:
        js = nc.jetstream()
        info = await js.stream_info("STREAMER_DATA")
        await js.update_stream(dataclasses.replace(info.config, max_consumers=500))

    stack.add_producer()
    raised = await data_stream_limit(stack)
    stack.add_producer(PRODUCER_DATA_MAX_CONSUMERS="100")

    assert raised == 10000
    assert await data_stream_limit(stack) == 10000


async def test_a_consumer_limit_lowered_while_the_edge_runs_is_raised_at_the_first_refusal(
    make_stack: StackFactory,
) -> None:
    # As a service configured with a lower DATA_MAX_CONSUMERS, starting beside this one,
    # can leave it: JetStream has no compare-and-set for stream updates.
    stack = make_stack(producers=1)
    assert stack.edge is not None
    async with await nats.connect(stack.nats.url) as nc:
        js = nc.jetstream()
        info = await js.stream_info("STREAMER_DATA")
        await js.update_stream(dataclasses.replace(info.config, max_consumers=1))
        await js.add_consumer(
            "STREAMER_DATA", ConsumerConfig(filter_subject="stream.other", inactive_threshold=60.0)
        )

    refused = await collect(stack.target, stack.tls.cert, request(new_id()))
    served = await calls_until_served(stack, 10, also=grpc.StatusCode.RESOURCE_EXHAUSTED)

    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "STREAMER_DATA is at its limit of consumers" in refused.details
    assert len(served) <= 1, served  # a call made before the limit was raised again
    assert await data_stream_limit(stack) == 10000
    (raised,) = log_events(stack.edge, "raised the stream's consumer limit")
    assert '"from": 1' in raised
    assert '"to": 10000' in raised


# Every client lands in an account whose JetStream allows 600 consumers in all.
ACCOUNT_OF_600_CONSUMERS = """
no_auth_user: app
accounts {
  APP {
    jetstream { max_consumers: 600, max_file: 1G, max_mem: 256M }
    users [ { user: app, password: app } ]
  }
}
"""

CAPPED = "the NATS account allows fewer consumers than DATA_MAX_CONSUMERS; the data stream "


async def test_an_account_allowing_fewer_consumers_caps_the_data_streams_limit(
    make_stack: StackFactory,
) -> None:
    # nats-server refuses a stream limit of 10000 in this account: without the cap, neither
    # service would start ("maximum consumers limit reached").
    stack = make_stack(producers=1, nats_config=ACCOUNT_OF_600_CONSUMERS)
    assert stack.edge is not None

    assert await data_stream_limit(stack) == 600
    for service in (stack.producers[0], stack.edge):
        (warning,) = log_events(service, CAPPED + "takes the account's limit")
        assert '"configured": 10000' in warning
        assert '"account_limit": 600' in warning
    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))
    result.assert_complete(3)


async def test_a_creds_file_account_with_consumer_limits_per_replica_count_caps_the_limit(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # An operator-mode server, as managed NATS services run: the account is a JWT whose
    # JetStream limits are per replica count (here only R1, which the streams use).
    r1 = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": 600}
    config, creds = operator_mode(tmp_path / "auth", {"tiered_limits": {"R1": r1}})
    stack = make_stack(
        nats_config=config,
        edge={"EDGE_NATS_CREDS_FILE": str(creds)},
        producer={"PRODUCER_NATS_CREDS_FILE": str(creds)},
    )
    assert stack.edge is not None

    assert await data_stream_limit(stack, creds) == 600
    for service in (stack.producers[0], stack.edge):
        (warning,) = log_events(service, CAPPED + "takes the account's limit")
        assert '"account_limit": 600' in warning
    result = await collect(stack.target, stack.tls.cert, request(new_id(), count=3))
    result.assert_complete(3)


# Services connect as `app`, which may not update streams; `admin` may do anything.
STREAM_UPDATES_DENIED = """
no_auth_user: app
accounts {
  APP {
    jetstream: enabled
    users [
      { user: app, password: app,
        permissions: { publish: { deny: ["$JS.API.STREAM.UPDATE.>"] } } }
      { user: admin, password: admin }
    ]
  }
}
"""


async def test_a_refused_limit_update_is_logged_and_the_service_starts(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(producers=1, nats_config=STREAM_UPDATES_DENIED)
    admin = stack.nats.url.replace("nats://", "nats://admin:admin@")
    async with await nats.connect(admin) as nc:
        js = nc.jetstream()
        info = await js.stream_info("STREAMER_DATA")
        await js.update_stream(dataclasses.replace(info.config, max_consumers=500))

    producer = stack.add_producer()

    assert producer.alive()
    assert await data_stream_limit(stack) == 500
    (refused,) = log_events(producer, "cannot change the stream's consumer limit")
    assert '"level": "WARNING"' in refused
    assert '"limit": 500' in refused
    assert '"configured": 10000' in refused


def test_a_server_taking_smaller_messages_than_configured_stops_start_up_clearly(
    make_stack: StackFactory,
) -> None:
    with pytest.raises(StartError) as error:
        make_stack(nats_config="max_payload: 65536\n")

    assert (
        "MAX_MESSAGE_BYTES (1048576) is above the NATS server's max_payload (65536): lower it, "
        "or raise max_payload in the server's configuration"
    ) in str(error.value)


# Every client lands in an account that has no JetStream, on a server that has.
ACCOUNT_WITHOUT_JETSTREAM = """
no_auth_user: app
accounts {
  APP { users [ { user: app, password: app } ] }
}
"""


def test_an_account_without_jetstream_stops_start_up_clearly(make_stack: StackFactory) -> None:
    with pytest.raises(StartError) as error:
        make_stack(nats_config=ACCOUNT_WITHOUT_JETSTREAM)

    assert (
        "JetStream is not available to this NATS account (JetStream not enabled for account): "
        "enable JetStream on the server (nats-server -js, or a jetstream block) and for the "
        "account"
    ) in str(error.value)
    assert "Traceback" not in str(error.value)


def test_a_server_without_jetstream_stops_start_up_clearly(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, jetstream=False)
    server.start()
    producer = Service(
        "producer", "streamer_producer", tmp_path / "producer.log", producer_env(server.url)
    )
    try:
        with pytest.raises(StartError) as error:
            producer.start()
    finally:
        producer.stop()
        server.stop()

    assert (
        "streamer-producer: JetStream is not available to this NATS account (nothing answers "
        "on $JS.API): enable JetStream on the server"
    ) in str(error.value)


def recreated(stack: Stack) -> list[str]:
    """Every "created them again" log line of the edge and the producers."""
    assert stack.edge is not None
    message = "JetStream streams were missing, created them again: their data is gone"
    return [line for p in (stack.edge, *stack.producers) for line in log_events(p, message)]


@pytest.mark.parametrize("stream", ["STREAMER_DATA", "STREAMER_JOBS"])
async def test_a_stream_removed_while_the_services_run_is_created_again(
    make_stack: StackFactory, stream: str
) -> None:
    stack = make_stack()
    assert await calls_until_served(stack, 10) == []
    async with await nats.connect(stack.nats.url) as nc:
        await nc.jetstream().delete_stream(stream)  # `nats stream rm`, say

    failures = await calls_until_served(stack, 10)

    # A call that meets the missing stream says so; the ones after it are served.
    assert all("a JetStream stream is missing" in details for details in failures), failures
    assert len(failures) <= 1, failures
    assert stream in " ".join(recreated(stack))


async def test_a_nats_server_restarted_without_its_store_gets_the_streams_back(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    assert await calls_until_served(stack, 10) == []
    await asyncio.to_thread(stack.nats.stop)
    shutil.rmtree(stack.nats.store)  # a lost volume
    await asyncio.to_thread(stack.nats.start)

    await calls_until_served(stack, 20)

    lines = " ".join(recreated(stack))
    assert "STREAMER_DATA" in lines
    assert "consumer producers" in lines


async def test_a_stream_put_back_with_another_definition_is_reported_and_calls_go_on(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    assert stack.edge is not None
    async with await nats.connect(stack.nats.url) as nc:
        js = nc.jetstream()
        info = await js.stream_info("STREAMER_DATA")
        await js.delete_stream("STREAMER_DATA")
        await js.add_stream(dataclasses.replace(info.config, max_age=7200.0))
    # The services check their streams again after a reconnect.
    await asyncio.to_thread(stack.nats.stop)
    await asyncio.to_thread(stack.nats.start)

    failures = await calls_until_served(stack, 20)

    assert all("no connection to NATS" in details for details in failures), failures

    services = [stack.edge, *stack.producers]

    def refused() -> list[list[str]]:
        return [
            log_events(service, "cannot put the JetStream streams back") for service in services
        ]

    await wait_until(lambda: all(refused()), timeout=10)
    for lines, service in zip(refused(), services, strict=True):
        assert len(lines) == 1, lines
        assert '"level": "ERROR"' in lines[0]
        assert "STREAMER_DATA exists with a different definition: max_age=7200" in lines[0]
        assert service.alive()
    assert recreated(stack) == []
