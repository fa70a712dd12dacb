"""Deferrable health verification: N consecutive healthy answers, polled in the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = ["MIN_FIRST_WAIT", "HealthTrigger"]

MIN_FIRST_WAIT = 5.0


class HealthTrigger(BaseTrigger):
    """Polls `url` every `interval` seconds; fires when `consecutive` answers in a row are healthy,
    or with healthy=False when `timeout` seconds pass first. Importable from plugins/ (the triggerer)."""

    def __init__(self, url: str, consecutive: int, interval: float, timeout: float,
                 verify: bool | str = True, request_timeout: float = 5.0) -> None:
        super().__init__()
        self.url = url
        self.consecutive = consecutive
        self.interval = interval
        self.timeout = timeout
        self.verify = verify
        self.request_timeout = request_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "incident_ops.triggers.health.HealthTrigger",
            {"url": self.url, "consecutive": self.consecutive, "interval": self.interval, "timeout": self.timeout,
             "verify": self.verify, "request_timeout": self.request_timeout},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import requests

        from incident_ops.clients.health import check_health

        session = requests.Session()
        session.verify = self.verify
        started = time.monotonic()
        deadline = started + self.timeout
        streak = 0
        answers: list[dict[str, Any]] = []
        while True:
            # Let the scheduler see this task's deferral before the event can resume it: firing within
            # a scheduler loop of the defer races Airflow's executor-event check (task marked failed).
            await asyncio.sleep(max(self.interval, MIN_FIRST_WAIT) if not answers else self.interval)
            result = await asyncio.to_thread(check_health, session, self.url, self.request_timeout)
            answers.append({"healthy": result.healthy, "status_code": result.status_code,
                            "checks": result.checks, "latency_ms": result.latency_ms, "error": result.error})
            answers = answers[-10:]
            streak = streak + 1 if result.healthy else 0
            if streak >= self.consecutive:
                yield TriggerEvent({"healthy": True, "consecutive": streak, "answers": answers})
                return
            if time.monotonic() + self.interval > deadline:
                yield TriggerEvent({"healthy": False, "consecutive": streak, "answers": answers,
                                    "reason": f"not {self.consecutive}x healthy within {self.timeout:.0f}s"})
                return
