"""``/metrics``, ``/healthz``, ``/readyz`` and ``/status`` on one small asyncio HTTP server of
its own thread, and the event-loop lag monitor behind ``/healthz``."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from worker_runtime.metrics import LOOP_STALL_SECONDS, Metrics

__all__ = ["STATUS_PATH", "HealthServer", "LoopLagMonitor", "render_metrics"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Where the status document (``worker_runtime.status``) is served.
STATUS_PATH = "/status"

Check = Callable[[], Awaitable[tuple[bool, str]]]
#: Builds the JSON body of ``/status`` (``worker_runtime.status``); raises when it cannot.
StatusBody = Callable[[], Awaitable[bytes]]
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
    """Measures how late the event loop wakes a periodic sleep (a stalled loop is unhealthy).

    A stall (a wake-up later than ``stall_seconds``: blocking code in a tick, a long GC
    pause) is counted in ``tickwork_event_loop_stalls_total`` and logged when the loop runs
    again; while it lasts, a watchdog thread logs it once it passes ``max_lag_seconds`` (the
    loop itself cannot), so a blocked process never goes quiet unnoticed.
    """

    def __init__(
        self,
        *,
        interval_seconds: float = 0.5,
        max_lag_seconds: float = 5.0,
        stall_seconds: float = LOOP_STALL_SECONDS,
        metrics: Metrics | None = None,
    ) -> None:
        self.interval = interval_seconds
        self.max_lag = max_lag_seconds
        self.stall = stall_seconds
        self.lag = 0.0
        self._metrics = metrics
        self._last_beat: float | None = None

    async def run(self) -> None:
        stop = threading.Event()
        watchdog = threading.Thread(
            target=self._watch, args=(stop,), name="tickwork-loop-watchdog", daemon=True
        )
        watchdog.start()
        try:
            while True:
                before = time.monotonic()
                self._last_beat = before
                await asyncio.sleep(self.interval)
                now = time.monotonic()
                self.lag = max(0.0, now - before - self.interval)
                self._last_beat = now
                if self._metrics is not None:
                    self._metrics.loop_lag.set(self.lag)
                if self.lag >= self.stall:
                    if self._metrics is not None:
                        self._metrics.loop_stalls.inc()
                    log.warning(
                        "the event loop was blocked for %.1fs: lease renewals, supervision and "
                        "/healthz waited (blocking code in do_work? use asyncio.to_thread)",
                        self.lag,
                    )
        finally:
            stop.set()

    def _watch(self, stop: threading.Event) -> None:
        reported: float | None = None
        while not stop.wait(self.interval):
            beat = self._last_beat
            if beat is None or beat == reported:
                continue
            overdue = time.monotonic() - beat - self.interval
            if overdue > self.max_lag:
                reported = beat
                log.warning(
                    "the event loop has been blocked for %.1fs and counting; /healthz fails "
                    "until it runs again",
                    overdue,
                )

    def healthy(self) -> tuple[bool, str]:
        if self._last_beat is None:
            return True, "ok (starting)"
        # If the beat itself is overdue the loop is stalled right now (this handler then runs
        # late too, but the measurement says by how much).
        overdue = max(self.lag, time.monotonic() - self._last_beat - self.interval)
        if overdue > self.max_lag:
            return False, f"event loop lag {overdue:.3f}s exceeds {self.max_lag:g}s"
        return True, f"ok (loop lag {overdue:.3f}s)"


class HealthServer:
    """Serves GET ``/metrics``, ``/healthz``, ``/readyz`` and ``/status``; anything else is 404.

    The server runs on its own thread and event loop, so it answers while the main loop is
    blocked: ``/metrics`` as usual, ``/healthz``, ``/readyz`` and ``/status`` with 503 once
    their check or document (built on the main loop) has not answered within
    ``check_timeout_seconds``. ``/status`` is 404 when the server was given no ``status``.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        live: Check,
        ready: Check,
        status: StatusBody | None = None,
        check_timeout_seconds: float = 2.0,
    ) -> None:
        self._registry = registry
        self._live = live
        self._ready = ready
        self._status = status
        self._check_timeout = check_timeout_seconds
        self._socket: socket.socket | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._socket is not None
        port: int = self._socket.getsockname()[1]
        return port

    async def start(self, host: str, port: int) -> None:
        """Bind now, so a port in use is reported before any worker starts."""
        self._main = asyncio.get_running_loop()
        self._socket = socket.create_server((host, port), reuse_port=False)
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="tickwork-health", daemon=True
        )
        self._thread.start()
        await asyncio.to_thread(started.wait)

    def _serve(self, started: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        assert self._socket is not None
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, sock=self._socket)
            )
            started.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
        finally:
            started.set()
            loop.close()

    async def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop = self._thread = None

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
            # In a thread: with a thousand workers the exposition takes a second of CPU, which
            # on the event loop would make every tick of that second late.
            body, metric_headers = await asyncio.to_thread(
                render_metrics,
                self._registry,
                accept=headers.get("accept"),
                accept_encoding=headers.get("accept-encoding"),
                query=query,
            )
            return "200 OK", metric_headers, body
        if target == STATUS_PATH and self._status is not None:
            return await self._status_response(self._status)
        if target in ("/healthz", "/livez"):
            ok, text = await self._ask(self._live)
        elif target == "/readyz":
            ok, text = await self._ask(self._ready)
        else:
            return "404 Not Found", plain, b"not found\n"
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, plain, (text + "\n").encode()

    async def _ask(self, check: Check) -> tuple[bool, str]:
        """Run ``check`` on the main loop; a loop that does not answer in time is unhealthy."""
        try:
            return await self._on_main_loop(check)
        except TimeoutError:
            return False, (
                f"the event loop did not answer within {self._check_timeout:g}s (it is blocked)"
            )

    async def _status_response(self, build: StatusBody) -> tuple[str, list[tuple[str, str]], bytes]:
        try:
            body = await self._on_main_loop(build)
        except TimeoutError:
            why = f"the status was not read within {self._check_timeout:g}s"
        except Exception as exc:  # the backend failed: say so, the caller tries another replica
            why = f"cannot read the status: {type(exc).__name__}: {exc}"
        else:
            return "200 OK", [("Content-Type", "application/json")], body
        plain = [("Content-Type", "text/plain; charset=utf-8")]
        return "503 Service Unavailable", plain, (why + "\n").encode()

    async def _on_main_loop(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` run on the main loop, within ``check_timeout_seconds`` (else TimeoutError)."""
        assert self._main is not None
        future = asyncio.run_coroutine_threadsafe(_call(call), self._main)
        try:
            async with asyncio.timeout(self._check_timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise


async def _call(call: Callable[[], Awaitable[T]]) -> T:
    return await call()
