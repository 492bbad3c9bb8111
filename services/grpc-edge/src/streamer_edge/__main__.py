"""Entry point of the grpc-edge: `python -m streamer_edge` or `streamer-edge`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from opentelemetry import trace

from streamer_common.httpserve import OpsServer
from streamer_common.lifecycle import run_service, shutdown_event
from streamer_common.metrics import EdgeMetrics, QueueMetrics, new_registry
from streamer_common.natsio import connect, drain
from streamer_common.topology import Topology, TopologyKeeper, ensure_topology
from streamer_edge.interest import Interest
from streamer_edge.memory import check_memory_limit
from streamer_edge.observe import ServerTelemetry
from streamer_edge.readers import ReaderPool
from streamer_edge.server import SERVICE_NAME, build_probe_server, build_server
from streamer_edge.servicer import StreamerServicer
from streamer_edge.settings import EdgeSettings, load_settings
from streamer_edge.turns import TurnBudget

logger = logging.getLogger("streamer_edge")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def set_health(health: HealthServicer, status: int) -> None:
    """Set the overall status and the Streamer service's status together."""
    for service in ("", SERVICE_NAME):
        await health.set(service, status)


async def serve(settings: EdgeSettings, tracer: trace.Tracer) -> None:
    """Run the edge until SIGTERM or SIGINT, then drain within the grace period."""
    stop = shutdown_event()
    health = HealthServicer()
    await set_health(health, NOT_SERVING)
    keeper: TopologyKeeper | None = None
    async with contextlib.AsyncExitStack() as stack:

        async def on_disconnect() -> None:
            await set_health(health, NOT_SERVING)

        async def on_reconnect() -> None:
            await set_health(health, SERVING)
            if keeper is not None:  # a server restarted without its store has no streams
                keeper.recheck()

        nc = await connect(settings, "streamer-edge", stop, on_disconnect, on_reconnect)
        if nc is None:
            return
        stack.push_async_callback(nc.close)
        topology = Topology.from_settings(settings)
        await ensure_topology(nc, topology)
        registry = new_registry()
        metrics = EdgeMetrics(registry, settings.max_streams)
        recreated = metrics.jetstream_recreated
        for name in (settings.data_stream, settings.jobs_stream):
            recreated.labels(name)  # at zero from the start, so an increase shows
        keeper = TopologyKeeper(
            lambda: ensure_topology(nc, topology), lambda name: recreated.labels(name).inc()
        )
        stack.callback(keeper.close)
        stack.callback(asyncio.create_task(metrics.loop_lag.watch()).cancel)
        queue = QueueMetrics(registry, nc, settings.jobs_stream)
        readers = ReaderPool(
            lambda: connect(settings, "streamer-edge-reader", stop),
            settings.readers_per_connection,
            settings.nats_outage_timeout,
        )
        stack.push_async_callback(readers.close)
        turns = TurnBudget(on_hold=metrics.relay_steps_held.inc)
        interest = Interest(nc, settings.interest_interval)
        stack.callback(asyncio.create_task(interest.announce()).cancel)
        servicer = StreamerServicer(nc, settings, interest, metrics, tracer, readers, turns, keeper)
        server, port = build_server(
            settings, servicer, health, ServerTelemetry(metrics.grpc, tracer)
        )
        await server.start()
        stack.push_async_callback(server.stop, 1)
        ports = {"port": port}
        if settings.health_address:
            probe, ports["health_port"] = build_probe_server(settings.health_address, health)
            await probe.start()
            stack.push_async_callback(probe.stop, 0)
        if settings.metrics_address:
            ops = OpsServer(registry, lambda: nc.is_connected, queue.refresh)
            ports["metrics_port"] = await ops.start(settings.metrics_address)
            stack.push_async_callback(ops.stop)
        await set_health(health, SERVING)
        logger.info("edge ready", extra=ports)
        await stop.wait()
        await shutdown(settings, servicer, health)
        await drain(nc)


async def shutdown(
    settings: EdgeSettings, servicer: StreamerServicer, health: HealthServicer
) -> None:
    """Refuse new calls, let in-flight ones finish within the grace, then end them UNAVAILABLE."""
    await health.enter_graceful_shutdown()
    servicer.drain()
    await servicer.wait_idle(settings.shutdown_grace)
    logger.info("edge stopping", extra={"unfinished_streams": servicer.active})
    servicer.close()
    await servicer.wait_idle(2)


def main() -> None:
    """Read settings, set up logging and tracing, serve until told to stop."""
    run_service("streamer-edge", load_settings, serve, prepare=check_memory_limit)


if __name__ == "__main__":
    main()
