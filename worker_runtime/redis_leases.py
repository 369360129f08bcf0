"""Leases in Redis: exactly one replica runs each tick, fenced.

Each operation is one Lua script (atomic, and allowed in Redis Cluster because all of a
worker's keys share a hash tag, see ``keys.py``). Every script that changes something first
compares the stored owner with the caller, so a replica whose lease expired cannot renew,
release or record over a newer holder.

Connection settings are explicit and sized to the lease timing (``connecting.py``: one
server, Sentinel or Cluster); at most ``POOL_MAX_CONNECTIONS`` pipelines are in flight, the
other calls wait in turn.

Durable writes (``durable=True``): acquire and claim return only once at least one replica
has acknowledged them (``WAIT 1``, see ``pipelining.py``); without the acknowledgement the
lease counts as not acquired and the slot as not claimed, so no work runs on a write that a
failover could lose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from worker_runtime.clocks import CLOCK_TOLERANCE_SECONDS, ServerClock
from worker_runtime.connecting import POOL_MAX_CONNECTIONS, REDIS_ERRORS, Client, connect
from worker_runtime.keys import RELEASED_CHANNEL, WorkerKeys
from worker_runtime.leases import LeaseBackend, LeaseProvider, RunRecord, SlotClaim
from worker_runtime.leasing import LeaseTiming
from worker_runtime.metrics import Metrics
from worker_runtime.outcomes import ClaimResult
from worker_runtime.pipelining import CoalescedScript, CommandBatcher, Durability
from worker_runtime.redis_urls import Deployment, check_redis_url, parse_redis_url, redact_url
from worker_runtime.scheduling import ScheduleState

__all__ = ["POOL_MAX_CONNECTIONS", "REDIS_ERRORS", "RedisLeases", "check_redis_url", "connect"]

log = logging.getLogger(__name__)

# KEYS[1] lease hash, KEYS[2] fencing counter
# ARGV[1] owner, ARGV[2] TTL in milliseconds
# Returns the fencing token, or -(1 + the lease's remaining TTL in milliseconds) when another
# owner holds it (a standby waits that long, unless the holder releases it first). The same owner
# asking again (a retry after a lost reply) gets its lease extended and its token back.
# A missing counter starts at the Redis server's clock in microseconds, so tokens keep
# growing even if Redis lost its data.
_ACQUIRE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('HGET', KEYS[1], 'token'))
end
if owner then
  return -1 - math.max(0, redis.call('PTTL', KEYS[1]))
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[2], now[1] .. string.format('%06d', tonumber(now[2])))
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""

# KEYS[1] lease hash, KEYS[2] trigger hash (triggering.py)
# ARGV[1] owner, ARGV[2] TTL in milliseconds
# Returns 1 when renewed, 2 when renewed and a `tickwork trigger` is pending, 0 when that
# owner does not hold the lease. (A process's keepers renew together, on one grid: their
# renewals go out as one call, see CoalescedScript.)
_RENEW = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1 + redis.call('EXISTS', KEYS[2])
end
return 0
"""

# KEYS[1] lease hash
# ARGV[1] owner, ARGV[2] the release channel, ARGV[3] the worker's name
# Compare-and-delete: returns 1 when released, 0 when the caller did not hold it. A release
# is published on the channel (the worker's name), so that standbys take over at once.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS[1] lease hash, KEYS[2] schedule hash, KEYS[3] status hash
# ARGV[1] owner, ARGV[2] slot, ARGV[3] anchor, ARGV[4] fencing token, ARGV[5] replica id,
# ARGV[6] started_at, ARGV[7] clock tolerance in seconds, ARGV[8] '1' for an early claim
# Returns 1 when the slot is claimed, 0 when the caller does not hold the lease, -1 when the
# slot is not newer than the last one claimed (never run a slot twice), -2 when the slot lies
# more than the tolerance ahead of the server's clock (it was planned on a wrong clock). The
# same claim sent again (the same slot with the same fencing token, after a lost reply)
# returns 1. A last slot recorded ahead of the server's clock (by a replica whose clock was
# ahead) does not block newer claims: it is replaced. An early claim keeps what it replaced
# in the schedule hash's `undo` field, for _UNCLAIM.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slot = tonumber(ARGV[2])
if slot > now + tonumber(ARGV[7]) then
  return -2
