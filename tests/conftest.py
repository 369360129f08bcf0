"""Shared test configuration: warnings are errors (pyproject), tasks must not leak."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.fixturenames.append("_no_leaked_tasks")


@pytest.fixture
async def _no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """An async test that leaves a task running fails (kopf's conftest does the same)."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    for task in leaked:
        task.cancel()
    if leaked:
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail(f"{request.node.name} leaked asyncio tasks: {leaked}")
