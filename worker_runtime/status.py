"""``tickwork status``: print the per-worker status records stored in Redis."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from worker_runtime.config import redact_url
from worker_runtime.keys import STATUS_PATTERN, WorkerKeys, worker_from_status_key
from worker_runtime.leasing import LeaseTiming
from worker_runtime.redis_leases import REDIS_ERRORS, check_redis_url, connect

__all__ = ["print_status", "read_status"]

_TIME_FIELDS = ("slot", "started_at", "ended_at", "last_success_at")


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
        result: dict[str, dict[str, str]] = {}
        for name in sorted(names):
            keys = WorkerKeys(name)
            raw = await client.hgetall(keys.status)
            if not raw:
                continue
            record = {_text(k): _text(v) for k, v in raw.items()}
            lease = await client.hgetall(keys.lease)
            if lease:
                record["holder"] = _text(lease.get(b"owner", b"")).rsplit(":", 1)[0]
            result[name] = record
        return result
    finally:
        await client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
