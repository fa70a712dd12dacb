"""Deferrable 待機 of the external-outage scenario: the provider's status page and our health, polled
in the triggerer (no worker slot held while waiting)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from incident_ops.triggers.health import MIN_FIRST_WAIT

__all__ = ["ProviderStatusTrigger"]


class ProviderStatusTrigger(BaseTrigger):
    """Every `health_interval` seconds the health endpoint, every `status_interval` seconds the
    status page. Fires once, with `outcome`:

    - `recovered`: `consecutive` healthy answers in a row (the wait is over);
    - `outage`: the status page reports an outage (`incident_ops.core.recovery.wait_transition`);
    - `changed`: the status page says something else than `last_seen` (the operator posts it and
      defers again with the new `last_seen`);
    - `timeout`: `deadline` (epoch seconds, so a new trigger keeps the wait's end) passed.

    Importable from plugins/ (the triggerer loads it by its path)."""

    def __init__(self, status_url: str, health_url: str, *, status_interval: float, health_interval: float,
                 consecutive: int, deadline: float, last_seen: dict[str, Any] | None = None,
                 verify: bool | str = True, request_timeout: float = 5.0) -> None:
        super().__init__()
        self.status_url = status_url
        self.health_url = health_url
        self.status_interval = status_interval
        self.health_interval = health_interval
        self.consecutive = consecutive
        self.deadline = deadline
        self.last_seen = last_seen
        self.verify = verify
        self.request_timeout = request_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "incident_ops.triggers.provider_status.ProviderStatusTrigger",
            {"status_url": self.status_url, "health_url": self.health_url, "status_interval": self.status_interval,
             "health_interval": self.health_interval, "consecutive": self.consecutive, "deadline": self.deadline,
             "last_seen": self.last_seen, "verify": self.verify, "request_timeout": self.request_timeout},
        )

    def _status(self) -> dict[str, Any]:
        from incident_ops.actions.external import external_status_check
        from incident_ops.clients.http import HttpClient, RetryPolicy

        client = HttpClient("", verify=self.verify, policy=RetryPolicy(attempts=2, timeout=self.request_timeout))
        return dict(external_status_check(client, {"url": self.status_url}).details)

    def _event(self, outcome: str, streak: int, health: dict[str, Any] | None,
               status: dict[str, Any] | None = None) -> TriggerEvent:
        return TriggerEvent({
            "outcome": outcome,
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "consecutive": streak,
            "health": health,
            "status": status if status is not None else self.last_seen,
        })

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import requests

        from incident_ops.clients.health import check_health
        from incident_ops.core.recovery import wait_transition

        session = requests.Session()
        session.verify = self.verify
        next_status = time.time() + self.status_interval
        streak = 0
        first = True
        health: dict[str, Any] | None = None
        while True:
            pause = min(self.health_interval, max(self.deadline - time.time(), 0.0))
            # Let the scheduler see the deferral before an event can resume the task (see HealthTrigger).
            await asyncio.sleep(max(pause, MIN_FIRST_WAIT) if first else pause)
            first = False
            result = await asyncio.to_thread(check_health, session, self.health_url, self.request_timeout)
            health = {"healthy": result.healthy, "status_code": result.status_code, "error": result.error}
            streak = streak + 1 if result.healthy else 0
            if streak >= self.consecutive:
                yield self._event("recovered", streak, health)
                return
            if time.time() >= next_status:
                next_status = time.time() + self.status_interval
                status = await asyncio.to_thread(self._status)
                transition = wait_transition(status, self.last_seen)
                if transition != "same":
                    yield self._event(transition, streak, health, status)
                    return
            if time.time() >= self.deadline:
                yield self._event("timeout", streak, health)
                return
