"""The health server: routes, status codes, and the loop-lag liveness check."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

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


async def test_healthz_answers_503_while_the_event_loop_is_blocked() -> None:
    monitor = LoopLagMonitor(interval_seconds=0.05, max_lag_seconds=5.0)

    async def live() -> tuple[bool, str]:
        return monitor.healthy()

    server = HealthServer(registry=CollectorRegistry(), live=live, ready=live)
    await server.start("127.0.0.1", 0)
    answers: list[tuple[int, float]] = []

    def probe() -> None:
        started = time.monotonic()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
            code = 200
        except urllib.error.HTTPError as exc:
            code = exc.code
        answers.append((code, time.monotonic() - started))

    try:
        assert await _get(server.port, "/healthz") == (200, "ok (starting)\n")
        thread = threading.Thread(target=probe)
        thread.start()
        time.sleep(3.5)  # noqa: ASYNC251 - block the loop, as blocking code in do_work would
        thread.join()
        assert len(answers) == 1
        code, took = answers[0]
        assert code == 503
        assert took < 3.0, f"/healthz took {took:.2f}s while the loop was blocked"
        assert (await _get(server.port, "/healthz"))[0] == 200
    finally:
        await server.close()
