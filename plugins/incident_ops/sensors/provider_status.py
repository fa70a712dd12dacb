"""待機 (the external-outage scenario's wait): a runbook step with `wait:`, deferred to the triggerer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from incident_ops.params import rendered_flag
from incident_ops.triggers.provider_status import ProviderStatusTrigger

__all__ = ["ProviderStatusSensor"]


class ProviderStatusSensor(BaseOperator):
    """Waits while the provider's status page says it is operational and our service is unhealthy.

    Defers to `ProviderStatusTrigger` (status page every `wait.interval_minutes`, health every
    `ladder.interval_seconds`). Each change of what the status page says is posted to the incident
    channel in Japanese and the wait defers again; it ends when the service answers healthy
    `ladder.consecutive_healthy` times in a row, when the status page reports an outage (the
    fallback follows: `when: provider_down`) or at `wait.max_minutes`. The step's report (with
    `details.wait_outcome`) goes to the ledger and XCom. Check mode: one look, no waiting.
    """

    template_fields: Sequence[str] = ("environment", "incident_id", "check_mode")
    ui_color = "#8ecae6"

    def __init__(self, *, scenario: str, step_id: str, environment: str, incident_id: str,
                 check_mode: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.step_id = step_id
        self.environment = environment
        self.incident_id = incident_id
        self.check_mode = check_mode

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from incident_ops.flows import recovery

        if rendered_flag(self.check_mode):
            return recovery.wait_check_mode(self.incident_id, self.environment, self.scenario, self.step_id)
        plan = recovery.wait_plan(self.incident_id, self.environment, self.scenario, self.step_id)
        self._defer(plan, started_at=plan["started_at"], deadline=plan["deadline"], last_seen=plan["last_seen"])
        return []  # not reached: defer raises

    def _defer(self, plan: dict[str, Any], *, started_at: str, deadline: float, last_seen: dict[str, Any] | None) -> None:
        import time

        self.defer(
            trigger=ProviderStatusTrigger(
                plan["status_url"], plan["health_url"], status_interval=plan["status_interval"],
                health_interval=plan["health_interval"], consecutive=plan["consecutive"], deadline=deadline,
                last_seen=last_seen, verify=plan["verify"],
            ),
            method_name="execute_complete",
            kwargs={"plan": plan, "started_at": started_at, "deadline": deadline},
            timeout=timedelta(seconds=max(deadline - time.time(), 0) + 120),
        )

    def execute_complete(self, context: Any, event: dict[str, Any], plan: dict[str, Any], started_at: str,
                         deadline: float) -> list[dict[str, Any]]:
        from incident_ops.flows import recovery

        self.log.info("wait %s: %s (%s)", self.step_id, event.get("outcome"), event.get("status"))
        if event.get("outcome") == "changed":
            recovery.wait_changed(self.incident_id, self.environment, self.scenario, self.step_id, event,
                                  started_at=started_at)
            self._defer(plan, started_at=started_at, deadline=deadline, last_seen=event.get("status"))
        return recovery.wait_finished(self.incident_id, self.environment, self.scenario, self.step_id, event,
                                      started_at=started_at, status_url=plan["status_url"])
