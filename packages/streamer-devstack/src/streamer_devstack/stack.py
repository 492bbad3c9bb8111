"""The whole local stack: one nats-server, producers and an edge, wired together."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from streamer_devstack import tls
from streamer_devstack.processes import NatsServer, Service


def edge_env(nats_url: str, pair: tls.KeyPair, address: str, **overrides: str) -> dict[str, str]:
    """Environment of an edge on `address` serving TLS with `pair`."""
    return {
        "EDGE_NATS_URL": nats_url,
        "EDGE_GRPC_ADDRESS": address,
        "EDGE_TLS_CERT_FILE": str(pair.cert),
        "EDGE_TLS_KEY_FILE": str(pair.key),
        "EDGE_METRICS_ADDRESS": "127.0.0.1:0",
        **overrides,
    }


def producer_env(nats_url: str, **overrides: str) -> dict[str, str]:
    """Environment of a producer."""
    return {"PRODUCER_NATS_URL": nats_url, "PRODUCER_METRICS_ADDRESS": "127.0.0.1:0", **overrides}


class Stack:
    """nats-server, `producers` producer processes and one edge, all under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        producers: int = 2,
        edge_address: str = "127.0.0.1:0",
        edge: Mapping[str, str] | None = None,
        producer: Mapping[str, str] | None = None,
        nats_config: str = "",
    ) -> None:
        self.workdir = workdir
        self.tls = tls.ensure(workdir / "tls")
        self.nats = NatsServer(workdir, config=nats_config)
        self._edge_address = edge_address
        self._edge_overrides = dict(edge or {})
        self._producer_overrides = dict(producer or {})
        self._producer_count = producers
        self.producers: list[Service] = []
        self.edge: Service | None = None

    @property
    def target(self) -> str:
        """`host:port` of the edge's gRPC service."""
        assert self.edge is not None
        return f"127.0.0.1:{self.edge.ready['port']}"

    def start(self, detach: bool = False) -> None:
        """Start NATS, then producers, then the edge; each waits for the one before."""
        self.nats.start(detach=detach)
        for index in range(self._producer_count):
            self.add_producer(detach=detach, name=f"producer-{index}")
        self.edge = Service(
            "edge",
            "streamer_edge",
            self.workdir / "edge.log",
            edge_env(self.nats.url, self.tls, self._edge_address, **self._edge_overrides),
        )
        self.edge.start(detach=detach)

    def add_producer(self, detach: bool = False, name: str = "", **overrides: str) -> Service:
        """Start one more producer process."""
        name = name or f"producer-{len(self.producers)}"
        env = producer_env(self.nats.url, **{**self._producer_overrides, **overrides})
        producer = Service(name, "streamer_producer", self.workdir / f"{name}.log", env)
        producer.start(detach=detach)
        self.producers.append(producer)
        return producer

    def stop(self) -> None:
        """Stop the edge, the producers, then NATS."""
        for service in [self.edge, *self.producers]:
            if service is not None:
                service.stop()
        self.nats.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[Stack]:
        """Start on entry, stop on exit, whatever happens in between."""
        try:
            self.start()
            yield self
        finally:
            self.stop()
