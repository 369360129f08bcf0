from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.processes import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real ``redis-server`` per test, on a free port, stopped afterwards."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of ``redis_server``, for looking at (or tampering with) the keys."""
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
