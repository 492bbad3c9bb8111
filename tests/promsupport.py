"""Helpers for the observability tests: scraping /metrics, and Prometheus binaries."""

from __future__ import annotations

import asyncio
import os
import shutil
import urllib.request
from collections.abc import Mapping

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer_common import frames
from streamer_common.topology import data_subject
from streamer_devstack.processes import Service
from streamer_devstack.stack import Stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(service: Service) -> Samples:
    """Every sample on the service's /metrics, keyed by name and labels."""
    port = service.ready["metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much one series moved between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def handled(samples: Samples, **labels: str) -> float:
    """Calls of one method counted as handled, whatever their code."""
    return sum(
        count
        for (name, found), count in samples.items()
        if name == "grpc_server_handled_total" and set(labels.items()) <= found
    )


async def settled(service: Service, before: Samples, calls: int, **labels: str) -> Samples:
    """A scrape once `calls` more calls of a method are counted as handled.

    grpc.aio sends an aborted call's status before its handler returns, so a client can see
    the status a moment before the edge has counted the call.
    """
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        samples = scrape(service)
        if handled(samples, **labels) - handled(before, **labels) >= calls:
            return samples
        assert asyncio.get_running_loop().time() < deadline, "calls not counted within 5s"
        await asyncio.sleep(0.05)


def tool(name: str) -> str:
    """Path of a Prometheus binary; skips the test without it, unless CI is set (then fails)."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} not found: run deploy/tools/install-prometheus.sh (Debian's prometheus)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI must have it")
    pytest.skip(message)


def grpc_labels(
    method: str, service: str = "stream.Streamer", grpc_type: str = "server_stream"
) -> Mapping[str, str]:
    """The go-grpc-middleware label set of one method."""
    return {"grpc_type": grpc_type, "grpc_service": service, "grpc_method": method}


async def publish_gap(stack: Stack, stream_id: str) -> None:
    """Write sequences 1 and 3 of a stream straight to NATS, as a broken producer would."""
    nc = await nats.connect(stack.nats.url)
    for sequence in (1, 3):
        await nc.jetstream().publish(
            data_subject(stream_id),
            b"x",
            headers=frames.data_headers("broken-writer", sequence, [1], frames.Position()),
        )
    await nc.close()
