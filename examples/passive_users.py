"""The seeds' example: users who have not logged in for 30 days become passive.

Run it:  tickwork run examples.passive_users:PassiveUserCheckerWorker --period 2s

The user repository is a small SQLite file (``TICKWORK_EXAMPLE_DB``, default
``/tmp/tickwork-example.sqlite3``), registered as a per-tick service. Its writes are *fenced*:
the store remembers the highest fencing token it has seen and refuses writes carrying a lower
one, so a replica that lost its lease while stalled cannot overwrite newer work.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import svcs

from worker_runtime import PeriodicWorker, TickContext

INACTIVE_AFTER = timedelta(days=30)
_DEFAULT_DB = "/tmp/tickwork-example.sqlite3"


class StaleFencingToken(Exception):
    """A write carried a fencing token lower than one the store has already accepted."""


class UserRepository:
    """Users in SQLite; one connection per tick (opened by the factory, closed with the scope)."""

    def __init__(self, path: str) -> None:
        self.path = path
        # One tick uses the connection at a time, from a worker thread (asyncio.to_thread).
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS users (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                last_login REAL NOT NULL,
                status TEXT NOT NULL DEFAULT 'active'
            );
            CREATE TABLE IF NOT EXISTS fence (id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER);
            INSERT OR IGNORE INTO fence (id, token) VALUES (1, 0);
            """
        )

    def close(self) -> None:
        self._db.close()

    def seed(self, *, count: int = 10, now: float | None = None) -> None:
        """Demo data: every third user last logged in 40 days ago, the rest yesterday."""
        now = time.time() if now is None else now
        if self._db.execute("SELECT COUNT(*) FROM users").fetchone()[0]:
            return
        rows = [(f"user-{i}", now - (40 if i % 3 == 0 else 1) * 86400) for i in range(1, count + 1)]
        self._db.executemany("INSERT INTO users (name, last_login) VALUES (?, ?)", rows)

    def _update(self, *, fence: int, now: float) -> int:
        # Its own connection: a write already running in a thread finishes (or is refused)
        # even if the tick is cancelled and its scope closes the repository meanwhile.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            cutoff = now - INACTIVE_AFTER.total_seconds()
            db.execute("BEGIN IMMEDIATE")
            try:
                (seen,) = db.execute("SELECT token FROM fence WHERE id = 1").fetchone()
                if fence < seen:
                    raise StaleFencingToken(f"fencing token {fence} is older than {seen}")
                db.execute("UPDATE fence SET token = ? WHERE id = 1", (fence,))
                cur = db.execute(
                    "UPDATE users SET status = 'passive'"
                    " WHERE status = 'active' AND last_login < ?",
                    (cutoff,),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return cur.rowcount
        finally:
            db.close()

    async def update_inactive_user_statuses(self, *, fence: int, now: float | None = None) -> int:
        """Mark inactive users passive; refuses a stale fencing token. Returns how many changed."""
        return await asyncio.to_thread(
            self._update, fence=fence, now=time.time() if now is None else now
        )

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM users GROUP BY status").fetchall()
        return {status: n for status, n in rows}


def database_path() -> str:
    return os.environ.get("TICKWORK_EXAMPLE_DB", _DEFAULT_DB)


def register_services(registry: svcs.Registry) -> None:
    """The app's service factories: a repository per tick, closed when the tick ends."""

    def make_repository() -> object:
        path = database_path()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        repo = UserRepository(path)
        repo.seed()
        yield repo
        repo.close()

    registry.register_factory(UserRepository, make_repository)


class PassiveUserCheckerWorker(PeriodicWorker):
    """ABP's PassiveUserCheckerWorker, as a Tickwork worker."""

    period = timedelta(minutes=10)

    def register_services(self, registry: svcs.Registry) -> None:
        register_services(registry)

    async def do_work(self, ctx: TickContext) -> None:
        ctx.logger.info("Starting: Setting status of inactive users...")
        users = await ctx.services.aget(UserRepository)
        changed = await users.update_inactive_user_statuses(fence=ctx.fencing_token)
        ctx.logger.info(
            "Completed: Setting status of inactive users... (%d changed, token %d, slot %s)",
            changed,
            ctx.fencing_token,
            ctx.scheduled_at.isoformat(),
        )
