"""A ticker whose every run writes to a fenced store, for the Sentinel and Cluster tests.

Each run logs ``start`` and ``end`` (as ``sample.Ticker`` does, for the chaos checker) and
writes once to ``FencedStore``: a SQLite file (``TICKWORK_TEST_STORE``) that refuses a token
lower than the highest it has accepted and keeps every accepted write in order, so a test can
check afterwards that the store never went back, whatever the lease did.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from typing import Any

from tests.workers.sample import _log
from worker_runtime import PeriodicWorker, TickContext


class FencedStore:
    def __init__(self, path: str) -> None:
        self.path = path
        with sqlite3.connect(path, timeout=30, isolation_level=None) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS writes (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " token INTEGER NOT NULL, worker TEXT NOT NULL, slot REAL NOT NULL,"
                " replica TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS refused (token INTEGER, seen INTEGER, worker TEXT)"
            )

    def write(self, *, token: int, worker: str, slot: float, replica: str) -> bool:
        """Accept the write unless a higher token was accepted (for this worker) before."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            (seen,) = db.execute(
                "SELECT COALESCE(MAX(token), 0) FROM writes WHERE worker = ?", (worker,)
            ).fetchone()
            if token < seen:
                db.execute("INSERT INTO refused VALUES (?, ?, ?)", (token, seen, worker))
                db.execute("COMMIT")
                return False
            db.execute(
                "INSERT INTO writes (token, worker, slot, replica) VALUES (?, ?, ?, ?)",
                (token, worker, slot, replica),
            )
            db.execute("COMMIT")
            return True
        finally:
            db.close()


def read_store(path: str) -> tuple[list[tuple[int, str]], list[tuple[int, int, str]]]:
    """The accepted writes in the order the store took them, ``(token, worker)``, and the
    refused ones, ``(token, highest seen, worker)``."""
    with sqlite3.connect(path) as db:
        writes = db.execute("SELECT token, worker FROM writes ORDER BY seq").fetchall()
        refused = db.execute("SELECT token, seen, worker FROM refused").fetchall()
    return writes, refused


class FencedTicker(PeriodicWorker):
    period = 0.2
    mode = "rate"

    async def do_work(self, ctx: TickContext) -> None:
        _log("start", ctx)
        store = FencedStore(os.environ["TICKWORK_TEST_STORE"])
        outcome = "cancelled"
        try:
            await asyncio.sleep(float(os.environ.get("TICKWORK_TEST_WORK", "0")))
            accepted = await asyncio.to_thread(
                store.write,
                token=ctx.fencing_token,
                worker=ctx.worker,
                slot=ctx.scheduled_at.timestamp(),
                replica=ctx.replica_id,
            )
            outcome = "written" if accepted else "refused"
        finally:
            _log("end", ctx, outcome=outcome)


_MANY = re.compile(r"^FencedTicker\d{2}$")
_made: dict[str, type[PeriodicWorker]] = {}


def __getattr__(name: str) -> Any:
    """``FencedTicker00`` … ``FencedTicker99``: distinct workers (so distinct hash slots) of
    one class, once a second on a fixed grid."""
    if not _MANY.match(name):
        raise AttributeError(name)
    cls = _made.get(name)
    if cls is None:
        cls = _made[name] = type(name, (FencedTicker,), {"period": 1.0, "mode": "rate"})
    return cls
