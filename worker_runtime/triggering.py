"""Run now: ``tickwork trigger WORKER`` asks the lease holder to run one extra slot.

The request is a small hash in Redis (``tickwork:{W}:trigger``, see ``keys.py``); it is
refused when no replica holds the worker's lease (the worker is suspended or not running:
nothing would run it), and a second request while one is pending joins it (one extra run,
not two).

The holder learns of it without an extra Redis command in steady state: the lease renewal
script it runs anyway (every renew interval) also answers "a trigger is pending". The holder
then claims a *manual slot* at the Redis server's current time with ``_CLAIM_TRIGGERED``,
which in one script checks the lease owner, consumes the request and records the slot like
any claimed slot (newer than the last one, with the term's fencing token). So the extra run
happens at most once, and exactly once while the holder stays healthy; the schedule then
goes on from it (rate mode: the next grid slot; delay mode: one period after it ended).
Its outcome is counted in ``tickwork_triggered_ticks_total{trigger="manual"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from worker_runtime.config import redact_url
from worker_runtime.keys import WorkerKeys
from worker_runtime.leases import LeaseBackend
from worker_runtime.leasing import LeaseTiming
from worker_runtime.outcomes import FINISHED_OUTCOMES, Outcome
from worker_runtime.redis_leases import REDIS_ERRORS, RedisLeases, connect
from worker_runtime.status import decoded, text

__all__ = [
    "MANUAL",
    "TRIGGER_TTL_SECONDS",
    "ManualTrigger",
    "TriggerRequest",
    "request_trigger",
    "run_trigger_command",
    "trigger_counter",
]

#: The ``trigger`` label of runs asked for with ``tickwork trigger``.
MANUAL = "manual"
#: A request no holder took up within this long is dropped (Redis expires it).
TRIGGER_TTL_SECONDS = 3600.0

# KEYS[1] lease hash, KEYS[2] trigger hash
# ARGV[1] request id, ARGV[2] TTL of the request in milliseconds
# Returns {1, id} when requested, {2, id} when a request was already pending (that one's id),
# {0, ''} when no replica holds the lease.
_REQUEST = """
if not redis.call('HGET', KEYS[1], 'owner') then
  return {0, ''}
end
local pending = redis.call('HGET', KEYS[2], 'id')
if pending then
  return {2, pending}
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'requested_at',
  string.format('%d.%06d', tonumber(t[1]), tonumber(t[2])))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {1, ARGV[1]}
"""

# KEYS[1] lease hash, KEYS[2] schedule hash, KEYS[3] status hash, KEYS[4] trigger hash
# ARGV[1] owner, ARGV[2] anchor, ARGV[3] fencing token, ARGV[4] replica id
# Claims a manual slot at the server's time (just after the last claimed slot if that is
# later) and consumes the pending request: returns {slot, id}; false when the caller does
# not hold the lease or no request is pending (taken up already, or expired).
_CLAIM_TRIGGERED = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return false
end
local id = redis.call('HGET', KEYS[4], 'id')
if not id then
  return false
end
local t = redis.call('TIME')
local slot = tonumber(t[1]) + tonumber(t[2]) / 1000000
local last = tonumber(redis.call('HGET', KEYS[2], 'last_slot') or '')
if last and last >= slot then
  slot = last + 0.001
end
local text = string.format('%.6f', slot)
local requested = redis.call('HGET', KEYS[4], 'requested_at') or ''
redis.call('DEL', KEYS[4])
redis.call('HSETNX', KEYS[2], 'anchor', ARGV[2])
redis.call('HSET', KEYS[2], 'last_slot', text, 'last_token', ARGV[3])
redis.call('HSET', KEYS[3], 'slot', text, 'started_at', text, 'ended_at', '',
  'outcome', 'running', 'replica_id', ARGV[4], 'fencing_token', ARGV[3],
  'triggered_slot', text, 'trigger_id', id, 'trigger_requested_at', requested,
  'triggered_outcome', '')
return {text, id}
"""

# KEYS[1] status hash
# ARGV[1] request id, ARGV[2] outcome
# Records how the triggered run ended, unless a newer trigger's run replaced it.
_RECORD_TRIGGERED = """
if redis.call('HGET', KEYS[1], 'trigger_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'triggered_outcome', ARGV[2])
end
return 1
"""

_metrics: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def trigger_counter(registry: CollectorRegistry) -> Counter:
    """``tickwork_triggered_ticks_total`` on ``registry`` (registered once per registry)."""
    counter = _metrics.get(registry)
    if counter is None:
        counter = _metrics[registry] = Counter(
            "tickwork_triggered_ticks_total",
            "Extra runs asked for with `tickwork trigger`, by worker, trigger and outcome "
            "(also counted in tickwork_ticks_total).",
            ["worker", "trigger", "outcome"],
            registry=registry,
        )
    return counter


@dataclass(frozen=True, slots=True)
class TriggerRequest:
    """A request as ``request_trigger`` left it: its id, and whether it joined a pending one."""

    id: str
    joined: bool


