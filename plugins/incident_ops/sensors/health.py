"""Phase 4's gate: the service must answer healthy N times in a row (deferrable: no worker slot held)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from incident_ops.triggers.health import HealthTrigger

__all__ = ["HealthSensor"]


class HealthSensor(BaseSensorOperator):
    """Defers to `HealthTrigger`; succeeds with the answers, fails (incident stays open) on timeout.

    `url`/`verify` default to the environment's health endpoint from the connections
    (`peoplebooster_api`, see `incident_ops.hooks.services`).
    """

    template_fields: Sequence[str] = ("environment", "url")

    def __init__(self, *, environment: str = "production", url: str | None = None, consecutive: int = 3,
                 interval: float = 10.0, timeout_seconds: float = 1800.0, **kwargs: Any) -> None:
        super().__init__(timeout=timeout_seconds + 60, **kwargs)
        self.environment = environment
        self.url = url
        self.consecutive = consecutive
        self.interval = interval
        self.timeout_seconds = timeout_seconds

    def execute(self, context: Any) -> None:
        from incident_ops.flows.incident import services_for

        settings = services_for(self.environment).settings
        self.defer(
            trigger=HealthTrigger(
                url=self.url or settings.health_url,
                consecutive=self.consecutive,
                interval=self.interval,
                timeout=self.timeout_seconds,
                verify=settings.verify,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout_seconds + 60),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if not event.get("healthy"):
            raise AirflowException(f"health not restored: {event.get('reason')}; last answers: {event.get('answers', [])[-3:]}")
        return event
