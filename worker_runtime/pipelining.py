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

Durable calls (``call(..., durable=True)``): a pipeline that carries one ends with ``WAIT
<replicas> <timeout>`` — on the node that holds the call's key in a Cluster — which returns
how many replicas have acknowledged every write sent before it on that connection. When
fewer than asked did, each durable call of that pipeline fails with ``NotReplicated`` (its
write is on the primary only, and a failover may lose it); the others keep their results.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker_runtime.clocks import ServerClock

__all__ = ["CoalescedScript", "CommandBatcher", "Durability", "NotReplicated", "many_script"]

Command = tuple[Any, ...]


class NotReplicated(RedisError):
    """A durable write was not acknowledged by enough replicas in time."""


@dataclass(frozen=True, slots=True)
class Durability:
    """``WAIT replicas timeout_ms`` after durable writes."""

    replicas: int
    timeout_ms: int


#: While calls fail on a Cluster node, its slot map is read again at most this often.
SLOT_MAP_REFRESH_SECONDS = 0.5

#: Commands per pipeline: large enough to carry a burst, small enough to keep one pipeline's
#: round trip short (a few milliseconds).
MAX_BATCH = 256


class CommandBatcher:
    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        max_pipelines: int,
        clock: ServerClock | None = None,
        durability: Durability | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._durability = durability
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._pipelines = asyncio.Semaphore(max_pipelines)
        self._scripts: dict[str, str] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._slot_map_read = -SLOT_MAP_REFRESH_SECONDS

    @property
    def client(self) -> Redis | RedisCluster:
        return self._client

    def script(self, text: str) -> str:
        """Register a Lua script; its SHA1, for ``evalsha``."""
        sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        self._scripts[sha] = text
        return sha

    async def evalsha(
        self, sha: str, keys: Sequence[str], args: Sequence[Any], *, durable: bool = False
    ) -> Any:
        return await self.call("EVALSHA", sha, len(keys), *keys, *args, durable=durable)

    async def call(self, *command: Any, durable: bool = False) -> Any:
        """Send ``command`` with the others of this loop turn; its own reply (or error).
        ``durable``: wait for the replicas' acknowledgement (when the batcher has a
        ``Durability``), else ``NotReplicated``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if durable and self._durability is not None:
            command = _DurableCommand(command)
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
        if not isinstance(self._client, RedisCluster):
            return await self._execute_on(None, commands)
        # A Cluster: one pipeline per node, so that each node's durable calls get their own
        # WAIT on that node, a script is loaded only where it is missing, and the nodes whose
        # calls fail are known. (A lost primary fails only the calls for its slots because
        # the cluster client's own retry is off, see connecting.py.)
        await self._client.initialize()  # the slot map (a no-op once known)
        groups: dict[str, tuple[ClusterNode | None, list[int]]] = {}
        for i, command in enumerate(commands):
            node = self._node_of(self._client, command)
            groups.setdefault(node.name if node else "", (node, []))[1].append(i)
        replies = await asyncio.gather(
            *(
                self._execute_on(node, [commands[i] for i in indexes])
                for node, indexes in groups.values()
            ),
            return_exceptions=True,
        )
        results: list[Any] = [None] * len(commands)
        failing: set[str] = set()
        for (node, indexes), reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply
            for n, i in enumerate(indexes):
                results[i] = reply if isinstance(reply, Exception) else reply[n]
                if isinstance(results[i], _TOPOLOGY_ERRORS) and node is not None:
                    failing.add(node.name)
        if failing:
            self._check_slot_map(self._client, failing)
        return results

    async def _execute_on(self, node: ClusterNode | None, commands: list[Command]) -> list[Any]:
        """The commands as one pipeline (to ``node`` in a Cluster). A script the server does
        not know (restarted, or a replica just promoted) is loaded there and its calls sent
        again."""
        results = await self._node_pipeline(commands, node=node)
        unknown = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if unknown:
            for sha in {commands[i][1] for i in unknown}:
                if node is None:
                    await self._client.script_load(self._scripts[sha])
                else:
                    await self._client.execute_command(
                        "SCRIPT LOAD", self._scripts[sha], target_nodes=node
                    )
            again = await self._node_pipeline([commands[i] for i in unknown], node=node)
            for i, result in zip(unknown, again, strict=True):
                results[i] = result
        return results

    def _check_slot_map(self, client: RedisCluster, failing: set[str]) -> None:
        """Calls to ``failing`` nodes failed: ask another node (in the background, at most
        every ``SLOT_MAP_REFRESH_SECONDS``) whether their slots have moved — a replica took
        over — and if so have the client read the slot map again. Reading it unasked would
        reconnect every connection each time, while a primary without replicas stays down."""
        now = time.monotonic()
        if now - self._slot_map_read < SLOT_MAP_REFRESH_SECONDS:
            return
        self._slot_map_read = now
        self._spawn(self._compare_slot_map(client, failing))

    async def _compare_slot_map(self, client: RedisCluster, failing: set[str]) -> None:
        for node in client.get_primaries():
            if node.name in failing:
                continue
            try:
                ranges = await client.execute_command("CLUSTER SLOTS", target_nodes=node)
            except Exception:
                continue
            cache = client.nodes_manager.slots_cache
            for (start, _end), owners in ranges.items():
                host, port = owners["primary"][:2]
                known = cache.get(start)
                if not known or known[0].name != f"{host}:{port}":
                    client._initialize = True  # redis-py's own flag: read the map again
                    return
            return

    @staticmethod
    def _node_of(client: RedisCluster, command: Command) -> ClusterNode | None:
        """The primary that serves the command's (first) key; keyless: the default node."""
        if len(command) < 2:
            return client.get_default_node()
        key = command[3] if command[0] == "EVALSHA" else command[1]
        try:
            return client.get_node_from_key(key)
        except RedisClusterException:
            return None  # no node serves the slot: the call fails on its own

    async def _node_pipeline(
        self, commands: list[Command], *, node: ClusterNode | None
    ) -> list[Any]:
        """One pipeline (to ``node`` in a Cluster), ending with ``WAIT`` when it carries a
        durable call: ``WAIT`` counts the replicas that have every earlier write of the
        connection."""
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        durable = [i for i, c in enumerate(commands) if isinstance(c, _DurableCommand)]
        waited = bool(durable) and (node is not None or not isinstance(self._client, RedisCluster))
        if waited:
            assert self._durability is not None  # durable commands exist only with it
            target = {} if node is None else {"target_nodes": node}
            pipe.execute_command(
                "WAIT", self._durability.replicas, self._durability.timeout_ms, **target
            )
        results: list[Any] = await pipe.execute(raise_on_error=False)
        replicas = results.pop() if waited else None
        for i in durable:
            assert self._durability is not None
            if isinstance(results[i], Exception):
                continue
            if not isinstance(replicas, int) or replicas < self._durability.replicas:
                results[i] = NotReplicated(
                    f"the write was acknowledged by {_replicas(replicas)} replicas, not "
                    f"{self._durability.replicas}, within {self._durability.timeout_ms} ms"
                )
        return results


