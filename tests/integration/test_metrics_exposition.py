"""/metrics of the runtime and of the operator, scraped over real HTTP: the format the
scraper's Accept asks for, gzip when Accept-Encoding allows it, and (operator) no *_created."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from worker_operator.metrics import OperatorMetrics, Result
from worker_operator.serving import Health, serve
from worker_runtime.metrics import Metrics
from worker_runtime.serving import HealthServer

pytestmark = pytest.mark.integration

# What Prometheus 2.x sends when it scrapes (OpenMetrics first, the text format as fallback).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

Server = Callable[[], AbstractAsyncContextManager[int]]


@asynccontextmanager
async def _runtime_server() -> AsyncIterator[int]:
    registry = CollectorRegistry()
    Metrics(registry).for_worker("w")

    async def ok() -> tuple[bool, str]:
        return True, "ok"

    server = HealthServer(registry=registry, live=ok, ready=ok)
    await server.start("127.0.0.1", 0)
    try:
        yield server.port
    finally:
        await server.close()


@asynccontextmanager
async def _operator_server() -> AsyncIterator[int]:
    registry = CollectorRegistry()
    OperatorMetrics(registry).observe(trigger="create", result=Result.SUCCESS, seconds=0.02)
    async with serve(host="127.0.0.1", port=0, health=Health(), registry=registry) as port:
        yield port


SERVERS = pytest.mark.parametrize(
    "server", [_runtime_server, _operator_server], ids=["runtime", "operator"]
)


def _scrape(port: int, path: str = "/metrics", **headers: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


async def _in_thread(
    function: Callable[[], tuple[dict[str, str], bytes]],
) -> tuple[dict[str, str], bytes]:
    """Scrape from a thread: the server runs on this test's event loop."""
    return await asyncio.to_thread(function)


@SERVERS
async def test_without_an_accept_header_metrics_is_the_prometheus_text_format(
    server: Server,
) -> None:
    async with server() as port:
        headers, body = await _in_thread(lambda: _scrape(port))

    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "content-encoding" not in headers
    assert b"# TYPE tickwork_" in body
    assert not body.endswith(b"# EOF\n")


@SERVERS
async def test_a_scraper_that_asks_for_openmetrics_gets_valid_openmetrics(server: Server) -> None:
    async with server() as port:
        headers, body = await _in_thread(lambda: _scrape(port, Accept=PROMETHEUS_ACCEPT))

    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    families = list(text_string_to_metric_families(body.decode()))
    assert any(f.name.startswith("tickwork_") for f in families)


@SERVERS
async def test_a_scraper_that_accepts_gzip_gets_the_same_metrics_compressed(
    server: Server,
) -> None:
    async with server() as port:
        plain_headers, plain = await _in_thread(lambda: _scrape(port, Accept=PROMETHEUS_ACCEPT))
        headers, body = await _in_thread(
            lambda: _scrape(port, Accept=PROMETHEUS_ACCEPT, **{"Accept-Encoding": "gzip"})
        )

    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == plain_headers["content-type"]
    assert int(headers["content-length"]) == len(body) < len(plain)
    unpacked = gzip.decompress(body)
    assert [f.name for f in text_string_to_metric_families(unpacked.decode())] == [
        f.name for f in text_string_to_metric_families(plain.decode())
    ]


@SERVERS
async def test_name_parameters_restrict_the_answer_to_those_families(server: Server) -> None:
    async with server() as port:
        _, full = await _in_thread(lambda: _scrape(port))
        first = next(
            line.split()[2] for line in full.decode().splitlines() if line.startswith("# TYPE")
        )
        _, body = await _in_thread(lambda: _scrape(port, f"/metrics?name[]={first}"))

    types = [line for line in body.decode().splitlines() if line.startswith("# TYPE")]
    assert [t.split()[2] for t in types] == [first]


_OPERATOR_SCRAPE = textwrap.dedent(
    """
    import asyncio, sys, urllib.request
    from prometheus_client import CollectorRegistry
    from worker_operator.metrics import OperatorMetrics, Result
    from worker_operator.serving import Health, serve

    async def main():
        registry = CollectorRegistry()
        metrics = OperatorMetrics(registry)
        metrics.observe(trigger="create", result=Result.SUCCESS, seconds=0.02)
        metrics.drift_repairs.inc()
        metrics.events_posted.labels(type="Normal", reason="Created").inc()
        async with serve(host="127.0.0.1", port=0, health=Health(), registry=registry) as port:
            for accept in ("", sys.argv[1]):
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept}
                )
                body = await asyncio.to_thread(lambda: urllib.request.urlopen(request).read())
                sys.stdout.write(body.decode() + "\\n=====\\n")

    asyncio.run(main())
    """
)


def test_the_operator_exports_no_created_series_in_either_format() -> None:
    # A process of its own: prometheus_client's switch is process-wide, and the operator's own
    # metrics module must turn it off (nothing else in that process does).
    result = subprocess.run(
        [sys.executable, "-c", _OPERATOR_SCRAPE, PROMETHEUS_ACCEPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text, openmetrics, _ = result.stdout.split("\n=====\n")
    created = [
        line for line in (text + openmetrics).splitlines() if "_created" in line.split(" ")[0]
    ]

    assert "tickwork_operator_reconciles_total" in text
    assert openmetrics.endswith("# EOF\n")
    assert created == []
