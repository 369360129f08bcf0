"""Whether another operator's leader election is alive: the guard against two elections.

Leader election keeps the replicas of one install from reconciling together, but two installs
whose Leases differ (another ``--lease-namespace`` or ``--lease-name``) both lead, and would
fight over the same Deployments. So every Deployment says which election applied it (the
``tickwork.dev/election`` annotation, ``<lease namespace>/<lease name>``), and an operator
leaves a Deployment alone while the election named there still has a holder that renews.

Liveness is judged as the leader election itself judges it: on this process's monotonic
clock, from when it last saw the other Lease change, never by comparing wall clocks.
A Lease this operator may not read (RBAC) counts as alive: better to stand aside and say so
than to fight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker_operator.kubeapi import ApiError, Forbidden, KubeApi

__all__ = ["ElectionWatch", "parse_election"]

log = logging.getLogger(__name__)


def parse_election(text: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of ``"<namespace>/<name>"``, else ``None``."""
    namespace, slash, name = text.partition("/")
    return (namespace, name) if slash and namespace and name and "/" not in name else None


@dataclass(slots=True)
class _Seen:
    version: str
    holder: str
    changed_at: float
    checked_at: float
    duration_seconds: float


class ElectionWatch:
    """Remembers the other elections' Leases; reads one at most every ``recheck_seconds``."""

    def __init__(
        self,
        api: KubeApi,
        *,
        recheck_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.recheck_seconds = recheck_seconds
        self._monotonic = monotonic
        self._seen: dict[str, _Seen] = {}

    async def alive(self, election: str) -> bool:
        """Whether ``election`` has a holder that renewed within its lease duration (as
        seen from here: twice the duration with no change of the Lease means it stopped)."""
        where = parse_election(election)
        if where is None:
            return False
        now = self._monotonic()
        seen = self._seen.get(election)
        if seen is None or now - seen.checked_at >= self.recheck_seconds:
            try:
                lease = await self.api.get_lease(*where)
            except Forbidden as exc:
                log.warning(
                    "cannot read the Lease %s of the operator that applied a Deployment (%s); "
                    "leaving its Deployments to it",
                    election,
                    exc.message,
                )
                return True
            except ApiError as exc:
                log.info("cannot read the Lease %s (%s); assuming it is alive", election, exc)
                return True
            if lease is None:
                self._seen.pop(election, None)
                return False
            spec = lease.get("spec") or {}
            version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
            holder = str(spec.get("holderIdentity") or "")
            duration = float(spec.get("leaseDurationSeconds") or 15)
            if seen is None or seen.version != version:
                seen = _Seen(version, holder, now, now, duration)
                self._seen[election] = seen
            else:
                seen.checked_at = now
        return bool(seen.holder) and now - seen.changed_at < 2 * seen.duration_seconds
