"""The lease interface: a worker runs only while its replica holds the worker's lease.

A ``LeaseBackend`` does the I/O for one worker's lease and schedule state; ``LeaseKeeper``
(``leasing.py``) does the timing. Backends: ``InProcessLeases`` here (one replica, the
default) and ``RedisLeases`` (``redis_leases.py``).

Every method that changes something acts only for ``owner`` — the value a replica chose when
it started — so a replica whose lease expired cannot renew, release or record over a newer
holder.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from worker_runtime.outcomes import ClaimResult, Outcome
from worker_runtime.scheduling import ScheduleState

__all__ = ["InProcessLeases", "LeaseBackend", "LeaseProvider", "RunRecord", "SlotClaim"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotClaim:
    """A holder's claim on one slot, made just before it runs the slot (or ``lead_seconds``
    before: an early claim, see ``LeaseBackend.early_claims``)."""

    slot: float
    anchor: float  # rate mode's grid origin, recorded by the first claim
    token: int
    replica_id: str
    started_at: float  # when the run starts (for an early claim: is planned to start)
    #: How long before ``started_at`` the claim is made; 0: at the start itself.
    lead_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """The status of a worker's latest run, as stored for ``tickwork status`` and the operator."""

    slot: float
    started_at: float
    ended_at: float | None
    outcome: Outcome | str
    replica_id: str
    fencing_token: int
    last_success_at: float | None = None

    def as_fields(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}


class LeaseBackend(ABC):
    """Lease and schedule-state I/O for one worker."""

    worker: str
    #: Called when a renewal reports a pending ``tickwork trigger`` (triggering.py).
    on_trigger: Callable[[], None] | None = None
    #: True when the backend can give a claim back (``unclaim``): the holder then claims
    #: each slot a little before it (``SlotClaim.lead_seconds``) and makes its tick ready,
    #: so that neither the claim's round trip nor the work of making the tick is part of
    #: the run's lateness; a slot claimed but not started (shutdown, lease lost) is given
    #: back. A backend written before this existed claims at the start.
    early_claims: bool = False

    @abstractmethod
    async def acquire(self, owner: str, ttl_seconds: float) -> int | None:
        """Take the lease if free (or already ours); return the fencing token, else ``None``.

        Safe to retry after a lost reply: the same owner gets its lease and token back.
        """

    async def acquire_or_wait(
        self, owner: str, ttl_seconds: float
    ) -> tuple[int | None, float | None]:
        """``acquire``; and when another owner holds the lease, how long its lease has left
        (seconds; ``None`` when the backend cannot tell): no acquire can succeed before then,
        unless the holder releases it (``release_signal``)."""
        return await self.acquire(owner, ttl_seconds), None

    def release_signal(self) -> asyncio.Event | None:
        """An event set whenever a holder is seen releasing this lease, or ``None`` when the
        backend cannot tell. A release it misses only delays a takeover to the lease's end."""
        return None

    @abstractmethod
    async def renew(self, owner: str, ttl_seconds: float) -> bool:
        """Extend the lease to ``ttl_seconds`` from now, only if ``owner`` still holds it."""

    @abstractmethod
    async def release(self, owner: str) -> bool:
        """Give the lease up, only if ``owner`` holds it."""

    @abstractmethod
    async def load_state(self) -> ScheduleState:
        """The schedule state recorded by the latest holder."""

    async def claim(self, owner: str, claim: SlotClaim) -> ClaimResult:
        """Record the slot as taken and the run as started, only if ``owner`` holds the lease
        and the slot is newer than the last one claimed.

        Safe to re-send after a lost reply: the same slot claimed again with the same fencing
        token (the same term of the same holder) answers ``CLAIMED``. A backend written
        before this method existed implements only ``claim_slot``: its False counts as
        ``NOT_HOLDER``.
        """
        if type(self).claim_slot is LeaseBackend.claim_slot:
            raise NotImplementedError(f"{type(self).__name__} implements neither claim method")
        claimed = await self.claim_slot(owner, claim)
        return ClaimResult.CLAIMED if claimed else ClaimResult.NOT_HOLDER

    async def claim_slot(self, owner: str, claim: SlotClaim) -> bool:
        """``claim``, as a yes/no: True means the caller may run the slot."""
        if type(self).claim is LeaseBackend.claim:
            raise NotImplementedError(f"{type(self).__name__} implements neither claim method")
        return await self.claim(owner, claim) is ClaimResult.CLAIMED

    async def unclaim(self, claim: SlotClaim) -> bool:
        """Undo an early ``claim`` whose slot was not started: the schedule state and the
        run's status go back to what they were before it. Fenced by the claim's slot and
        fencing token, not by the lease: it acts only while that claim is the last one (a
        newer holder's claim stays), so it is safe after the lease was lost. True when
        undone. Only called on backends with ``early_claims``."""
        return False

    @abstractmethod
    async def record_run(self, owner: str, record: RunRecord) -> bool:
        """Store the run's outcome (and its end, for the schedule), only for the holder.
        The stored ``last_success_at`` moves only on success. For a caller that no longer
        holds the lease, False; a backend should then still put the end and outcome in the
        status of that same run if it still reads ``running`` (same slot and token)."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise if the backend cannot be reached (readiness)."""


