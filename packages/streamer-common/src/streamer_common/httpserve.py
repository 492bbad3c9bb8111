"""A small HTTP endpoint for `/metrics`, `/healthz` and `/readyz` on the asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    """`host:port` into its parts; an empty host means every interface."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class OpsServer:
    """Serves Prometheus metrics and liveness/readiness answers over plain HTTP."""

    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._ready = ready
        self._before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self, address: str) -> int:
        """Listen on `address` (`host:port`, port 0 for any); returns the bound port."""
        host, port = split_address(address)
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop listening; safe to call twice."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass
            path = request_line.split(b" ")[1].decode() if request_line.count(b" ") >= 2 else ""
            path = path.split("?")[0]
            if path == "/metrics" and self._before_scrape is not None:
                await self._before_scrape()
            status, content_type, body = self._route(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, TimeoutError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            if self._ready():
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        return "404 Not Found", "text/plain", b"not found\n"