# Errors after which a Cluster's slot map is read again.
_TOPOLOGY_ERRORS = (
    ConnectionError,
    TimeoutError,
    OSError,
    RedisConnectionError,
    RedisTimeoutError,
    MovedError,
    AskError,
    TryAgainError,
    ClusterDownError,
    SlotNotCoveredError,
)


class _DurableCommand(tuple[Any, ...]):
    """A command whose write must reach the replicas (compared by identity: two equal
    commands in one batch each get their own verdict)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


def _replicas(reply: Any) -> str:
    return str(reply) if isinstance(reply, int) else "no"


def many_script(body: str) -> str:
    """Lua that runs ``body`` — a script written for one call's KEYS and ARGV that returns a
    number — once for each of many calls: KEYS holds each call's keys in turn, ARGV[1] and
    ARGV[2] the number of keys and of arguments of one call, then each call's arguments.
    Returns the replies in order."""
    return f"""local function one(KEYS, ARGV)
{body.strip()}
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local replies = {{}}
for i = 0, #KEYS / nk - 1 do
  local keys, args = {{}}, {{}}
  for j = 1, nk do keys[j] = KEYS[i * nk + j] end
  for j = 1, na do args[j] = ARGV[2 + i * na + j] end
  replies[i + 1] = one(keys, args)
end
return replies
"""


class CoalescedScript:
    """The calls of one script made in one event-loop turn, sent as one call of its
    ``many_script`` — per hash slot in a Cluster (a script's keys must share one; the keys
    of one call do), per durability, at most ``MAX_BATCH`` calls each. A thousand workers
    whose slots fall together then cost Redis a handful of script calls, not a thousand,
    and the client a handful of commands to pack and parse. Each caller gets its own reply,
    or the error of the call it was part of; a caller that gave up before the turn ended
    (its timeout) is left out."""

    def __init__(self, batcher: CommandBatcher, body: str, *, keys: int, args: int) -> None:
        self._batcher = batcher
        self._sha = batcher.script(many_script(body))
        self._keys = keys
        self._args = args
        self._cluster = isinstance(batcher.client, RedisCluster)
        self._pending: list[tuple[Sequence[str], Sequence[Any], bool, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(
        self, *, keys: Sequence[str], args: Sequence[Any], durable: bool = False
    ) -> Any:
        if len(keys) != self._keys or len(args) != self._args:
            raise ValueError(
                f"the script takes {self._keys} keys and {self._args} arguments, "
                f"not {len(keys)} and {len(args)}"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((keys, args, durable, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[tuple[int, bool], list[tuple[Sequence[str], Sequence[Any], Any]]] = {}
        for keys, args, durable, future in pending:
            if not future.done():
                slot = key_slot(keys[0].encode()) if self._cluster else 0
                groups.setdefault((slot, durable), []).append((keys, args, future))
        for (_, durable), calls in groups.items():
            for start in range(0, len(calls), MAX_BATCH):
                task = asyncio.get_running_loop().create_task(
                    self._send(calls[start : start + MAX_BATCH], durable=durable)
                )
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(
        self, calls: list[tuple[Sequence[str], Sequence[Any], Any]], *, durable: bool
    ) -> None:
        try:
            replies = await self._batcher.evalsha(
                self._sha,
                [key for keys, _, _ in calls for key in keys],
                [self._keys, self._args, *(arg for _, args, _ in calls for arg in args)],
                durable=durable,
            )
        except Exception as exc:
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(calls, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    async def aclose(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
