"""``CommandBatcher``: the Redis calls made in one event-loop turn go out as one pipeline.

A process with many workers makes many small, independent calls at the same instant (every
worker's slot on the same second, every renewal of a burst of acquisitions). Sent one by one,
each costs a connection checkout and a round trip's worth of client work; batched, a thousand
calls cost a handful of pipelines. Each call still has its own result or error, and its caller
keeps its own timeout: a call whose caller has given up before its batch is sent is dropped.

At most ``max_pipelines`` pipelines are in flight (each on one connection of the pool); the
others wait in turn. Scripts are sent by SHA; one the server does not know (after a restart)
is loaded and the calls that needed it are sent again (every script here is safe to repeat).
While calls flow, the server's ``TIME`` is read every ``CLOCK_SYNC_SECONDS`` for the
``ServerClock`` the replicas plan on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from worker_runtime.clocks import ServerClock

__all__ = ["CommandBatcher"]

Command = tuple[Any, ...]

#: Commands per pipeline: large enough to carry a burst, small enough to keep one pipeline's
#: round trip short (a few milliseconds).
MAX_BATCH = 256


class CommandBatcher:
    def __init__(
        self, client: Redis, *, max_pipelines: int, clock: ServerClock | None = None
    ) -> None:
        self._client = client
        self._clock = clock
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._pipelines = asyncio.Semaphore(max_pipelines)
        self._scripts: dict[str, str] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def script(self, text: str) -> str:
        """Register a Lua script; its SHA1, for ``evalsha``."""
        sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        self._scripts[sha] = text
        return sha

    async def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def call(self, *command: Any) -> Any:
        """Send ``command`` with the others of this loop turn; its own reply (or error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def aclose(self) -> None:
        """Wait for the pipelines in flight (each is bounded by the socket timeout)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            self._spawn(self._send(pending[start : start + MAX_BATCH]))
        if self._clock is not None and self._clock.due():
            self._spawn(self._read_time(self._clock))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _read_time(self, clock: ServerClock) -> None:
        """One ``TIME`` round trip of its own (a batch's would blur the reading)."""
        try:
            async with self._pipelines:
                # Twice: the first may include opening a connection (and its handshake).
                for _ in range(2):
                    sent = time.monotonic()
                    seconds, micros = await self._client.time()
                    received = time.monotonic()
                    clock.observe(int(seconds) + int(micros) / 1e6, sent=sent, received=received)
        except Exception:  # the calls themselves report an unreachable server
            return

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            async with self._pipelines:
                live = [(command, future) for command, future in batch if not future.done()]
                if not live:
                    return
                results = await self._execute([command for command, _ in live])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(live, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, commands: list[Command]) -> list[Any]:
        results = await self._pipeline(commands)
        unknown = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if unknown:
            for sha in {commands[i][1] for i in unknown}:
                await self._client.script_load(self._scripts[sha])
            again = await self._pipeline([commands[i] for i in unknown])
            for i, result in zip(unknown, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, commands: list[Command]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
