"""Every Redis key Tickwork uses, in one place.

All keys of one worker share the hash tag ``{<worker>}``, so in Redis Cluster they live in one
slot and the Lua scripts that touch several of them are allowed.

=============================  ======  ===================================================
key                            type    content
=============================  ======  ===================================================
``tickwork:{W}:lease``         hash    ``owner`` (replica id + nonce), ``token``; PX = TTL
``tickwork:{W}:fence``         string  the fencing-token counter (``INCR``; never reset)
``tickwork:{W}:schedule``      hash    ``anchor``, ``last_slot``, ``last_end`` (Unix time),
                                       ``last_token`` (the token that claimed ``last_slot``)
``tickwork:{W}:status``        hash    the latest run: ``slot``, ``started_at``,
                                       ``ended_at``, ``outcome``, ``replica_id``,
                                       ``fencing_token``, ``last_success_at``; after a
                                       manual trigger also ``triggered_slot``,
                                       ``trigger_id`` (``triggering.py``)
``tickwork:{W}:trigger``       hash    a pending ``tickwork trigger``: ``id``,
                                       ``requested_at``; PX = ``TRIGGER_TTL_SECONDS``
=============================  ======  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RELEASED_CHANNEL", "STATUS_PATTERN", "WorkerKeys", "worker_from_status_key"]

PREFIX = "tickwork"
#: Pub/sub channel on which the release script publishes the worker's name (standbys of
#: every worker listen on it, one subscription per process).
RELEASED_CHANNEL = f"{PREFIX}:released"
#: ``SCAN MATCH`` pattern for every worker's status record.
STATUS_PATTERN = f"{PREFIX}:{{*}}:status"


@dataclass(frozen=True, slots=True)
class WorkerKeys:
    worker: str

    def _key(self, suffix: str) -> str:
        return f"{PREFIX}:{{{self.worker}}}:{suffix}"

    @property
    def lease(self) -> str:
        return self._key("lease")

    @property
    def fence(self) -> str:
        return self._key("fence")

    @property
    def schedule(self) -> str:
        return self._key("schedule")

    @property
    def status(self) -> str:
        return self._key("status")

    @property
    def trigger(self) -> str:
        return self._key("trigger")


def worker_from_status_key(key: str) -> str | None:
    """``tickwork:{name}:status`` → ``name``."""
    head = f"{PREFIX}:{{"
    tail = "}:status"
    if key.startswith(head) and key.endswith(tail):
        return key[len(head) : -len(tail)]
    return None
