"""Process lifecycle: a shutdown event set by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

logger = logging.getLogger(__name__)


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
