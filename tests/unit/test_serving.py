"""The health server: routes, status codes, and the loop-lag liveness check."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from worker_runtime.metrics import Metrics
from worker_runtime.serving import HealthServer, LoopLagMonitor


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_healthz_and_readyz_answer_with_the_right_codes() -> None:
    registry = CollectorRegistry()
    Metrics(registry).for_worker("w")
    ready = {"ok": False}

    async def live() -> tuple[bool, str]:
        return True, "ok"

    async def readiness() -> tuple[bool, str]:
        return ready["ok"], "ok" if ready["ok"] else "redis unreachable"

    server = HealthServer(registry=registry, live=live, ready=readiness)
    await server.start("127.0.0.1", 0)
    try:
        code, body = await _get(server.port, "/metrics")
        assert code == 200
        assert 'tickwork_ticks_total{outcome="success",worker="w"} 0.0' in body
        assert await _get(server.port, "/healthz") == (200, "ok\n")
        assert await _get(server.port, "/readyz") == (503, "redis unreachable\n")
        ready["ok"] = True
        assert (await _get(server.port, "/readyz"))[0] == 200
        assert (await _get(server.port, "/nope"))[0] == 404
    finally:
        await server.close()


async def test_a_stalled_event_loop_makes_healthz_fail() -> None:
    monitor = LoopLagMonitor(interval_seconds=0.05, max_lag_seconds=0.2)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.12)
        assert monitor.healthy()[0]
        time.sleep(0.4)  # noqa: ASYNC251 - block the loop, as a CPU-bound do_work would
        ok, text = monitor.healthy()
        assert not ok and "exceeds 0.2s" in text
        await asyncio.sleep(0.15)
        assert monitor.healthy()[0], "healthy again once the loop runs"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
