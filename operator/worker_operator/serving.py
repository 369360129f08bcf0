"""The operator's HTTP endpoints: ``/healthz`` (liveness), ``/readyz`` and ``/metrics``.

A follower (waiting for the leader Lease) is alive, and ready while it can read and write
the Lease: it is doing its job, which is to wait. ``/readyz`` is 503 while the operator starts
or stops, and while it cannot take part in the election (no rights for the Lease, no API).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from worker_runtime.serving import render_metrics

__all__ = ["Health", "PortUnavailable", "serve"]


class PortUnavailable(OSError):
    """The probes' address cannot be bound (in use, not local, no permission)."""


@dataclass(slots=True)
class Health:
    """What the probes report; the runner updates it."""

    alive: bool = True
    ready: bool = False
    role: str = "starting"  # starting, follower, leader, stopping

    def as_dict(self) -> dict[str, object]:
        return {"alive": self.alive, "ready": self.ready, "role": self.role}


def _app(*, health: Health, registry: CollectorRegistry) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(
            status=200 if health.alive else 503,
            text=json.dumps(health.as_dict()),
            content_type="application/json",
        )

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(
            status=200 if health.alive and health.ready else 503,
            text=json.dumps(health.as_dict()),
            content_type="application/json",
        )

    async def metrics(request: web.Request) -> web.Response:
        # The same negotiation as the runtime's server (OpenMetrics, gzip, name[]).
        body, headers = render_metrics(
            registry,
            accept=request.headers.get("Accept"),
            accept_encoding=request.headers.get("Accept-Encoding"),
            query=request.query_string,
        )
        response = web.Response(body=body)
        for name, value in headers:
            response.headers[name] = value
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


@asynccontextmanager
async def serve(
    *, host: str, port: int, health: Health, registry: CollectorRegistry
) -> AsyncIterator[int]:
    """Serve until the block ends; yields the bound port (useful with port 0)."""
    runner = web.AppRunner(_app(health=health, registry=registry), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise PortUnavailable(
                f"cannot serve /healthz, /readyz and /metrics on {host}:{port}: "
                f"{exc.strerror or exc}; choose another --http-port (0 turns them off)"
            ) from None
        bound = port
        # aiohttp offers no public accessor for the bound port (wanted with port 0).
        sockets = getattr(site._server, "sockets", None) or ()
        if sockets:
            bound = int(sockets[0].getsockname()[1])
        yield bound
    finally:
        await runner.cleanup()
