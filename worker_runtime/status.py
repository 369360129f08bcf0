"""What each worker is doing, read from the lease backend (Redis), in two shapes:

* ``tickwork status``: the per-worker records stored in Redis, as a table or JSON;
* the **status document** every replica serves at ``GET /status`` on its metrics port, for
  the operator (which never talks to Redis) and for people with ``curl``. Any replica
  answers for its workers, holder or standby, because the document is read from Redis, not
  from the replica's own memory.

The document (``STATUS_DOCUMENT_VERSION``)::

    {"version": 1, "replica": "<pod name>", "generatedAt": "<RFC 3339>",
     "workers": [{"name": ..., "schedule": "every 10s (delay)",
                  "lastScheduleTime": ..., "lastRunTime": ..., "lastRunEndTime": ...,
                  "lastOutcome": "success", "lastSuccessfulTime": ...,
                  "nextScheduleTime": ..., "leaseHolder": "<pod name>", "fencingToken": 7}]}

Times are RFC 3339 in UTC on the lease server's clock; a field with nothing to say is
``null``. ``nextScheduleTime`` is the slot the schedule plans next from what Redis records
(without jitter): the holder may still pass over it (a misfire, an overlap).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker_runtime.config import redact_url
from worker_runtime.keys import STATUS_PATTERN, WorkerKeys, worker_from_status_key
from worker_runtime.leases import InProcessLeases, LeaseProvider
from worker_runtime.leasing import LeaseTiming
from worker_runtime.redis_leases import REDIS_ERRORS, RedisLeases, check_redis_url, connect
from worker_runtime.scheduling import Schedule, ScheduleState, plan_next

__all__ = [
    "STATUS_DOCUMENT_VERSION",
    "StatusDocument",
    "decoded",
    "holder_of",
    "print_status",
    "read_status",
    "render_status_document",
    "text",
]

#: Bumped when a field of the status document changes meaning or goes away.
STATUS_DOCUMENT_VERSION = 1


def text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def decoded(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """A Redis hash as text."""
    return {text(k): text(v) for k, v in raw.items()}


def holder_of(owner: str) -> str:
    """The replica id in a lease's ``owner`` (``<replica id>:<nonce>``)."""
    return owner.rsplit(":", 1)[0]


async def _read_records(client: Any, names: Sequence[str]) -> list[tuple[dict[str, str], ...]]:
    """``(status, schedule, lease)`` hashes of each worker, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        keys = WorkerKeys(name)
        pipe.hgetall(keys.status)
        pipe.hgetall(keys.schedule)
        pipe.hgetall(keys.lease)
    raw = await pipe.execute()
    return [tuple(decoded(part) for part in raw[i : i + 3]) for i in range(0, len(raw), 3)]


# ------------------------------------------------------------------ the status document


def _rfc3339(value: float | None) -> str | None:
    if value is None:
        return None
    return (
        datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _number(value: str | None) -> float | None:
    return float(value) if value else None


@dataclass(frozen=True, slots=True)
class _Observed:
    """One worker's records, whatever backend they came from."""

    status: Mapping[str, str]
    state: ScheduleState
    holder: str | None


def _worker_document(
    name: str, schedule: Schedule, observed: _Observed, *, now: float
) -> dict[str, Any]:
    status = observed.status
    token = status.get("fencing_token")
    try:
        next_slot: float | None = plan_next(schedule, observed.state, now=now, resumed=False).slot
    except ValueError:  # a cron expression with no slot left (e.g. a past year)
        next_slot = None
    return {
        "name": name,
        "schedule": schedule.describe(),
        "lastScheduleTime": _rfc3339(_number(status.get("slot"))),
        "lastRunTime": _rfc3339(_number(status.get("started_at"))),
        "lastRunEndTime": _rfc3339(_number(status.get("ended_at"))),
        "lastOutcome": status.get("outcome") or None,
        "lastSuccessfulTime": _rfc3339(_number(status.get("last_success_at"))),
        "nextScheduleTime": _rfc3339(next_slot),
        "leaseHolder": observed.holder,
        "fencingToken": int(token) if token else None,
    }


