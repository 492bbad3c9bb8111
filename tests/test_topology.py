"""JetStream streams are created idempotently and a mismatch stops start-up clearly."""

from __future__ import annotations

import pytest

from conftest import StackFactory
from streamer_devstack.processes import StartError


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
