"""JetStream streams are created idempotently and a mismatch stops start-up clearly."""

from __future__ import annotations

import dataclasses

import nats
import pytest
from nats.js.api import ConsumerConfig

from conftest import StackFactory
from streamer_devstack.processes import StartError
from streamer_devstack.stack import Stack


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


async def data_stream_limit(stack: Stack) -> int:
    """The data stream's max_consumers as nats-server reports it."""
    async with await nats.connect(stack.nats.url) as nc:
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
