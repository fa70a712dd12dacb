"""Remediation steps of the runbook's scenarios as Airflow tasks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from incident_ops.params import rendered_flag

__all__ = ["RemediationOperator"]


class RemediationOperator(BaseOperator):
    """Runs one scenario step (and its fallback when it fails) with the collection's modules.

    `check_mode` is templated, so the run's `params.check_mode` sets it. The step reports go to XCom
    and to the ledger; a failed step fails the task (the failure notifier tells people). Retries are
    safe: the modules are idempotent per incident id. A retry that finds the change made by an earlier
    try of the same incident (`details["done_earlier"]`) reports and records it as changed: the earlier
    try may have died before recording it, and the ledger is what the recovery announcement and the
    postmortem read.
    """

    template_fields: Sequence[str] = ("environment", "service", "incident_id", "check_mode", "approved_by")
    ui_color = "#f4a261"

    def __init__(self, *, scenario: str, step_id: str, environment: str, service: str | None, incident_id: str,
                 check_mode: bool | str = False, approved_by: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.step_id = step_id
        self.environment = environment
        self.service = service
        self.incident_id = incident_id
        self.check_mode = check_mode
        self.approved_by = approved_by

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from incident_ops.actions.base import DONE_EARLIER
        from incident_ops.actions.playbook import DESTRUCTIVE_ACTIONS, run_step
        from incident_ops.core import narrative
        from incident_ops.core.ledger import Ledger
        from incident_ops.flows.incident import load, services_for
        from incident_ops.flows.recovery import step_context

        runbook = load()
        check_mode = rendered_flag(self.check_mode)
        step = runbook.scenario(self.scenario).step(self.step_id)
        approved_by = self.approved_by if self.approved_by not in (None, "", "None") else None
        confirm = approved_by is not None or step.action not in DESTRUCTIVE_ACTIONS
        ledger = Ledger()
        incident = ledger.get(self.incident_id)
        services = services_for(self.environment)
        # Endpoints from the connections, and what the incident tells a step (a support case's text).
        overrides = services.settings.action_overrides()
        for action, extra in step_context(incident, self.scenario, self.step_id).items():
            overrides[action] = {**overrides.get(action, {}), **extra}
        reports = run_step(
            runbook, self.environment, self.scenario, self.step_id, services.clients(),
            overrides=overrides, severity=incident.get("severity"),
            check_mode=check_mode, incident_id=self.incident_id, service=self.service,
            since=incident["detected_at"].isoformat() if incident.get("detected_at") else None, confirm=confirm,
        )
        now = dt.datetime.now(dt.UTC)
        for report in reports:
            if not check_mode and report["ok"] and not report["changed"] and report["details"].get(DONE_EARLIER):
                # An earlier try made this change and died before recording it (e.g. its worker was
                # killed): the change is this incident's, so the record says the step changed it.
                report["changed"] = True
            report["approved_by"] = approved_by
            report["at"] = now.isoformat()
            self.log.info("%s (%s%s): %s", report["step"], report["action"], ", check mode" if check_mode else "",
                          report["message"])
            ledger.record_event(
                self.incident_id, at=now, kind="action", actor=approved_by or "incident_ops",
                message=narrative.action_sentence(report),
                data=report, idempotency_key=f"action:{report['step']}:{'check' if check_mode else 'apply'}",
            )
        if not reports[-1]["ok"]:
            raise AirflowException(f"step {self.step_id} failed: {reports[-1]['message']}")
        if not check_mode and any(r["changed"] for r in reports) and incident["status"] == "open":
            ledger.update(self.incident_id, now, scenario=self.scenario)
        return reports
