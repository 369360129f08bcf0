"""Observing the workers: one Ready pod's status document (``GET /status`` on its metrics
port), read with a timeout and backing off per worker.

The operator never talks to Redis and never reads the Redis Secret: what a worker is doing
(last run, outcome, next slot, lease holder, fencing token) comes from the document each
replica serves, which the runtime reads from Redis, so any Ready replica answers for the
worker. A worker whose pods do not answer is asked again after an exponentially growing
delay (``Backoff``), so unreachable pods cost one short request per worker now and then,
not one per reconcile.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from worker_operator.constants import STATUS_DOCUMENT_VERSION, STATUS_PATH
from worker_operator.metrics import OperatorMetrics
from worker_operator.queueing import Backoff

__all__ = ["PodAddress", "StatusReader"]

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: The longest document read (a worker's is ~500 bytes).
_MAX_DOCUMENT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, order=True)
class PodAddress:
    """A Ready worker pod: its name and IP."""

    name: str
    ip: str


class StatusReader:
    """Reads a worker's status document from one of its Ready pods."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        backoff: Backoff,
        metrics: OperatorMetrics,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout_seconds
        self._backoff = backoff
        self._metrics = metrics
        self._monotonic = monotonic
        self._session: aiohttp.ClientSession | None = None
        #: Per worker: consecutive failures and when the next attempt is allowed.
        self._failures: dict[Key, tuple[int, float]] = {}
        #: Per worker: which pod to ask first (turns on failure, so one bad pod is passed over).
        self._turn: dict[Key, int] = {}

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)
        self._turn.pop(key, None)

    def retry_in(self, key: Key) -> float | None:
        """Seconds until ``key`` may be asked again, ``None`` when it is not backing off."""
        failure = self._failures.get(key)
        if failure is None:
            return None
        return max(0.0, failure[1] - self._monotonic())

    async def read(
        self, key: Key, worker: str, pods: Sequence[PodAddress], *, port: int
    ) -> Mapping[str, Any] | None:
        """``worker``'s entry of a Ready pod's document; ``None`` while backing off or when
        no pod answered (the failure is counted and the next attempt pushed back)."""
        if not pods:
            return None
        waiting = self.retry_in(key)
        if waiting:
            return None
        ordered = sorted(pods)
        first = self._turn.get(key, 0) % len(ordered)
        # Two pods at most: a second chance when one is going away, never a fan-out.
        candidates = [ordered[first], *ordered[first + 1 :], *ordered[:first]][:2]
        reasons = []
        for index, pod in enumerate(candidates):
            try:
                entry = await self._fetch(pod, worker, port=port)
            except _Unreadable as exc:
                self._metrics.status_reads.labels(result=exc.result).inc()
                reasons.append(f"{pod.name}: {exc}")
                self._turn[key] = first + index + 1
                continue
            self._metrics.status_reads.labels(result="success").inc()
            self._failures.pop(key, None)
            return entry
        count = self._failures.get(key, (0, 0.0))[0] + 1
        delay = self._backoff.delay(count - 1)
        self._failures[key] = (count, self._monotonic() + delay)
        log.log(
            logging.INFO if count == 1 else logging.DEBUG,
            "%s/%s: cannot read the worker's status (%s); again in %.0fs",
            *key,
            "; ".join(reasons),
            delay,
        )
        return None

    async def _fetch(self, pod: PodAddress, worker: str, *, port: int) -> Mapping[str, Any]:
        host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
        url = f"http://{host}:{port}{STATUS_PATH}"
        session = self._ensure_session()
        try:
            async with session.get(
                url, timeout=aiohttp.ClientTimeout(total=self._timeout), allow_redirects=False
            ) as response:
                body = await response.content.read(_MAX_DOCUMENT_BYTES + 1)
                if response.status != 200:
                    line = body.decode("utf-8", "replace").strip().splitlines()[:1]
                    raise _Unreadable("refused", f"HTTP {response.status} {''.join(line)}")
        except TimeoutError:
            raise _Unreadable("timeout", f"no answer within {self._timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Unreadable("unreachable", f"{type(exc).__name__}: {exc}") from None
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise _Unreadable("invalid", f"the document is larger than {_MAX_DOCUMENT_BYTES} bytes")
        return _entry_of(body, worker)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=32, force_close=True),
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Unreadable(Exception):
    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result


def _entry_of(body: bytes, worker: str) -> Mapping[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise _Unreadable("invalid", "the document is not JSON") from None
    if not isinstance(document, dict) or document.get("version") != STATUS_DOCUMENT_VERSION:
        raise _Unreadable(
            "invalid", f"the document is not version {STATUS_DOCUMENT_VERSION} (another image?)"
        )
    for entry in document.get("workers") or ():
        if isinstance(entry, dict) and entry.get("name") == worker:
            return entry
    raise _Unreadable("invalid", f"the document has no worker {worker!r}")
