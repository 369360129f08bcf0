"""Leader election with a ``coordination.k8s.io/v1`` Lease (client-go's algorithm).

Only the holder reconciles; the other replicas wait. A holder that cannot renew within the
renew deadline gives up leadership (the process then stops reconciling and exits, so the
pod restarts as a follower). Expiry is judged on this process's monotonic clock from when it
last saw the Lease change, never by comparing wall clocks across machines.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker_operator.kubeapi import ApiError, KubeApi

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True, kw_only=True)
class LeaderElector:
    api: KubeApi
    namespace: str
    name: str
    identity: str
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _observed_spec: Mapping[str, Any] | None = field(default=None, init=False)
    _observed_at: float = field(default=0.0, init=False)
    _leading: bool = field(default=False, init=False)

    @property
    def leading(self) -> bool:
        return self._leading

    async def acquire(self, *, on_contact: Callable[[bool], None] = lambda ok: None) -> None:
        """Return once this replica holds the Lease (waits while another one does).

        ``on_contact(True)`` after each round that could read (and write) the Lease,
        ``on_contact(False)`` after each that could not (no rights, no API server): a
        replica that cannot take part in the election is not ready.
        """
        announced = False
        while True:
            try:
                acquired = await self.try_acquire_or_renew()
            except ApiError as exc:
                on_contact(False)
                log.warning(
                    "cannot read or write the leader Lease %s/%s: %s",
                    self.namespace,
                    self.name,
                    exc,
                )
            else:
                on_contact(True)
                if acquired:
                    log.info(
                        "became the leader (Lease %s/%s, identity %s)",
                        self.namespace,
                        self.name,
                        self.identity,
                    )
                    return
            if not announced:
                holder = (self._observed_spec or {}).get("holderIdentity")
                log.info("waiting for leadership; the Lease is held by %s", holder or "nobody")
                announced = True
            await asyncio.sleep(self.retry_period_seconds * random.uniform(1.0, 1.2))

    async def hold(self) -> None:
        """Renew the Lease until that fails for longer than the renew deadline, then return."""
        last_renewed = self.monotonic()
        while True:
            await asyncio.sleep(self.retry_period_seconds)
            try:
                async with asyncio.timeout(self.renew_deadline_seconds):
                    renewed = await self.try_acquire_or_renew()
            except (ApiError, TimeoutError) as exc:
                log.warning("renewing the leader Lease failed: %s", exc)
                renewed = False
            if renewed:
                last_renewed = self.monotonic()
                continue
            if (
                self.monotonic() - last_renewed >= self.renew_deadline_seconds
                or not self._held_by_us()
            ):
                self._leading = False
                log.error(
                    "lost leadership of Lease %s/%s (held by %s)",
                    self.namespace,
                    self.name,
                    (self._observed_spec or {}).get("holderIdentity") or "nobody",
                )
                return

    async def release(self) -> None:
        """Hand the Lease over at once (on a clean shutdown): followers need not wait it out."""
        if not self._leading:
            return
        self._leading = False
        try:
            lease = await self.api.get_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now = _micro_time(self.wall_clock())
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": now,
                "acquireTime": now,
            }
            await self.api.replace_lease(lease)
            log.info("released the leader Lease %s/%s", self.namespace, self.name)
        except ApiError as exc:
            log.warning("could not release the leader Lease: %s", exc)

    def _held_by_us(self) -> bool:
        return (self._observed_spec or {}).get("holderIdentity") == self.identity

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's ``tryAcquireOrRenew``; True while this replica leads."""
        now_wall = _micro_time(self.wall_clock())
        lease = await self.api.get_lease(self.namespace, self.name)
        duration = max(1, round(self.lease_duration_seconds))
        spec: dict[str, Any]
        if lease is None:
            spec = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": duration,
                "acquireTime": now_wall,
                "renewTime": now_wall,
                "leaseTransitions": 0,
            }
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                await self.api.create_lease(body)
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            self._observe(spec)
            self._leading = True
            return True

        spec = dict(lease.get("spec") or {})
        if spec != self._observed_spec:
            self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        held_for = float(spec.get("leaseDurationSeconds") or self.lease_duration_seconds)
        if holder and holder != self.identity and self.monotonic() < self._observed_at + held_for:
            self._leading = False
            return False

        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": duration,
            "renewTime": now_wall,
        }
        if holder != self.identity:
            new_spec["acquireTime"] = now_wall
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            await self.api.replace_lease({**lease, "spec": new_spec})
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        self._observe(new_spec)
        self._leading = True
        return True

    def _observe(self, spec: Mapping[str, Any]) -> None:
        self._observed_spec = dict(spec)
        self._observed_at = self.monotonic()
