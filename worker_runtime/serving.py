"""``/metrics``, ``/healthz`` and ``/readyz`` on one small asyncio HTTP server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["HealthServer", "LoopLagMonitor"]

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]


class LoopLagMonitor:
    """Measures how late the event loop wakes a periodic sleep (a stalled loop is unhealthy)."""

    def __init__(self, *, interval_seconds: float = 0.5, max_lag_seconds: float = 5.0) -> None:
        self.interval = interval_seconds
        self.max_lag = max_lag_seconds
        self.lag = 0.0
        self._last_beat: float | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            self._last_beat = before
            await asyncio.sleep(self.interval)
            self.lag = max(0.0, loop.time() - before - self.interval)
            self._last_beat = loop.time()

    def healthy(self) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        if self._last_beat is None:
            return True, "ok (starting)"
        # If the beat itself is overdue the loop is stalled right now (this handler then runs
        # late too, but the measurement says by how much).
        overdue = max(self.lag, loop.time() - self._last_beat - self.interval)
        if overdue > self.max_lag:
            return False, f"event loop lag {overdue:.3f}s exceeds {self.max_lag:g}s"
        return True, f"ok (loop lag {overdue:.3f}s)"


class HealthServer:
    """Serves GET ``/metrics``, ``/healthz`` and ``/readyz``; anything else is 404."""

    def __init__(self, *, registry: CollectorRegistry, live: Check, ready: Check) -> None:
        self._registry = registry
        self._live = live
        self._ready = ready
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str, port: int) -> None:
        """Bind now, so a port in use is reported before any worker starts."""
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            if len(parts) < 2:
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            status, ctype, body = await self._route(method, target)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, target: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if target == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if target in ("/healthz", "/livez"):
            ok, text = await self._live()
        elif target == "/readyz":
            ok, text = await self._ready()
        else:
            return "404 Not Found", "text/plain", b"not found\n"
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, "text/plain; charset=utf-8", (text + "\n").encode()