class ManualTrigger:
    """One worker's side of ``tickwork trigger`` on a replica (Redis leases only)."""

    def __init__(
        self,
        provider: RedisLeases,
        backend: LeaseBackend,
        *,
        worker: str,
        registry: CollectorRegistry,
    ) -> None:
        self._provider = provider
        self._keys = WorkerKeys(worker)
        self._worker = worker
        self._sha = provider.batch.script(_CLAIM_TRIGGERED)
        self._record_sha = provider.batch.script(_RECORD_TRIGGERED)
        self._claimed: str | None = None
        self._counter = trigger_counter(registry)
        for outcome in FINISHED_OUTCOMES:
            self._counter.labels(worker=worker, trigger=MANUAL, outcome=outcome.value)
        self.pending = False
        self._wake: list[asyncio.Event] = []
        backend.on_trigger = self._noticed

    @classmethod
    def attach(
        cls, provider: object, backend: LeaseBackend, *, worker: str, registry: CollectorRegistry
    ) -> ManualTrigger | None:
        """The trigger of a worker whose leases are in Redis; ``None`` for other backends."""
        if not isinstance(provider, RedisLeases):
            return None
        return cls(provider, backend, worker=worker, registry=registry)

    def wakes(self, event: asyncio.Event) -> None:
        """Set ``event`` when a request is noticed (the runner's wake-up event)."""
        self._wake.append(event)

    def _noticed(self) -> None:
        if not self.pending:
            self.pending = True
            for event in self._wake:
                event.set()

    async def claim(
        self, *, owner: str, anchor: float, token: int, replica_id: str
    ) -> float | None:
        """Claim the manual slot (consuming the request); its time, or ``None`` when there is
        nothing to run (no request is pending any more, or the lease is not ours)."""
        self.pending = False
        keys = self._keys
        result = await self._provider.batch.evalsha(
            self._sha,
            [keys.lease, keys.schedule, keys.status, keys.trigger],
            [owner, repr(anchor), token, replica_id],
        )
        if not result:
            return None
        self._claimed = text(result[1])
        return float(result[0])

    async def finished(self, outcome: Outcome) -> None:
        """Count the manual run's outcome and record it for ``tickwork trigger`` (best effort:
        the run itself is recorded like any other)."""
        self._counter.labels(worker=self._worker, trigger=MANUAL, outcome=outcome.value).inc()
        request, self._claimed = self._claimed, None
        if request is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            await self._provider.batch.evalsha(
                self._record_sha, [self._keys.status], [request, outcome.value]
            )


# ------------------------------------------------------------------ tickwork trigger


class TriggerRefused(Exception):
    """No replica would run the request (one line for the user)."""


async def request_trigger(url: str, *, password: str | None, worker: str) -> TriggerRequest:
    """Leave a request for one extra run of ``worker``; ``TriggerRefused`` if none runs it."""
    client = connect(url, password=password, timing=LeaseTiming())
    try:
        keys = WorkerKeys(worker)
        answer = await client.eval(
            _REQUEST,
            2,
            keys.lease,
            keys.trigger,
            uuid.uuid4().hex,
            round(TRIGGER_TTL_SECONDS * 1000),
        )
    finally:
        await client.aclose()
    code, request_id = int(answer[0]), text(answer[1])
    if code == 0:
        raise TriggerRefused(
            f"no replica of worker {worker!r} holds its lease: it is suspended, scaled to "
            "zero or not running (or the name is wrong), so nothing would run the trigger"
        )
    return TriggerRequest(id=request_id, joined=code == 2)


async def wait_for_run(
    url: str, *, password: str | None, worker: str, request: TriggerRequest, wait_seconds: float
) -> dict[str, str] | None:
    """The status record once the triggered run has ended; ``None`` after ``wait_seconds``."""
    client = connect(url, password=password, timing=LeaseTiming())
    keys = WorkerKeys(worker)
    try:
        async with asyncio.timeout(wait_seconds):
            while True:
                raw = await client.hgetall(keys.status)
                status = decoded(raw)
                if status.get("trigger_id") == request.id and status.get("triggered_outcome"):
                    return status
                await asyncio.sleep(0.2)
    except TimeoutError:
        return None
    finally:
        await client.aclose()


async def run_trigger_command(
    url: str, *, password: str | None, worker: str, wait_seconds: float
) -> int:
    """``tickwork trigger`` with a checked URL: the exit code (0 requested or ran, 1 refused
    or failed)."""
    try:
        request = await request_trigger(url, password=password, worker=worker)
    except TriggerRefused as exc:
        print(f"tickwork: error: {exc}", file=sys.stderr)
        return 1
    except REDIS_ERRORS as exc:
        print(f"tickwork: error: cannot reach {redact_url(url)}: {exc}", file=sys.stderr)
        return 1
    what = "joined the pending trigger" if request.joined else "triggered"
    if wait_seconds <= 0:
        print(f"{what} worker {worker!r} (request {request.id}); the holder runs it next")
        return 0
    try:
        status = await wait_for_run(
            url, password=password, worker=worker, request=request, wait_seconds=wait_seconds
        )
    except REDIS_ERRORS as exc:
        print(f"tickwork: error: cannot reach {redact_url(url)}: {exc}", file=sys.stderr)
        return 1
    if status is None:
        print(
            f"tickwork: error: {what} worker {worker!r} (request {request.id}), but it did not "
            f"run within {wait_seconds:g}s; it stays pending for {TRIGGER_TTL_SECONDS:g}s",
            file=sys.stderr,
        )
        return 1
    outcome = status.get("triggered_outcome", "?")
    print(
        f"{what} worker {worker!r}: the run of slot {status.get('triggered_slot')} on "
        f"{status.get('replica_id')} (fencing token {status.get('fencing_token')}) ended with "
        f"{outcome}"
    )
    return 0 if outcome == Outcome.SUCCESS else 1