end
local last = redis.call('HGET', KEYS[2], 'last_slot')
if last and tonumber(last) >= slot then
  if last == ARGV[2] and redis.call('HGET', KEYS[2], 'last_token') == ARGV[4] then
    return 1
  end
  if tonumber(last) <= now + tonumber(ARGV[7]) then
    return -1
  end
end
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[2], 'undo', cjson.encode({
    slot = ARGV[2], token = ARGV[4], last_slot = last or '',
    last_token = redis.call('HGET', KEYS[2], 'last_token') or '',
    status = redis.call('HGETALL', KEYS[3])}))
end
redis.call('HSETNX', KEYS[2], 'anchor', ARGV[3])
redis.call('HSET', KEYS[2], 'last_slot', ARGV[2], 'last_token', ARGV[4])
redis.call('HSET', KEYS[3], 'slot', ARGV[2], 'started_at', ARGV[6], 'ended_at', '',
  'outcome', 'running', 'replica_id', ARGV[5], 'fencing_token', ARGV[4])
return 1
"""

# KEYS[1] schedule hash, KEYS[2] status hash
# ARGV[1] slot, ARGV[2] fencing token (of an early claim whose slot was not started)
# Puts back the schedule state and status that the early claim replaced, if that claim is
# still the last one: returns 1 when undone, 0 otherwise (a newer claim, or nothing to undo).
_UNCLAIM = """
if redis.call('HGET', KEYS[1], 'last_slot') ~= ARGV[1]
    or redis.call('HGET', KEYS[1], 'last_token') ~= ARGV[2] then
  return 0
end
local raw = redis.call('HGET', KEYS[1], 'undo')
if not raw then
  return 0
end
local undo = cjson.decode(raw)
if undo.slot ~= ARGV[1] or undo.token ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], 'undo')
if undo.last_slot == '' then
  redis.call('HDEL', KEYS[1], 'last_slot', 'last_token')
else
  redis.call('HSET', KEYS[1], 'last_slot', undo.last_slot, 'last_token', undo.last_token)
end
redis.call('DEL', KEYS[2])
if #undo.status > 0 then
  redis.call('HSET', KEYS[2], unpack(undo.status))
end
return 1
"""

# KEYS[1] lease hash, KEYS[2] schedule hash, KEYS[3] status hash
# ARGV[1] owner, ARGV[2] ended_at, ARGV[3] outcome, ARGV[4] slot, ARGV[5] started_at,
# ARGV[6] replica id, ARGV[7] fencing token
# Returns 1 when recorded, 0 when the caller does not hold the lease. Then only the status
# of that same run (its slot and token, still 'running': no later claim replaced it) gets
# its end and outcome, so that it does not read 'running' for good.
_RECORD = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  if redis.call('HGET', KEYS[3], 'outcome') == 'running'
      and redis.call('HGET', KEYS[3], 'slot') == ARGV[4]
      and redis.call('HGET', KEYS[3], 'fencing_token') == ARGV[7] then
    redis.call('HSET', KEYS[3], 'ended_at', ARGV[2], 'outcome', ARGV[3])
  end
  return 0
end
redis.call('HSET', KEYS[2], 'last_end', ARGV[2])
redis.call('HSET', KEYS[3], 'slot', ARGV[4], 'started_at', ARGV[5], 'ended_at', ARGV[2],
  'outcome', ARGV[3], 'replica_id', ARGV[6], 'fencing_token', ARGV[7])
if ARGV[3] == 'success' then
  redis.call('HSET', KEYS[3], 'last_success_at', ARGV[2])
end
return 1
"""


_CLAIM_RESULTS = {
    1: ClaimResult.CLAIMED,
    0: ClaimResult.NOT_HOLDER,
    -1: ClaimResult.ALREADY_CLAIMED,
    -2: ClaimResult.AHEAD_OF_SERVER,
}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _float(value: bytes | str | None) -> float | None:
    if value in (None, b"", ""):
        return None
    return float(value)


