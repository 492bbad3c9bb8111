"""Process lifecycle: a shutdown event set by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from opentelemetry.trace import Tracer

from streamer_common.logs import setup_logging
from streamer_common.settings import NatsSettings, SettingsError, check_nats_files
from streamer_common.topology import TopologyError
from streamer_common.tracing import TracingError, setup_tracing, tracer_of

logger = logging.getLogger(__name__)

S = TypeVar("S")


def shutdown_event() -> asyncio.Event:
    """An event set on the first SIGTERM or SIGINT; the caller drains and exits."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        logger.info("received %s, shutting down", signum.name)
        event.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return event


def run_service(
    name: str,
    load_settings: Callable[[], S],
    serve: Callable[[S, Tracer], Coroutine[Any, Any, None]],
    prepare: Callable[[S], None] | None = None,
) -> None:
    """A service's `main()`: settings, tracing, logging, then `serve` until it returns.

    Bad settings and a JetStream topology that does not match exit with a message
    naming the problem; the tracer provider is flushed on the way out.
    """
    try:
        settings = load_settings()
        if isinstance(settings, NatsSettings):
            check_nats_files(settings)
        provider = setup_tracing(name)
    except (SettingsError, TracingError) as error:
        sys.exit(f"{name}: invalid settings: {error}")
    setup_logging(settings.log_level, settings.log_format)  # type: ignore[attr-defined]
    if prepare is not None:
        try:
            prepare(settings)
        except SettingsError as error:
            sys.exit(f"{name}: invalid settings: {error}")
    try:
        asyncio.run(serve(settings, tracer_of(provider, name.replace("-", "_"))))
    except TopologyError as error:
        sys.exit(f"{name}: {error}")
    finally:
        if provider is not None:
            provider.shutdown()
