"""Entry point of the producer: `python -m streamer_producer` or `streamer-producer`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from streamer_common.httpserve import OpsServer
from streamer_common.lifecycle import shutdown_event
from streamer_common.logs import setup_logging
from streamer_common.natsio import connect
from streamer_common.settings import SettingsError
from streamer_common.topology import JOBS_CONSUMER, Topology, TopologyError, ensure_topology
from streamer_producer.handlers import load_handlers, registry
from streamer_producer.settings import ProducerSettings, load_settings
from streamer_producer.worker import Worker, jobs_consumer_config

logger = logging.getLogger("streamer_producer")


async def serve(settings: ProducerSettings) -> None:
    """Run jobs until SIGTERM or SIGINT, then finish or release them within the grace."""
    stop = shutdown_event()
    async with contextlib.AsyncExitStack() as stack:
        nc = await connect(settings, "streamer-producer", stop)
        if nc is None:
            return
        stack.push_async_callback(nc.close)
        js = nc.jetstream()
        await ensure_topology(js, Topology.from_settings(settings))
        await ensure_jobs_consumer(js, settings)
        ports = {}
        if settings.metrics_address:
            ops = OpsServer(CollectorRegistry(), lambda: nc.is_connected and not stop.is_set())
            ports["metrics_port"] = await ops.start(settings.metrics_address)
            stack.push_async_callback(ops.stop)
        logger.info("producer ready", extra={**ports, "handlers": registry.names})
        await Worker(nc, settings, registry).run(stop)
        await nc.drain()


async def ensure_jobs_consumer(js: JetStreamContext, settings: ProducerSettings) -> None:
    """Create the shared jobs consumer, or check that the existing one matches our settings."""
    wanted = jobs_consumer_config(settings)
    try:
        existing = (await js.consumer_info(settings.jobs_stream, JOBS_CONSUMER)).config
    except NotFoundError:
        await js.add_consumer(settings.jobs_stream, wanted)
        return
    if existing.filter_subject != wanted.filter_subject or abs(
        (existing.ack_wait or 0) - (wanted.ack_wait or 0)
    ) > 0.001:
        raise TopologyError(
            f"the jobs consumer exists with another definition (ack_wait={existing.ack_wait}s, "
            f"configured {wanted.ack_wait}s); give every producer the same ACK_WAIT, or "
            "delete the consumer"
        )


def main() -> None:
    """Read settings, load handlers, set up logging, work until told to stop."""
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.exit(f"streamer-producer: invalid settings: {error}")
    setup_logging(settings.log_level, settings.log_format)
    load_handlers(settings.handler_modules)
    try:
        asyncio.run(serve(settings))
    except TopologyError as error:
        sys.exit(f"streamer-producer: {error}")


if __name__ == "__main__":
    main()
