"""``/metrics``, ``/healthz`` and ``/readyz`` on one small asyncio HTTP server."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

__all__ = ["HealthServer", "LoopLagMonitor", "render_metrics"]

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]
# Longest request head read before the connection is dropped (a scrape's is ~200 bytes).
_MAX_HEADER_LINES = 100


def render_metrics(
    registry: CollectorRegistry, *, accept: str | None, accept_encoding: str | None, query: str = ""
) -> tuple[bytes, list[tuple[str, str]]]:
    """``/metrics`` as prometheus_client's own exposition answers it: the format the scraper's
    ``Accept`` asks for (OpenMetrics or the text format, ``choose_encoder``), only the families
    named by ``?name[]=…``, gzip-compressed when ``Accept-Encoding`` allows it. Returns the
    body and the response headers. The operator's server answers with this too."""
    encoder, content_type = choose_encoder(accept or "")
    names = parse_qs(query).get("name[]")
    collector: Collector = registry.restricted_registry(names) if names else registry
    body = encoder(collector)
    headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
    if gzip_accepted(accept_encoding or ""):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return body, headers


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
                headers: dict[str, str] = {}
                for _ in range(_MAX_HEADER_LINES):
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, sep, value = line.decode("latin-1").partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                else:
                    return
            parts = request.decode("latin-1").split()
            if len(parts) < 2:
                return
            method, (target, _, query) = parts[0], parts[1].partition("?")
            status, response_headers, body = await self._route(method, target, query, headers)
            head = f"HTTP/1.1 {status}\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in response_headers
            )
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    async def _route(
        self, method: str, target: str, query: str, headers: dict[str, str]
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        plain = [("Content-Type", "text/plain; charset=utf-8")]
        if method not in ("GET", "HEAD"):
            return (
                "405 Method Not Allowed",
                [*plain, ("Allow", "GET, HEAD")],
                b"method not allowed\n",
            )
        if target == "/metrics":
            body, metric_headers = render_metrics(
                self._registry,
                accept=headers.get("accept"),
                accept_encoding=headers.get("accept-encoding"),
                query=query,
            )
            return "200 OK", metric_headers, body
        if target in ("/healthz", "/livez"):
            ok, text = await self._live()
        elif target == "/readyz":
            ok, text = await self._ready()
        else:
            return "404 Not Found", plain, b"not found\n"
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, plain, (text + "\n").encode()