class _RedisLease(LeaseBackend):
    early_claims = True  # a claim is a round trip: made before the slot, not at it

    def __init__(self, provider: RedisLeases, worker: str) -> None:
        self.worker = worker
        self._p = provider
        self._keys = WorkerKeys(worker)

    async def acquire(self, owner: str, ttl_seconds: float) -> int | None:
        return (await self.acquire_or_wait(owner, ttl_seconds))[0]

    async def acquire_or_wait(
        self, owner: str, ttl_seconds: float
    ) -> tuple[int | None, float | None]:
        reply = int(
            await self._p.acquire_script(
                keys=[self._keys.lease, self._keys.fence],
                args=[owner, _ms(ttl_seconds)],
                durable=True,
            )
        )
        return (reply, None) if reply > 0 else (None, (-reply - 1) / 1000)

    def release_signal(self) -> asyncio.Event:
        return self._p.releases.signal(self.worker)

    async def renew(self, owner: str, ttl_seconds: float) -> bool:
        result = await self._p.renew_script(
            keys=[self._keys.lease, self._keys.trigger], args=[owner, _ms(ttl_seconds)]
        )
        # --- tickwork trigger hook (triggering.py): the renewal also says one is pending.
        if result == 2 and self.on_trigger is not None:
            self.on_trigger()
        return bool(result)

    async def release(self, owner: str) -> bool:
        return bool(
            await self._p.release_script(
                keys=[self._keys.lease], args=[owner, RELEASED_CHANNEL, self.worker]
            )
        )

    async def load_state(self) -> ScheduleState:
        raw = await self._p.batch.call("HGETALL", self._keys.schedule)
        return ScheduleState(
            anchor=_float(raw.get(b"anchor")),
            last_slot=_float(raw.get(b"last_slot")),
            last_end=_float(raw.get(b"last_end")),
        )

    async def claim(self, owner: str, claim: SlotClaim) -> ClaimResult:
        early = claim.lead_seconds > 0
        result = await self._p.claim_script(
            keys=[self._keys.lease, self._keys.schedule, self._keys.status],
            args=[
                owner,
                repr(claim.slot),
                repr(claim.anchor),
                claim.token,
                claim.replica_id,
                repr(claim.started_at),
                # An early claim's slot lies ahead of now by its lead, on a right clock too.
                repr(CLOCK_TOLERANCE_SECONDS + max(0.0, claim.lead_seconds)),
                "1" if early else "0",
            ],
            durable=True,
        )
        return _CLAIM_RESULTS[int(result)]

    async def unclaim(self, claim: SlotClaim) -> bool:
        result = await self._p.unclaim_script(
            keys=[self._keys.schedule, self._keys.status], args=[repr(claim.slot), claim.token]
        )
        return bool(result)

    async def record_run(self, owner: str, record: RunRecord) -> bool:
        ended = record.ended_at if record.ended_at is not None else record.started_at
        result = await self._p.record_script(
            keys=[self._keys.lease, self._keys.schedule, self._keys.status],
            args=[
                owner,
                repr(ended),
                str(record.outcome),
                repr(record.slot),
                repr(record.started_at),
                record.replica_id,
                record.fencing_token,
            ],
        )
        return bool(result)

    async def ping(self) -> None:
        await self._p.ping()


