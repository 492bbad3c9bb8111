"""Entry point of the producer: `python -m streamer_producer` or `streamer-producer`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry import trace

from streamer_common.httpserve import OpsServer
from streamer_common.lifecycle import run_service, shutdown_event
from streamer_common.metrics import ProducerMetrics, QueueMetrics, new_registry
from streamer_common.natsio import connect, drain
from streamer_common.topology import (
    JOBS_CONSUMER,
    Topology,
    TopologyError,
    TopologyKeeper,
    ensure_topology,
)
from streamer_producer.handlers import load_handlers, registry
from streamer_producer.interest import ReaderWatch
from streamer_producer.observe import JobTelemetry
from streamer_producer.settings import ProducerSettings, load_settings
from streamer_producer.worker import Outcome, Worker, jobs_consumer_config

logger = logging.getLogger("streamer_producer")


async def serve(settings: ProducerSettings, tracer: trace.Tracer) -> None:
    """Run jobs until SIGTERM or SIGINT, then finish or release them within the grace."""
    stop = shutdown_event()
    keeper: TopologyKeeper | None = None
    async with contextlib.AsyncExitStack() as stack:

        async def on_reconnect() -> None:
            if keeper is not None:  # a server restarted without its store has no streams
                keeper.recheck()

        nc = await connect(settings, "streamer-producer", stop, on_reconnect=on_reconnect)
        if nc is None:
            return
        stack.push_async_callback(nc.close)
        js = nc.jetstream()
        topology = Topology.from_settings(settings)
        consumer = f"{settings.jobs_stream} consumer {JOBS_CONSUMER}"

        async def ensure() -> list[str]:
            created = await ensure_topology(nc, topology)
            if await ensure_jobs_consumer(js, settings):
                created.append(consumer)
            return created

        await ensure()
        collectors = new_registry()
        metrics = ProducerMetrics(collectors, settings.concurrency)
        recreated = metrics.jetstream_recreated
        for name in (settings.data_stream, settings.jobs_stream, consumer):
            recreated.labels(name)  # at zero from the start, so an increase shows
        keeper = TopologyKeeper(ensure, lambda name: recreated.labels(name).inc())
        stack.callback(keeper.close)
        stack.callback(asyncio.create_task(metrics.loop_lag.watch()).cancel)
        metrics.initialize(registry.names, [outcome.value for outcome in Outcome])
        queue = QueueMetrics(collectors, nc, settings.jobs_stream)
        ports = {}
        if settings.metrics_address:
            ops = OpsServer(
                collectors, lambda: nc.is_connected and not stop.is_set(), queue.refresh
            )
            ports["metrics_port"] = await ops.start(settings.metrics_address)
            stack.push_async_callback(ops.stop)
        logger.info("producer ready", extra={**ports, "handlers": registry.names})
        readers = ReaderWatch(nc, settings.interest_interval)
        metrics.edges_heard.set_function(lambda: readers.edges)
        telemetry = JobTelemetry(metrics, tracer, registry)
        await Worker(nc, settings, registry, telemetry, readers, keeper).run(stop)
        await drain(nc)


async def ensure_jobs_consumer(js: JetStreamContext, settings: ProducerSettings) -> bool:
    """Create the shared jobs consumer (True), or check that the existing one matches ours."""
    wanted = jobs_consumer_config(settings)
    try:
        existing = (await js.consumer_info(settings.jobs_stream, JOBS_CONSUMER)).config
    except NotFoundError:
        await js.add_consumer(settings.jobs_stream, wanted)
        return True
    if (
        existing.filter_subject != wanted.filter_subject
        or abs((existing.ack_wait or 0) - (wanted.ack_wait or 0)) > 0.001
    ):
        raise TopologyError(
            f"the jobs consumer exists with another definition (ack_wait={existing.ack_wait}s, "
            f"configured {wanted.ack_wait}s); give every producer the same ACK_WAIT, or "
            "delete the consumer"
        )
    return False


def main() -> None:
    """Read settings, load handlers, set up logging and tracing, work until told to stop."""
    run_service(
        "streamer-producer",
        load_settings,
        serve,
        lambda settings: load_handlers(settings.handler_modules),
    )


if __name__ == "__main__":
    main()