class LeaseProvider(ABC):
    """Makes one backend per worker and owns the shared connection."""

    #: Shown in logs ("in-process", "redis://host:6379/0" without password).
    description: str

    @abstractmethod
    def for_worker(self, worker: str) -> LeaseBackend: ...

    def now(self) -> float:
        """The wall clock every replica plans on: the lease server's (here: this host's)."""
        return time.time()

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise if the backend cannot be reached (readiness)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close connections."""


@dataclass(slots=True)
class _Slot:
    owner: str | None = None
    token: int = 0
    expires_at: float = 0.0
    state: ScheduleState = field(default_factory=ScheduleState)
    last_token: int | None = None  # the fencing token that claimed ``state.last_slot``
    record: RunRecord | None = None
    #: What the latest early claim replaced: (slot, token, state, last_token, record).
    undo: tuple[float, int, ScheduleState, int | None, RunRecord | None] | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)


class _InProcessLease(LeaseBackend):
    early_claims = True

    def __init__(self, worker: str, slot: _Slot, counter: list[int]) -> None:
        self.worker = worker
        self._slot = slot
        self._counter = counter

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _holds(self, owner: str) -> bool:
        return self._slot.owner == owner and self._slot.expires_at > self._now()

    async def acquire(self, owner: str, ttl_seconds: float) -> int | None:
        if self._holds(owner):
            self._slot.expires_at = self._now() + ttl_seconds
            return self._slot.token
        if self._slot.owner is not None and self._slot.expires_at > self._now():
            return None
        self._counter[0] += 1
        self._slot.owner = owner
        self._slot.token = self._counter[0]
        self._slot.expires_at = self._now() + ttl_seconds
        return self._slot.token

    async def acquire_or_wait(
        self, owner: str, ttl_seconds: float
    ) -> tuple[int | None, float | None]:
        token = await self.acquire(owner, ttl_seconds)
        return token, None if token is not None else self._slot.expires_at - self._now()

    def release_signal(self) -> asyncio.Event:
        return self._slot.released

    async def renew(self, owner: str, ttl_seconds: float) -> bool:
        if not self._holds(owner):
            return False
        self._slot.expires_at = self._now() + ttl_seconds
        return True

    async def release(self, owner: str) -> bool:
        if self._slot.owner != owner:
            return False
        self._slot.owner = None
        self._slot.expires_at = 0.0
        self._slot.released.set()
        return True

    async def load_state(self) -> ScheduleState:
        return self._slot.state

    async def claim(self, owner: str, claim: SlotClaim) -> ClaimResult:
        state = self._slot.state
        if not self._holds(owner):
            return ClaimResult.NOT_HOLDER
        if state.last_slot is not None and claim.slot <= state.last_slot:
            if claim.slot == state.last_slot and self._slot.last_token == claim.token:
                return ClaimResult.CLAIMED  # the same claim, sent again
            return ClaimResult.ALREADY_CLAIMED
        anchor = state.anchor if state.anchor is not None else claim.anchor
        if claim.lead_seconds > 0:
            self._slot.undo = (
                claim.slot,
                claim.token,
                state,
                self._slot.last_token,
                self._slot.record,
            )
        self._slot.state = ScheduleState(
            anchor=anchor, last_slot=claim.slot, last_end=state.last_end
        )
        self._slot.last_token = claim.token
        previous = self._slot.record
        self._slot.record = RunRecord(
            slot=claim.slot,
            started_at=claim.started_at,
            ended_at=None,
            outcome=Outcome.RUNNING,
            replica_id=claim.replica_id,
            fencing_token=claim.token,
            last_success_at=previous.last_success_at if previous else None,
        )
        return ClaimResult.CLAIMED

    async def unclaim(self, claim: SlotClaim) -> bool:
        undo = self._slot.undo
        if (
            undo is None
            or (undo[0], undo[1]) != (claim.slot, claim.token)
            or self._slot.state.last_slot != claim.slot
            or self._slot.last_token != claim.token
        ):
            return False
        _, _, self._slot.state, self._slot.last_token, self._slot.record = undo
        self._slot.undo = None
        return True

    async def record_run(self, owner: str, record: RunRecord) -> bool:
        if not self._holds(owner):
            current = self._slot.record
            if (
                current is not None
                and current.outcome is Outcome.RUNNING
                and (current.slot, current.fencing_token) == (record.slot, record.fencing_token)
            ):
                self._slot.record = replace(
                    current, ended_at=record.ended_at, outcome=record.outcome
                )
            return False
        if record.ended_at is not None:
            state = self._slot.state
            self._slot.state = ScheduleState(
                anchor=state.anchor, last_slot=state.last_slot, last_end=record.ended_at
            )
        previous = self._slot.record
        last_success = previous.last_success_at if previous else None
        if record.outcome == Outcome.SUCCESS:
            last_success = record.ended_at
        self._slot.record = replace(record, last_success_at=last_success)
        return True


class InProcessLeases(LeaseProvider):
    """Leases inside one process: the default when no Redis URL is given (one replica).

    Fencing tokens come from one counter per provider, so they grow across workers too.
    """

    description = "in-process"

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._counter = [0]

    def for_worker(self, worker: str) -> LeaseBackend:
        return _InProcessLease(worker, self._slots.setdefault(worker, _Slot()), self._counter)

    def record(self, worker: str) -> RunRecord | None:
        slot = self._slots.get(worker)
        return slot.record if slot else None