class _ReleaseListener:
    """One subscription per process to ``RELEASED_CHANNEL``: sets the signal of the worker
    whose lease was released. Started by the first ``signal()``, stopped by ``aclose()``.
    While it is not subscribed (Redis down, reconnecting) releases go unseen, which only
    delays a takeover to the end of the lease's TTL (standbys poll then)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._signals: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        # Checked by the loop too: a cancellation that meets the expiry of a read's timeout
        # can be swallowed (asyncio.timeout in Python 3.11), and the loop must end anyway.
        self._closing = False

    def signal(self, worker: str) -> asyncio.Event:
        event = self._signals.get(worker)
        if event is None:
            event = self._signals[worker] = asyncio.Event()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name="lease-releases"
            )
        return event

    def _stopping(self) -> bool:
        return self._closing

    async def _listen(self) -> None:
        while not self._stopping():
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(RELEASED_CHANNEL)
                    while not self._stopping():
                        message = await pubsub.get_message(timeout=_LISTEN_SECONDS)
                        if message is not None:
                            self._seen(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping():
                    return
                log.debug("lease release subscription failed (%s); resubscribing", exc)
                await asyncio.sleep(_RESUBSCRIBE_SECONDS)

    def _seen(self, data: object) -> None:
        worker = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        event = self._signals.get(worker)
        if event is not None:
            event.set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            task.cancel()
            # Bounded: a swallowed cancellation ends the loop at its next read (the flag).
            await asyncio.wait([task], timeout=_LISTEN_SECONDS * 3)


# How long one read of the subscription waits; a failed subscription is retried after this.
_LISTEN_SECONDS = 1.0
_RESUBSCRIBE_SECONDS = 1.0


class RedisLeases(LeaseProvider):
    """One Redis connection pool shared by every worker's lease.

    Calls go through a ``CommandBatcher``: the calls of one event-loop turn (a thousand
    workers whose slots fall on the same instant) share one pipeline, and at most
    ``POOL_MAX_CONNECTIONS`` pipelines are in flight — the rest wait their turn, within each
    caller's own timeout, instead of failing with "Too many connections".
    """

    def __init__(
        self,
        client: Client,
        *,
        description: str,
        metrics: Metrics | None = None,
        durability: Durability | None = None,
    ) -> None:
        self.client = client
        self._cluster = isinstance(client, RedisCluster)

        self.description = description
        self.durability = durability
        self.clock = ServerClock(metrics=metrics)
        self.batch = CommandBatcher(
            client, max_pipelines=POOL_MAX_CONNECTIONS, clock=self.clock, durability=durability
        )
        # Each worker's calls of one turn go out together (CoalescedScript): a process's
        # renewals share a grid, and its workers' slots often fall on the same instant.
        self._scripts = [
            CoalescedScript(self.batch, body, keys=keys, args=args)
            for body, keys, args in (
                (_ACQUIRE, 2, 2),
                (_RENEW, 2, 2),
                (_RELEASE, 1, 3),
                (_CLAIM, 3, 8),
                (_UNCLAIM, 2, 2),
                (_RECORD, 3, 7),
            )
        ]
        scripts: list[Callable[..., Awaitable[Any]]] = list(self._scripts)
        (
            self.acquire_script,
            self.renew_script,
            self.release_script,
            self.claim_script,
            self.unclaim_script,
            self.record_script,
        ) = scripts
        self.releases = _ReleaseListener(client)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        timing: LeaseTiming,
        metrics: Metrics | None = None,
        durable_writes: bool | None = None,
    ) -> RedisLeases:
        """``durable_writes``: wait for one replica after acquire and claim; ``None``: on
        with Sentinel (``durable_by_default``), off otherwise."""
        target = parse_redis_url(url)
        if durable_writes is None:
            durable_writes = durable_by_default(target.deployment)
        return cls(
            connect(url, password=password, timing=timing),
            description=redact_url(url) + (" (durable writes)" if durable_writes else ""),
            metrics=metrics,
            durability=durability_for(timing) if durable_writes else None,
        )

    def for_worker(self, worker: str) -> LeaseBackend:
        return _RedisLease(self, worker)

    def now(self) -> float:
        """The Redis server's clock (``ServerClock``), which every replica plans on."""
        return self.clock.now()

    async def ping(self) -> None:
        await self.batch.call("PING")

    def slot_of(self, key: str) -> int:
        """The key's hash slot in Redis Cluster; 0 for every key on a single server."""
        return key_slot(key.encode()) if self._cluster else 0

    async def aclose(self) -> None:
        await self.releases.aclose()
        for script in self._scripts:
            await script.aclose()
        await self.batch.aclose()
        await self.client.aclose()


#: Replicas that must acknowledge a durable write.
DURABLE_REPLICAS = 1


def durable_by_default(deployment: Deployment) -> bool:
    """Durable writes are on by default where a failover is automatic and routine: Sentinel."""
    return deployment is Deployment.SENTINEL


def durability_for(timing: LeaseTiming) -> Durability:
    """``WAIT 1`` for at most half an operation's timeout, so the reply comes before the
    socket gives up on it."""
    return Durability(replicas=DURABLE_REPLICAS, timeout_ms=_ms(timing.op_timeout_seconds / 2))