class StatusDocument:
    """Builds the ``/status`` document of one process's workers from its lease backend."""

    def __init__(
        self,
        *,
        schedules: Mapping[str, Schedule],
        leases: LeaseProvider,
        replica_id: str,
    ) -> None:
        self._schedules = dict(schedules)
        self._leases = leases
        self._replica_id = replica_id

    async def build(self) -> dict[str, Any]:
        """The document; raises what the backend raises (the server answers 503 then)."""
        names = sorted(self._schedules)
        observed = await self._observe(names)
        now = self._leases.now()
        return {
            "version": STATUS_DOCUMENT_VERSION,
            "replica": self._replica_id,
            "generatedAt": _rfc3339(now),
            "workers": [
                _worker_document(name, self._schedules[name], observed[name], now=now)
                for name in names
            ],
        }

    async def _observe(self, names: Sequence[str]) -> dict[str, _Observed]:
        if isinstance(self._leases, RedisLeases):
            records = await _read_records(self._leases.client, names)
            return {
                name: _Observed(
                    status=status,
                    state=ScheduleState(
                        anchor=_number(schedule.get("anchor")),
                        last_slot=_number(schedule.get("last_slot")),
                        last_end=_number(schedule.get("last_end")),
                    ),
                    holder=holder_of(lease["owner"]) if lease.get("owner") else None,
                )
                for name, (status, schedule, lease) in zip(names, records, strict=True)
            }
        result = {}
        for name in names:
            backend = self._leases.for_worker(name)
            record = (
                self._leases.record(name) if isinstance(self._leases, InProcessLeases) else None
            )
            result[name] = _Observed(
                status=record.as_fields() if record is not None else {},
                state=await backend.load_state(),
                holder=self._replica_id if record is not None else None,
            )
        return result


def render_status_document(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True) + "\n").encode()


# ------------------------------------------------------------------ tickwork status


async def read_status(
    url: str, *, password: str | None, worker: str | None
) -> dict[str, dict[str, str]]:
    """``{worker: {field: value}}`` for one worker or every worker on the Redis."""
    client = connect(url, password=password, timing=LeaseTiming())
    try:
        names: list[str] = []
        if worker is not None:
            names = [worker]
        else:
            async for key in client.scan_iter(match=STATUS_PATTERN, count=500):
                name = worker_from_status_key(key.decode())
                if name is not None:
                    names.append(name)
        names.sort()
        result: dict[str, dict[str, str]] = {}
        for name, (status, _, lease) in zip(names, await _read_records(client, names), strict=True):
            if not status:
                continue
            if lease.get("owner"):
                status["holder"] = holder_of(lease["owner"])
            result[name] = status
        return result
    finally:
        await client.aclose()


def _when(value: str) -> str:
    if not value:
        return "-"
    return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="milliseconds")


async def print_status(url: str, *, password: str | None, worker: str | None, as_json: bool) -> int:
    try:
        check_redis_url(url)
    except ValueError as exc:
        print(f"tickwork: error: {exc}", file=sys.stderr)
        return 2
    try:
        records = await read_status(url, password=password, worker=worker)
    except REDIS_ERRORS as exc:
        print(f"tickwork: error: cannot read from {redact_url(url)}: {exc}", file=sys.stderr)
        return 1
    if worker is not None and worker not in records:
        print(f"tickwork: error: no status recorded for worker {worker!r}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(records, indent=2, sort_keys=True))
        return 0
    if not records:
        print("no workers have recorded a status yet")
        return 0
    header = (
        "WORKER",
        "OUTCOME",
        "LAST START",
        "LAST END",
        "LAST SUCCESS",
        "REPLICA",
        "TOKEN",
        "HOLDER",
    )
    rows = [header]
    for name, rec in records.items():
        rows.append(
            (
                name,
                rec.get("outcome", "-"),
                _when(rec.get("started_at", "")),
                _when(rec.get("ended_at", "")),
                _when(rec.get("last_success_at", "")),
                rec.get("replica_id", "-"),
                rec.get("fencing_token", "-"),
                rec.get("holder", "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0
