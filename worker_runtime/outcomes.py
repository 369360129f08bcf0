"""The runtime's named results: a run's outcome, why a lease ended, what a claim answered.

They are ``StrEnum`` members, so each is also the exact string that appears in metrics labels,
logs and the status record in Redis.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ClaimResult", "LeaseLoss", "Outcome"]


class Outcome(StrEnum):
    """How a run of ``do_work`` ended (``running`` only in the status record, while it runs)."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    #: The run went on past the lease's deadline without being cancelled (it blocked the
    #: event loop): another replica may have run meanwhile, so it is not a success.
    LEASE_LOST = "lease_lost"


#: The outcomes a finished run can have (every ``tickwork_ticks_total`` series).
FINISHED_OUTCOMES = tuple(o for o in Outcome if o is not Outcome.RUNNING)


class LeaseLoss(StrEnum):
    """Why a replica stopped holding a lease."""

    EXPIRED = "expired"  # no renewal was confirmed before the lease's deadline
    STOLEN = "stolen"  # the backend said another owner holds it
    RELEASED = "released"  # given up on purpose (shutdown)


class ClaimResult(StrEnum):
    """What the backend answered to a claim of one slot."""

    CLAIMED = "claimed"  # recorded for this holder (also when this very claim was re-sent)
    NOT_HOLDER = "not_holder"  # the caller does not hold the lease: do not run
    ALREADY_CLAIMED = "already_claimed"  # the slot is not newer than the last one claimed
    #: The slot lies ahead of the lease server's clock: it was planned on a wrong clock.
    AHEAD_OF_SERVER = "ahead_of_server"
    #: No answer could be had in time (the backend is down or refuses writes): the slot may
    #: or may not be recorded, so it is not run ("at most once").
    UNCONFIRMED = "unconfirmed"
