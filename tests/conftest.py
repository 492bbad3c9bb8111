"""Fixtures: real nats-server, producers and edge processes, dev TLS, per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamer_devstack.stack import Stack
from support import TEST_PYTHONPATH

FAST_EDGE = {
    "EDGE_FIRST_CHUNK_TIMEOUT": "10s",
    "EDGE_STALL_TIMEOUT": "10s",
    "EDGE_NATS_OUTAGE_TIMEOUT": "15s",
    "EDGE_SHUTDOWN_GRACE": "3s",
    "EDGE_LOG_LEVEL": "INFO",
}
FAST_PRODUCER = {
    "PRODUCER_RETRY_BACKOFF": "100ms,200ms",
    "PRODUCER_SHUTDOWN_GRACE": "3s",
    "PRODUCER_HANDLER_MODULES": "streamer_test_handlers",
    "PYTHONPATH": TEST_PYTHONPATH,
}

StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Start a whole stack (nats-server, producers, edge) with settings overrides."""
    stacks: list[Stack] = []

    def make(
        producers: int = 1,
        edge: dict[str, str] | None = None,
        producer: dict[str, str] | None = None,
        nats_config: str = "",
    ) -> Stack:
        stack = Stack(
            tmp_path / f"stack{len(stacks)}",
            producers=producers,
            edge={**FAST_EDGE, **(edge or {})},
            producer={**FAST_PRODUCER, **(producer or {})},
            nats_config=nats_config,
        )
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    """The default stack: one producer, one edge."""
    return make_stack()


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One default stack for a module whose tests neither stop nor reconfigure it."""
    stack = Stack(
        tmp_path_factory.mktemp("shared"), producers=1, edge=FAST_EDGE, producer=FAST_PRODUCER
    )
    with stack.running():
        yield stack
